//! Made-up ids, path lists and latency summaries, shared by the subcommands.

use std::fmt;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::opts::Res;

pub fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A made-up resource id: 64 lowercase hex characters, the same for the same seed and index.
pub fn make_id(seed: u64, index: u64) -> String {
    let mut state = seed.wrapping_mul(0x1000_0000_01B3) ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    let mut out = String::with_capacity(64);
    for _ in 0..4 {
        out.push_str(&format!("{:016x}", splitmix(&mut state)));
    }
    out
}

/// The non-empty lines of a file, trimmed; an empty file is an error.
pub fn read_lines(path: impl AsRef<Path>) -> Res<Vec<String>> {
    let path = path.as_ref();
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if lines.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(lines)
}

/// The q-quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Times in microseconds, summarised.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    pub fn of(mut us: Vec<f64>) -> Summary {
        us.sort_by(|a, b| a.total_cmp(b));
        Summary {
            n: us.len(),
            median: quantile(&us, 0.5),
            p90: quantile(&us, 0.9),
            p99: quantile(&us, 0.99),
            max: us.last().copied().unwrap_or(f64::NAN),
            mean: us.iter().sum::<f64>() / us.len().max(1) as f64,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "n={} median_us={:.1} p90_us={:.1} p99_us={:.1} max_us={:.1} mean_us={:.1}",
            self.n, self.median, self.p90, self.p99, self.max, self.mean
        )
    }
}

/// The last segment of a search path: the id asked for.
pub fn id_of_path(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or("")
}

/// curl, quiet, past any proxy, the body thrown away, with at most `max_seconds`, writing out
/// `write_out` (its `-w` format) about `url`; what it wrote out, or None when it did not run.
pub fn curl_write_out(
    url: &str,
    max_seconds: u32,
    extra: &[&str],
    cpu: Option<usize>,
    write_out: &str,
) -> Option<String> {
    let mut cmd = Command::new("curl");
    let max = max_seconds.to_string();
    cmd.args([
        "-s",
        "--noproxy",
        "*",
        "--max-time",
        &max,
        "-o",
        "/dev/null",
    ]);
    cmd.args(extra).args(["-w", write_out, url]);
    cmd.stdin(Stdio::null()).stderr(Stdio::null());
    crate::procs::contain(&mut cmd, cpu);
    let out = cmd.output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_hex() {
        let id = make_id(1, 0);
        assert_eq!(id.len(), 64);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(id, make_id(1, 0));
        assert_ne!(id, make_id(1, 1));
        assert_ne!(id, make_id(2, 0));
    }

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert!(quantile(&[], 0.5).is_nan());
        let s = Summary::of(vec![3.0, 1.0, 2.0]);
        assert_eq!(
            s.to_string(),
            "n=3 median_us=2.0 p90_us=3.0 p99_us=3.0 max_us=3.0 mean_us=2.0"
        );
    }
}
