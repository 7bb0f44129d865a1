//! `superpeer [supernode|node] [--config NAME|PATH]`: loads the configuration, starts logging
//! and runs the instance until SIGTERM or SIGINT stops it.

use std::process::ExitCode;

use superpeer::{Config, Role, Settings, config, logging};

const USAGE: &str = "usage: superpeer [supernode|node] [--config NAME|PATH]
       superpeer sign [--config NAME|PATH] METHOD PATH [BODY]
       superpeer get ID|NAME [--via URL] [-o FILE] [--force]

Runs a supernode or a node of the superpeer network. Without a role, IS_SUPERNODE decides.
--config node1 reads config/node1.env; a value with '/' or ending in .env is a path.
Every key can also come from the environment, which wins over the file (see docs/configuration.md).

`sign` prints the header that signs a request with the cluster key (CLUSTER_KEY or
CLUSTER_KEY_FILE), for curl:  curl -H \"$(superpeer sign GET /api/supernode/xxx)\" URL

`get` finds a resource by its id, or by a part of its name only one resource has, through a
node or supernode (--via, default http://127.0.0.1:5000), downloads it from a holder (the
next one if that fails, resuming FILE.part), and keeps it as FILE only once its SHA-256 is
the id. An existing FILE is never replaced unless --force is given.
FILE defaults to the resource's name as the network gives it (a holder is asked when the
answer has none), only its last path part; the id when there is no name. A name from the
network that starts with '.' or holds control characters is refused: choose one with -o.
A holder is held to the length it states (Content-Length, or Content-Range's total): one
that states none (a chunked body) or sends more is dropped, and the bytes past the length
are never written. What came from the network is printed with control characters escaped.";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "sign") {
        args.remove(0);
        return sign(args);
    }
    if args.first().is_some_and(|a| a == "get") {
        args.remove(0);
        return get(args);
    }
    let mut role = None;
    let mut config_file = None;
    let mut args = args.into_iter();
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
            if let Err(e) = superpeer::shutdown::on_signals(instance.stopper()) {
                return fail(&format!("cannot handle SIGTERM and SIGINT: {e}"));
            }
            instance.wait();
            log::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

/// `superpeer sign [--config X] METHOD PATH [BODY]`: the signature header of one request.
fn sign(mut args: Vec<String>) -> ExitCode {
    let mut config_file = None;
    if args.first().is_some_and(|a| a == "--config" || a == "-c") {
        if args.len() < 2 {
            return fail("--config needs a name or a path");
        }
        config_file = Some(config::config_path(&args[1]));
        args.drain(..2);
    }
    let (method, target, body) = match &args[..] {
        [method, target] => (method, target, ""),
        [method, target, body] => (method, target, body.as_str()),
        _ => return fail(&format!("sign needs METHOD PATH [BODY]\n\n{USAGE}")),
    };
    let keys = match Settings::load(config_file.as_deref()).map(|s| config::cluster_keys(&s)) {
        Ok(Ok(Some(keys))) => keys,
        Ok(Ok(None)) => return fail("no CLUSTER_KEY or CLUSTER_KEY_FILE to sign with"),
        Ok(Err(e)) | Err(e) => return fail(&format!("configuration: {e}")),
    };
    let header =
        superpeer::auth::sign_request(&keys, &method.to_ascii_uppercase(), target, body.as_bytes());
    println!("{}: {header}", superpeer::auth::AUTH_HEADER);
    ExitCode::SUCCESS
}

/// `superpeer get ID|NAME [--via URL] [-o FILE] [--force]`.
fn get(args: Vec<String>) -> ExitCode {
    let mut target = None;
    let mut via = std::env::var("SUPERPEER_VIA").unwrap_or_else(|_| "http://127.0.0.1:5000".into());
    let mut output = None;
    let mut force = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--via" => match args.next() {
                Some(url) => via = url,
                None => return fail("--via needs a URL"),
            },
            "-o" | "--output" => match args.next() {
                Some(file) => output = Some(file.into()),
                None => return fail("-o needs a file name"),
            },
            "--force" => force = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ if target.is_none() && !arg.starts_with('-') => target = Some(arg),
            other => return fail(&format!("get: unexpected {other:?}\n\n{USAGE}")),
        }
    }
    let Some(target) = target else {
        return fail(&format!("get needs an id or a name\n\n{USAGE}"));
    };
    let args = superpeer::get::GetArgs {
        target,
        via,
        output,
        force,
    };
    match superpeer::get::run(&args) {
        Ok(path) => {
            println!("{}", superpeer::get::shown(&path));
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("superpeer: {message}");
    ExitCode::FAILURE
}
