//! The numbers of the table: medians, computed figures with three significant digits (what
//! the verdicts compare, so a ratio is judged as it is shown), numbers with grouped
//! thousands, and the `key=value` lines the subprocesses print.

use std::fmt;

/// The median of the runs, as the table has always taken it: the lower middle of the sorted
/// values (the middle one for an odd count). None without a single value.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len().div_ceil(2) - 1])
}

/// A computed figure: an integer stays whole, anything else keeps three significant digits
/// (C's `%.3g`). Its value is the rounded one, so that a verdict judges the figure shown.
#[derive(Clone, Debug, PartialEq)]
pub struct Calc(pub f64, String);

pub fn calc(x: f64) -> Calc {
    let text = calc_text(x);
    Calc(text.parse().unwrap_or(x), text)
}

impl fmt::Display for Calc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.1)
    }
}

fn calc_text(x: f64) -> String {
    if x.is_finite() && x == x.trunc() && x.abs() < 1e18 {
        format!("{}", x as i64)
    } else {
        g3(x)
    }
}

/// C's `printf("%.3g", x)`.
pub fn g3(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    if x == 0.0 {
        return "0".into();
    }
    let sci = format!("{x:.2e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..3).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim_zeros(mantissa), exp.abs())
    } else {
        let decimals = usize::try_from(2 - exp).unwrap_or(0);
        trim_zeros(&format!("{x:.decimals$}")).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A number with `decimals` decimals and its thousands grouped: 1234567.8 -> "1,234,568".
pub fn grouped(x: f64, decimals: usize) -> String {
    let text = format!("{x:.decimals$}");
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (text.as_str(), None),
    };
    let (sign, digits) = match int.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", int),
    };
    let mut out = String::new();
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{out}.{f}"),
        None => format!("{sign}{out}"),
    }
}

/// A count per search as 15c shows it: 4 decimals, and a hair below zero (less than the
/// background subtracted) as 0.
pub fn per_search(x: f64) -> String {
    grouped(if x.abs() < 0.00005 { 0.0 } else { x }, 4)
}

/// The value of `key=value` in a line of a subcommand's output.
pub fn kv<'a>(key: &str, line: &'a str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}

/// [`kv`] as a number.
pub fn kv_num(key: &str, line: &str) -> Option<f64> {
    kv(key, line)?.parse().ok().filter(|x: &f64| x.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_take_the_lower_middle() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0]), Some(1.0));
        assert_eq!(median(&[5.0, 1.0, 4.0, 2.0, 3.0]), Some(3.0));
        assert_eq!(median(&[7.5]), Some(7.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 2.0]), Some(2.0));
    }

    #[test]
    fn three_significant_digits_like_printf() {
        for (x, want) in [
            (0.5563, "0.556"),
            (0.90031, "0.9"),
            (16.21, "16.2"),
            (52.66, "52.7"),
            (0.000_368_4, "0.000368"),
            (0.000_036_84, "3.68e-05"),
            (4521.7, "4.52e+03"),
            (999.6, "1e+03"),
            (128.99, "129"),
            (1.0004, "1"),
            (-0.25, "-0.25"),
            (0.0, "0"),
        ] {
            assert_eq!(g3(x), want, "{x}");
        }
    }

    #[test]
    fn calc_keeps_integers_and_rounds_the_rest() {
        assert_eq!(calc(40_692_894.0).to_string(), "40692894");
        assert_eq!(calc(3.0).to_string(), "3");
        assert_eq!(calc(188.1).to_string(), "188");
        assert_eq!(calc(188.1).0, 188.0);
        // The value is rounded; the text keeps the form printf gave it.
        assert_eq!(calc(3510.4).0, 3510.0);
        assert_eq!(calc(3510.4).to_string(), "3.51e+03");
        // A ratio is judged as shown: 0.8996 shows as 0.9 and passes ">= 0.9".
        assert!(calc(0.8996).0 >= 0.9);
        assert!(calc(0.8949).0 < 0.9);
        assert!(calc(f64::NAN).0.is_nan());
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(grouped(122_565.4, 0), "122,565");
        assert_eq!(grouped(1_312_534.0, 0), "1,312,534");
        assert_eq!(grouped(999.0, 0), "999");
        assert_eq!(grouped(74.66, 1), "74.7");
        assert_eq!(grouped(188.0, 1), "188.0");
        assert_eq!(grouped(2.278_24, 2), "2.28");
        assert_eq!(grouped(-1234.5, 1), "-1,234.5");
        assert_eq!(grouped(1.000_88, 3), "1.001");
        assert_eq!(per_search(-0.000_004), "0.0000");
        assert_eq!(per_search(0.0123), "0.0123");
    }

    #[test]
    fn key_value_lines() {
        let line = "n=5000 median_us=45.8 p90_us=68.9 lost=0 ok=true";
        assert_eq!(kv("median_us", line), Some("45.8"));
        assert_eq!(kv_num("median_us", line), Some(45.8));
        assert_eq!(kv("ok", line), Some("true"));
        assert_eq!(kv("median", line), None);
        assert_eq!(kv_num("ok", line), None);
        assert_eq!(kv("lost", line), Some("0"));
    }
}
