//! The measurements, each against a reference measured in the same run: rows 1-5 (searches,
//! [`search`]), 6, 7, 10 and 14 (a million entries, [`million`]), 8, 9, 11, 12 and 13 (nodes,
//! memory, the liveness sweep, [`nodes`]), 15 (many supernodes, [`scale`]), 16 (index
//! summaries, [`summaries`]) and 17 (downloads from every holder, [`swarm`]).

mod million;
mod nodes;
mod scale;
mod search;
mod summaries;
mod swarm;

use crate::client::{self, LatencyArgs};
use crate::driver::{Bench, HOST};
use crate::opts::Res;
use crate::procs;
use crate::setup::NGINX_PORT;
use crate::stats::{Calc, calc, grouped};

/// "12,345 req/s", with the failed requests and the connections never served (the most in
/// one run), when there were any.
/// The figure and ratio of an unpinned run, written beside a pinned row's figure: what users
/// see, where the scheduler puts the threads.
pub fn unpinned_text(figure: f64, reference: f64) -> String {
    format!(
        "{} req/s, ratio {}",
        grouped(figure, 0),
        ratio(figure, reference)
    )
}

pub fn rps_text(rps: f64, bad: u64, idle: usize) -> String {
    let mut text = format!("{} req/s", grouped(rps, 0));
    if bad > 0 {
        text.push_str(&format!(", {bad} failed or wrong"));
    }
    if idle > 0 {
        text.push_str(&format!(" (up to {idle} of 32 connections never served)"));
    }
    text
}

fn ratio(a: f64, b: f64) -> Calc {
    calc(a / b)
}

impl Bench {
    fn a_url(&self) -> Res<String> {
        self.url("a")
    }

    fn nginx_url(&self) -> Res<String> {
        if self.port("nginx").is_none() {
            return Err("nginx is not running".into());
        }
        Ok(format!("http://{HOST}:{NGINX_PORT}"))
    }

    /// Both supernodes of the search pair are up.
    fn pair_up(&self) -> Res<()> {
        self.addr("a")?;
        self.addr("b")?;
        Ok(())
    }

    /// N sequential requests (the `latency` measurement), its line said with `label`; None
    /// when it failed (said too). Wrong answers and errors are added to `wrong`; a failed run
    /// counts one.
    fn latency(
        &mut self,
        label: &str,
        args: &LatencyArgs,
        wrong: &mut usize,
    ) -> Res<Option<crate::client::Latency>> {
        let outcome = client::latency(args);
        procs::check()?;
        match outcome {
            Ok(l) => {
                self.say(format!("{label}: {l}"));
                if let Some(example) = &l.example {
                    self.say(format!("{label}: first wrong answer: {example}"));
                }
                *wrong += l.wrong + l.errors;
                Ok(Some(l))
            }
            Err(e) => {
                self.say(format!("{label}: {e}"));
                *wrong += 1;
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_rates() {
        assert_eq!(rps_text(122_565.4, 0, 0), "122,565 req/s");
        assert_eq!(
            rps_text(5_740.2, 3, 2),
            "5,740 req/s, 3 failed or wrong (up to 2 of 32 connections never served)"
        );
    }
}
