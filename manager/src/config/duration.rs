//! [`ConfigDuration`]: a duration written as the Go manager writes them (Go's `time.ParseDuration`): a number
//! and a unit, possibly several (`"5s"`, `"1.5s"`, `"500ms"`, `"1m30s"`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A duration in a config file, e.g. `StoreCapacityTimeout = "5s"`. Units: `ns`, `us` (or `µs`), `ms`, `s`,
/// `m`, `h`. Written back in the same form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    /// `secs` seconds.
    pub const fn from_secs(secs: u64) -> ConfigDuration {
        ConfigDuration(Duration::from_secs(secs))
    }

    /// `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> ConfigDuration {
        ConfigDuration(Duration::from_millis(millis))
    }
}

/// A duration that could not be read; the message says what a valid one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {value:?}: {reason}; write a number and a unit, e.g. \"5s\", \"1.5s\", \"500ms\", \"1m30s\"")]
pub struct InvalidDuration {
    /// The text found.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for ConfigDuration {
    type Err = InvalidDuration;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| InvalidDuration { value: text.to_owned(), reason };
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(invalid("it is empty"));
        }
        if rest.starts_with('-') {
            return Err(invalid("it is negative"));
        }
        let mut total_nanos: u128 = 0;
        while !rest.is_empty() {
            let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
            let (number, after) = rest.split_at(number_len);
            let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            let nanos_per_unit: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                "" => return Err(invalid("a unit is missing")),
                _ => return Err(invalid("the unit is not one of ns, us, ms, s, m, h")),
            };
            let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
            if whole.is_empty() && fraction.is_empty() {
                return Err(invalid("a number is missing"));
            }
            if !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid("a number has more than one decimal point"));
            }
            let whole: u128 =
                if whole.is_empty() { 0 } else { whole.parse().map_err(|_| invalid("it is too large"))? };
            let mut nanos = whole.checked_mul(nanos_per_unit).ok_or_else(|| invalid("it is too large"))?;
            // The fraction, digit by digit (at most nanosecond precision).
            let mut scale = nanos_per_unit;
            for digit in fraction.bytes() {
                scale /= 10;
                nanos += u128::from(digit - b'0') * scale;
            }
            total_nanos = total_nanos.checked_add(nanos).ok_or_else(|| invalid("it is too large"))?;
            rest = after;
        }
        let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| invalid("it is too large"))?;
        Ok(ConfigDuration(Duration::new(secs, (total_nanos % 1_000_000_000) as u32)))
    }
}

impl TryFrom<String> for ConfigDuration {
    type Error = InvalidDuration;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl fmt::Display for ConfigDuration {
    /// The shortest of `"<n>s"`, `"<n>ms"`, `"<n>ns"` (with a fraction of seconds as `"1.5s"`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if !nanos.is_multiple_of(1_000_000) {
            write!(f, "{nanos}ns")
        } else if nanos.is_multiple_of(1_000_000_000) {
            write!(f, "{}s", nanos / 1_000_000_000)
        } else if (nanos / 1_000_000).is_multiple_of(100) {
            write!(f, "{}.{}s", nanos / 1_000_000_000, (nanos / 100_000_000) % 10)
        } else {
            write!(f, "{}ms", nanos / 1_000_000)
        }
    }
}

impl From<ConfigDuration> for String {
    fn from(duration: ConfigDuration) -> String {
        duration.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::ConfigDuration;

    #[test]
    fn go_durations_parse_and_print_back() {
        for (text, expected) in [
            ("5s", Duration::from_secs(5)),
            ("1.5s", Duration::from_millis(1500)),
            ("500ms", Duration::from_millis(500)),
            ("1m30s", Duration::from_secs(90)),
            ("2h", Duration::from_secs(7200)),
            ("250us", Duration::from_micros(250)),
            (".5s", Duration::from_millis(500)),
            ("0s", Duration::ZERO),
        ] {
            let parsed: ConfigDuration = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(parsed.0, expected, "{text}");
            let printed = parsed.to_string();
            assert_eq!(printed.parse::<ConfigDuration>().unwrap(), parsed, "{text} printed as {printed}");
        }
        assert_eq!(ConfigDuration::from_millis(1500).to_string(), "1.5s");
        assert_eq!(ConfigDuration::from_secs(5).to_string(), "5s");
    }

    #[test]
    fn anything_else_is_refused_saying_why_and_what_is_valid() {
        for (text, why) in [
            ("", "empty"),
            ("5", "unit is missing"),
            ("5x", "not one of"),
            ("-1s", "negative"),
            ("s", "number is missing"),
            ("1.2.3s", "more than one decimal point"),
            ("99999999999999999999999h", "too large"),
        ] {
            let err = text.parse::<ConfigDuration>().expect_err(text).to_string();
            assert!(err.contains(why) && err.contains("\"5s\""), "{text}: {err}");
        }
    }
}
