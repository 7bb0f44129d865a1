//! `sp-bench`: the driver of `make bench` (`sp-bench run`) and the measurements wrk cannot
//! make.
//!
//! `sp-bench run` builds the binaries, starts every instance and reference on 127.0.0.1, runs
//! the measurements, and writes `bench/results.md` (see `bench/README.md`); `bench/run.sh` only
//! installs the tools it needs and calls it. The other subcommands are its measurements, also
//! usable alone; each prints `key=value` pairs on its last line of standard output. `lab` and
//! `lan` make LANs of network namespaces (superpeer-lan, tools/lan): make lab's, make attack's.
//! Everything talks to 127.0.0.1 only (the probe also to the attack's hosts, and `lab` to the
//! lab's, from inside their namespaces); every loop is bounded in count and in time.
//!
//! | subcommand | what it does |
//! |---|---|
//! | `run`        | every measurement, or some (`--only`), and the table ([`driver`]) |
//! | `pingpong`   | UDP multicast round trips between this process and a child (`echo`) |
//! | `latency`    | N sequential requests on one keep-alive connection: median, p99, errors |
//! | `concurrent` | T threads x R rounds of simultaneous searches, half present, half absent |
//! | `register`   | registers fake nodes with made-up ids; times each POST; writes sample paths |
//! | `ids`        | prints made-up ids nobody holds, as search paths |
//! | `mirror`     | fetches paths and writes the bodies under a folder (nginx's copy) |
//! | `mkfiles`    | writes N files of pseudo-random content |
//! | `startup`    | starts a node, times it until it logs that it registered |
//! | `timecmd`    | times a command |
//! | `farm`       | 1,000 fake nodes for the liveness sweep: 900 answer, 100 hang |
//! | `probe`      | a fresh client every few ms for N seconds: availability second by second |
//! | `ready`, `counters`, `digest`, `announcements` | many supernodes and their summaries ([`scale`]) |
//! | `lab`        | `up`, `status`, `down`: make lab's three hosts in network namespaces ([`lab`]) |
//! | `lan`        | `up`, `down`: a LAN of network namespaces for a script, make attack's ([`lan`]) |

mod client;
mod driver;
mod farm;
mod holders;
mod http;
mod lab;
mod lan;
mod local;
mod opts;
mod pingpong;
mod plan;
mod procs;
mod rows;
mod scale;
mod setup;
mod stats;
mod table;
mod util;
mod wrk;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use opts::{Opts, Res};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!(
            "usage: sp-bench <subcommand> [--key value ...] (see the source); sp-bench run --help"
        );
        return ExitCode::from(2);
    };
    let result = match cmd.as_str() {
        "run" => return driver::run(rest),
        "lab" => return lab::main(rest),
        "lan" => lan::lan(rest),
        "pingpong" => Opts::parse(rest).and_then(|o| pingpong::pingpong(&o)),
        "echo" => Opts::parse(rest).and_then(|o| pingpong::echo(&o)),
        "latency" => Opts::parse(rest).and_then(|o| latency(&o)),
        "concurrent" => Opts::parse(rest).and_then(|o| concurrent(&o)),
        "register" => Opts::parse(rest).and_then(|o| register(&o)),
        "ids" => Opts::parse(rest).and_then(|o| ids(&o)),
        "mirror" => Opts::parse(rest).and_then(|o| mirror(&o)),
        "mkfiles" => Opts::parse(rest).and_then(|o| mkfiles(&o)),
        "startup" => startup(rest),
        "timecmd" => timecmd(rest),
        "farm" => Opts::parse(rest).and_then(|o| farm::farm(&o)),
        "probe" => Opts::parse(rest).and_then(|o| farm::probe(&o)),
        "ready" => Opts::parse(rest).and_then(|o| scale::ready_cmd(&o)),
        "counters" => Opts::parse(rest).and_then(|o| scale::counters_cmd(&o)),
        "digest" => Opts::parse(rest).and_then(|o| scale::digest_cmd(&o)),
        "announcements" => Opts::parse(rest).and_then(|o| scale::announcements(&o)),
        other => Err(format!("unknown subcommand {other:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sp-bench {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--paths FILE` or `--path PATH`.
fn paths(o: &Opts) -> Res<Vec<String>> {
    match (o.opt("paths"), o.opt("path")) {
        (Some(file), _) => util::read_lines(file),
        (None, Some(path)) => Ok(vec![path.to_string()]),
        (None, None) => Err("--paths FILE or --path PATH is required".into()),
    }
}

fn latency(o: &Opts) -> Res<()> {
    let mut a = client::LatencyArgs::new(o.addr()?, paths(o)?, o.num("n", Some(1000))?);
    a.warmup = o.num("warmup", Some(50))?;
    a.status = o.num("status", Some(200))?;
    a.contains = o.opt("contains").map(String::from);
    a.max_seconds = o.num("max-seconds", Some(60))?;
    a.timeout_ms = o.num("timeout-ms", Some(10_000))?;
    let l = client::latency(&a)?;
    if let Some(example) = &l.example {
        eprintln!("latency: first wrong answer: {example}");
    }
    println!("{l}");
    Ok(())
}

fn concurrent(o: &Opts) -> Res<()> {
    let c = client::concurrent(&client::ConcurrentArgs {
        addr: o.addr()?,
        present: util::read_lines(o.str("present")?)?,
        absent: util::read_lines(o.str("absent")?)?,
        threads: o.num("threads", Some(64))?,
        rounds: o.num("rounds", Some(50))?,
        location: o.opt("location").map(String::from),
    })?;
    for example in &c.examples {
        eprintln!("concurrent: {example}");
    }
    println!("{c}");
    Ok(())
}

fn register(o: &Opts) -> Res<()> {
    let mut a = client::RegisterArgs::new(
        o.addr()?,
        o.num("seed", None)?,
        o.num("nodes", Some(1))?,
        o.num("per", None)?,
        o.num("port-base", None)?,
    );
    a.sample = o.num("sample", Some(0))?;
    a.sample_out = o.opt("sample-out").map(PathBuf::from);
    a.key = o.opt("key").map(String::from);
    let r = client::register(&a)?;
    for line in &r.lines {
        eprintln!("{line}");
    }
    println!("{r}");
    Ok(())
}

fn ids(o: &Opts) -> Res<()> {
    let prefix = o.opt("prefix").unwrap_or("/api/supernode/search/");
    print!(
        "{}",
        client::id_paths(o.num("seed", None)?, o.num("n", None)?, prefix)
    );
    Ok(())
}

fn mirror(o: &Opts) -> Res<()> {
    let paths = util::read_lines(o.str("paths")?)?;
    let root = PathBuf::from(o.str("root")?);
    let (files, mean) = client::mirror(o.addr()?, &paths, &root, o.num("status", Some(200))?)?;
    println!("files={files} mean_bytes={mean}");
    Ok(())
}

fn mkfiles(o: &Opts) -> Res<()> {
    let (count, size) = (o.num("count", None)?, o.num("size", None)?);
    local::mkfiles(
        &PathBuf::from(o.str("dir")?),
        count,
        size,
        o.num("seed", Some(1))?,
    )?;
    println!("files={count} bytes_each={size}");
    Ok(())
}

/// `startup --log FILE --deadline-s S -- PROGRAM ARGS...`: starts the program (a node, with its
/// configuration in the environment), copies its standard error to FILE, and stops it as soon
/// as it logs `registered ... with ...`; prints the time from start to that line.
fn startup(args: &[String]) -> Res<()> {
    let split = args
        .iter()
        .position(|a| a == "--")
        .ok_or("startup needs -- PROGRAM ARGS")?;
    let o = Opts::parse(&args[..split])?;
    let deadline = Duration::from_secs(o.num("deadline-s", Some(60))?);
    let s = local::startup(
        &PathBuf::from(o.str("log")?),
        deadline,
        &args[split + 1..],
        None,
    )?;
    if let Some(hashed) = &s.hashed {
        eprintln!("startup: {hashed}");
    }
    println!("ms={:.1}", s.elapsed.as_secs_f64() * 1e3);
    Ok(())
}

/// `timecmd [--] PROGRAM ARGS...`: runs it (10 minutes at most) and prints how long it took.
fn timecmd(args: &[String]) -> Res<()> {
    let command = match args.first().map(String::as_str) {
        Some("--") => &args[1..],
        _ => args,
    };
    let took = local::timecmd(command, Duration::from_secs(600))?;
    println!("ms={:.1}", took.as_secs_f64() * 1e3);
    Ok(())
}
