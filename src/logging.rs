//! Logging for operators: one line per event, to standard error, level from `LOG_LEVEL`.
//! Only this crate's lines are shown; the HTTP libraries' own debug output is left out.

use simplelog::{ConfigBuilder, LevelFilter, WriteLogger};

pub fn init(level: LevelFilter) {
    let config = ConfigBuilder::new()
        .add_filter_allow_str("superpeer")
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .set_time_format_rfc3339()
        .build();
    // A second init (tests starting several instances in one process) keeps the first logger.
    let _ = WriteLogger::init(level, config, std::io::stderr());
}
