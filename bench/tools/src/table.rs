//! The results table: its rows, their order, and `bench/results.md` as a whole (the header
//! that says where and how it was made, the table, the notes, and the log of every run).

/// One row: a figure against a reference measured in the same run, and its verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub num: String,
    pub measurement: String,
    pub figure: String,
    pub reference: String,
    pub ratio: String,
    pub target: String,
    /// PASS, FAIL, ERROR (...), SKIPPED (...).
    pub result: String,
}

impl Row {
    pub fn passed(&self) -> bool {
        self.result == PASS
    }

    /// A row without figures: the measurement could not be made.
    pub fn error(num: &str, measurement: &str, target: &str, result: &str) -> Row {
        Row {
            num: num.into(),
            measurement: measurement.into(),
            figure: "-".into(),
            reference: "-".into(),
            ratio: "-".into(),
            target: target.into(),
            result: result.into(),
        }
    }

    fn line(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            self.num,
            self.measurement,
            self.figure,
            self.reference,
            self.ratio,
            self.target,
            self.result
        )
    }
}

pub const PASS: &str = "PASS";

pub fn verdict(pass: bool) -> String {
    if pass { PASS } else { "FAIL" }.to_string()
}

/// The order of rows: by number, then suffix (1, 1s, 2, 2i, 2k, ..., 13, 13r, ..., 15a).
pub fn order(num: &str) -> (u32, String) {
    let digits: String = num.chars().take_while(char::is_ascii_digit).collect();
    (
        digits.parse().unwrap_or(u32::MAX),
        num[digits.len()..].to_string(),
    )
}

/// The whole of `results.md`. `made` is the date and length of the run; `facts` the bullets
/// about the machine and the references; `log` the run's log (notes are left out of it: they
/// have their own list).
pub fn markdown(made: &str, facts: &[String], rows: &[Row], notes: &[String], log: &str) -> String {
    let mut rows: Vec<&Row> = rows.iter().collect();
    rows.sort_by_key(|r| order(&r.num));
    let mut out = String::new();
    out.push_str("# superpeer benchmarks\n\n");
    out.push_str(&format!(
        "Made by `bench/run.sh` (`make bench`) on {made}.\n\n"
    ));
    for fact in facts {
        out.push_str(&format!("- {fact}\n"));
    }
    out.push('\n');
    out.push_str("| # | measurement | figure | reference (same run) | ratio | target | result |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for row in rows {
        out.push_str(&row.line());
        out.push('\n');
    }
    if !notes.is_empty() {
        out.push_str("\nNotes:\n");
        for note in notes {
            out.push_str(&format!("- {note}\n"));
        }
    }
    out.push_str("\n## Every run of this table\n\n```\n");
    for line in log.lines().filter(|l| !is_note(l)) {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("```\n");
    out
}

/// A log line `[ 12s] note: ...`.
fn is_note(line: &str) -> bool {
    line.starts_with('[')
        && line
            .split_once("] ")
            .is_some_and(|(_, rest)| rest.starts_with("note: "))
}

/// `YYYY-MM-DD HH:MM:SS UTC` for seconds since the Unix epoch.
pub fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rest = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(num: &str, result: &str) -> Row {
        Row {
            num: num.into(),
            measurement: format!("m{num}"),
            figure: "1 req/s".into(),
            reference: "nginx 2 req/s".into(),
            ratio: "0.5".into(),
            target: ">= 0.5 x nginx".into(),
            result: result.into(),
        }
    }

    #[test]
    fn rows_in_number_order() {
        let mut nums = vec![
            "15a", "2k", "13r", "1s", "10", "2", "13", "1", "6, 7, 10", "2i", "5b", "5a", "12",
        ];
        nums.sort_by_key(|n| order(n));
        assert_eq!(
            nums,
            [
                "1", "1s", "2", "2i", "2k", "5a", "5b", "6, 7, 10", "10", "12", "13", "13r", "15a"
            ]
        );
    }

    #[test]
    fn the_results_file() {
        let rows = [
            row("2", PASS),
            row("1", "FAIL"),
            row("12", PASS),
            row("12", "ERROR"),
        ];
        let log = "[  0s] superpeer benchmarks\n[  3s] note: something odd\n[  4s] == 1: x\n";
        let text = markdown(
            "2026-11-26 07:03:58 UTC, in 479 s",
            &["machine: 2 cores".to_string()],
            &rows,
            &["something odd".to_string()],
            log,
        );
        let want = "# superpeer benchmarks\n\n\
            Made by `bench/run.sh` (`make bench`) on 2026-11-26 07:03:58 UTC, in 479 s.\n\n\
            - machine: 2 cores\n\n\
            | # | measurement | figure | reference (same run) | ratio | target | result |\n\
            |---|---|---|---|---|---|---|\n\
            | 1 | m1 | 1 req/s | nginx 2 req/s | 0.5 | >= 0.5 x nginx | FAIL |\n\
            | 2 | m2 | 1 req/s | nginx 2 req/s | 0.5 | >= 0.5 x nginx | PASS |\n\
            | 12 | m12 | 1 req/s | nginx 2 req/s | 0.5 | >= 0.5 x nginx | PASS |\n\
            | 12 | m12 | 1 req/s | nginx 2 req/s | 0.5 | >= 0.5 x nginx | ERROR |\n\
            \nNotes:\n- something odd\n\
            \n## Every run of this table\n\n```\n\
            [  0s] superpeer benchmarks\n[  4s] == 1: x\n```\n";
        assert_eq!(text, want);
        assert!(rows[0].passed() && !rows[1].passed());
        assert_eq!(verdict(true), "PASS");
        assert_eq!(verdict(false), "FAIL");
    }

    #[test]
    fn no_notes_no_list() {
        let text = markdown("d", &[], &[row("3", PASS)], &[], "");
        assert!(!text.contains("Notes:"));
        assert!(text.ends_with("## Every run of this table\n\n```\n```\n"));
    }

    #[test]
    fn dates_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_795_676_638), "2026-11-26 07:03:58 UTC");
    }
}
