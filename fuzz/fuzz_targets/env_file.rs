//! Any `.env` text: parsed, then checked for both roles, without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use superpeer::config::{Config, Role, Settings, parse_env};

fuzz_target!(|data: &[u8]| {
    let Ok(pairs) = parse_env(data) else {
        return;
    };
    let settings = Settings::from_pairs(pairs, []);
    let _ = settings.log_level();
    for role in [None, Some(Role::Supernode), Some(Role::Node)] {
        let _ = Config::from_settings(&settings, role);
    }
});
