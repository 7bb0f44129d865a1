//! `superpeer [supernode|node] [--config NAME|PATH]`: loads the configuration, starts logging
//! and runs the instance until the process is stopped.

use std::process::ExitCode;

use superpeer::{Config, Role, Settings, config, logging};

const USAGE: &str = "usage: superpeer [supernode|node] [--config NAME|PATH]

Runs a supernode or a node of the superpeer network. Without a role, IS_SUPERNODE decides.
--config node1 reads config/node1.env; a value with '/' or ending in .env is a path.
Every key can also come from the environment, which wins over the file (see README.md).";

fn main() -> ExitCode {
    let mut role = None;
    let mut config_file = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "supernode" | "super" => role = Some(Role::Supernode),
            "node" => role = Some(Role::Node),
            "--config" | "-c" => match args.next() {
                Some(value) => config_file = Some(config::config_path(&value)),
                None => return fail("--config needs a name or a path"),
            },
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--version" | "-V" => {
                println!("superpeer {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            other => return fail(&format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    let settings = match Settings::load(config_file.as_deref()) {
        Ok(settings) => settings,
        Err(e) => return fail(&format!("configuration: {e}")),
    };
    match settings.log_level() {
        Ok(level) => logging::init(level),
        Err(e) => return fail(&format!("configuration: {e}")),
    }
    let config = match Config::from_settings(&settings, role) {
        Ok(config) => config,
        Err(e) => return fail(&format!("configuration: {e}")),
    };
    match superpeer::start(config) {
        Ok(instance) => {
            instance.wait();
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("superpeer: {message}");
    ExitCode::FAILURE
}
