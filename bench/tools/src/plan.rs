//! What a run does: its settings (options and environment), and the measurements in the order
//! they run, each with the rows it writes and what it needs set up first.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::driver::Bench;
use crate::opts::Res;

// ---------------------------------------------------------------------------------------------
// Settings

pub struct Settings {
    pub root: PathBuf,
    pub logs: PathBuf,
    pub data: PathBuf,
    /// bench/results.md for a whole run; bench/logs/results.md for some rows only.
    pub results: PathBuf,
    pub wrk_seconds: u64,
    pub runs: usize,
    pub budget: Duration,
    /// The measurements asked for (keys or row numbers); empty: all.
    pub only: Vec<String>,
    pub strict: bool,
    pub keep_data: bool,
}

const USAGE: &str = "usage: sp-bench run [--only \"1 2k 15\"] [--wrk-seconds N] [--runs N]
                    [--budget-seconds N] [--strict] [--keep-data 0|1] [--root DIR] [--list]

Every option has an environment variable, read first: BENCH_ONLY, BENCH_WRK_SECONDS (5),
BENCH_RUNS (3), BENCH_BUDGET_SECONDS (720), BENCH_STRICT (0), BENCH_KEEP_DATA (1).
--only takes measurement keys or row numbers (\"2k\", \"15\", \"15c\", \"14\"); its table goes to
bench/logs/results.md, so bench/results.md keeps the last whole run. --list lists them.";

impl Settings {
    pub fn parse(args: &[String]) -> Res<Option<Settings>> {
        let env = |key: &str| std::env::var(key).ok().filter(|v| !v.trim().is_empty());
        let mut only = env("BENCH_ONLY").unwrap_or_default();
        let mut wrk_seconds = env("BENCH_WRK_SECONDS").unwrap_or_else(|| "5".into());
        let mut runs = env("BENCH_RUNS").unwrap_or_else(|| "3".into());
        let mut budget = env("BENCH_BUDGET_SECONDS").unwrap_or_else(|| "720".into());
        let mut strict = env("BENCH_STRICT").is_some_and(|v| v == "1");
        let mut keep_data = env("BENCH_KEEP_DATA").is_none_or(|v| v != "0");
        let mut root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().cloned().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "--only" => only = value()?,
                "--wrk-seconds" => wrk_seconds = value()?,
                "--runs" => runs = value()?,
                "--budget-seconds" => budget = value()?,
                "--keep-data" => keep_data = value()? != "0",
                "--root" => root = PathBuf::from(value()?),
                "--strict" => strict = true,
                "--list" => {
                    for m in MEASURES {
                        println!("{:<9} rows {:<16} {}", m.key, m.rows.join(" "), m.name);
                    }
                    return Ok(None);
                }
                "-h" | "--help" => {
                    println!("{USAGE}");
                    return Ok(None);
                }
                other => return Err(format!("unknown option {other:?}\n{USAGE}")),
            }
        }
        let number = |name: &str, v: &str| -> Res<u64> {
            v.trim()
                .parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or(format!("{name}: not a positive number: {v:?}"))
        };
        let root = root
            .canonicalize()
            .map_err(|e| format!("{}: {e}", root.display()))?;
        let only: Vec<String> = only
            .split([' ', ','])
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect();
        for token in &only {
            if !MEASURES.iter().any(|m| m.matches(token)) {
                return Err(format!("--only {token}: no such measurement (see --list)"));
            }
        }
        let bench = root.join("bench");
        Ok(Some(Settings {
            logs: bench.join("logs"),
            data: bench.join("data"),
            results: if only.is_empty() {
                bench.join("results.md")
            } else {
                bench.join("logs/results.md")
            },
            root,
            wrk_seconds: number("wrk seconds", &wrk_seconds)?,
            runs: usize::try_from(number("runs", &runs)?).unwrap_or(3),
            budget: Duration::from_secs(number("budget seconds", &budget)?),
            only,
            strict,
            keep_data,
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// The measurements, in the order they run

/// What a measurement needs set up before the measurements start (in this order).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Need {
    /// The static (musl) binary.
    Static,
    /// 256 files of 4 MiB.
    Gib,
    /// 10,000 files of 64 bytes.
    TenK,
    /// 15 files of 1 KiB.
    Small,
    Nginx,
    PingPong,
    /// Supernodes a and b, with their resources, and nginx's copies of their answers.
    Pair,
    /// The figures of row 3 (single local and remote searches).
    Row3,
    /// Row 2's nginx figure (the reference of row 2g).
    Row2,
}

pub struct Measure {
    pub key: &'static str,
    pub name: &'static str,
    /// The rows it writes.
    pub rows: &'static [&'static str],
    pub needs: &'static [Need],
    pub run: fn(&mut Bench) -> Res<()>,
}

impl Measure {
    /// Whether `--only TOKEN` asks for it: its key ("15" for 15a-d, "13" for 13 and 13r) or
    /// one of its rows ("15c", "14").
    pub fn matches(&self, token: &str) -> bool {
        self.key == token || self.rows.contains(&token)
    }
}

use Need::*;

/// One measurement: key, name, rows, needs, function.
const fn m(
    key: &'static str,
    name: &'static str,
    rows: &'static [&'static str],
    needs: &'static [Need],
    run: fn(&mut Bench) -> Res<()>,
) -> Measure {
    Measure {
        key,
        name,
        rows,
        needs,
        run,
    }
}

// A table: one line a measurement, in the order they run.
#[rustfmt::skip]
pub const MEASURES: &[Measure] = &[
    // key       name                                                     rows                           needs              run
    m("1",        "supernode local search, wrk keep-alive",                &["1"],                        &[Nginx, Pair],    Bench::m1_local_wrk),
    m("1s",       "supernode local search, static binary",                 &["1s"],                       &[Static, Pair],   Bench::m1s_local_static),
    m("2",        "supernode remote search, wrk",                          &["2"],                        &[Nginx, Pair],    Bench::m2_remote_wrk),
    m("2k",       "supernode remote search, keyed group",                  &["2k"],                       &[Pair],           Bench::m2k_remote_keyed),
    m("2i",       "supernode remote search at LOG_LEVEL=info",             &["2i"],                       &[Pair],           Bench::m2i_remote_info),
    m("3",        "one remote search, sequential, median",                 &["3"],                        &[PingPong, Pair], Bench::m3_sequential),
    m("4",        "64 concurrent remote searches x 50",                    &["4"],                        &[Pair, Row3],     Bench::m4_concurrent),
    m("5",        "negative searches",                                     &["5a", "5b"],                 &[Pair, Row3],     Bench::m5_negative),
    m("6, 7, 10", "1,000,000 indexed resources",                           &["6", "7", "10", "14"],       &[Pair],           Bench::m6_m7_m10_million),
    m("8",        "node start-up over 1 GiB in 256 files",                 &["8"],                        &[Gib],            Bench::m8_startup),
    m("9",        "listing a node of 10,000 resources",                    &["9"],                        &[TenK, Nginx],    Bench::m9_listing),
    m("13",       "download of a 1 GiB file",                              &["13", "13r"],                &[Nginx],          Bench::m13_download),
    m("11",       "liveness sweep over 1,000 nodes",                       &["11"],                       &[],               Bench::m11_liveness),
    m("12",       "idle memory and binary size",                           &["12"],                       &[Static, Small],  Bench::m12_idle),
    m("15",       "2, 8 and 32 supernodes: searches and their datagrams",  &["2g", "15a", "15b", "15c", "15d"], &[Row2], Bench::m15_scale),
    m("16",       "index summaries of 1,000,000 ids",                      &["16a", "16b"],               &[],               Bench::m16_summaries),
    m("17",       "a 256 MiB file from 3 holders at once",                 &["17a", "17b"],               &[],               Bench::m17_swarm),
];

/// The measurements `only` asks for (all when empty), with rows 2 and 3 added when a
/// measurement compares with their figures.
pub fn select(only: &[String]) -> Vec<&'static Measure> {
    let mut keys: BTreeSet<&str> = MEASURES
        .iter()
        .filter(|m| only.is_empty() || only.iter().any(|t| m.matches(t)))
        .map(|m| m.key)
        .collect();
    for (need, key) in [(Row3, "3"), (Row2, "2")] {
        if MEASURES
            .iter()
            .any(|m| keys.contains(m.key) && m.needs.contains(&need))
        {
            keys.insert(key);
        }
    }
    MEASURES.iter().filter(|m| keys.contains(m.key)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(only: &[&str]) -> Vec<&'static str> {
        let only: Vec<String> = only.iter().map(|s| s.to_string()).collect();
        select(&only).iter().map(|m| m.key).collect()
    }

    #[test]
    fn selection_by_key_or_row() {
        assert_eq!(keys(&[]).len(), MEASURES.len());
        assert_eq!(keys(&["2", "2k"]), ["2", "2k"]);
        // 15 compares its group of 8 with row 2's nginx (row 2g): 2 comes along.
        assert_eq!(keys(&["15c"]), ["2", "15"]);
        assert_eq!(keys(&["2g"]), ["2", "15"]);
        assert_eq!(keys(&["13"]), ["13"]);
        assert_eq!(keys(&["14"]), ["6, 7, 10"]);
        assert_eq!(keys(&["6"]), ["6, 7, 10"]);
        // 4 and 5 compare with row 3's figures: 3 comes along, in its place.
        assert_eq!(keys(&["5"]), ["3", "5"]);
        assert_eq!(keys(&["4", "1"]), ["1", "3", "4"]);
        assert!(!MEASURES.iter().any(|m| m.matches("1x")));
    }

    #[test]
    fn every_row_has_one_measurement() {
        let mut rows: Vec<&str> = MEASURES
            .iter()
            .flat_map(|m| m.rows.iter().copied())
            .collect();
        let n = rows.len();
        rows.sort_unstable();
        rows.dedup();
        assert_eq!(rows.len(), n);
    }

    #[test]
    fn options_over_the_environment() {
        let args = |a: &[&str]| -> Vec<String> { a.iter().map(|s| s.to_string()).collect() };
        let s = Settings::parse(&args(&[
            "--only",
            "2k 15c",
            "--wrk-seconds",
            "2",
            "--runs",
            "1",
            "--budget-seconds",
            "60",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(s.only, ["2k", "15c"]);
        assert_eq!((s.wrk_seconds, s.runs), (2, 1));
        assert_eq!(s.budget, Duration::from_secs(60));
        // Some rows only: the whole run's table is left alone.
        assert!(s.results.ends_with("bench/logs/results.md"));
        assert!(Settings::parse(&args(&["--only", "99"])).is_err());
        assert!(Settings::parse(&args(&["--runs", "0"])).is_err());
        assert!(Settings::parse(&args(&["--frobnicate"])).is_err());
        assert!(Settings::parse(&args(&["--runs"])).is_err());
    }
}
