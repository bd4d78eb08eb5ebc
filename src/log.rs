//! Log lines from the watcher thread. They go to stderr, which nginx points at its error log in worker and
//! privileged-agent processes, in nginx's own line format so that operators' log tooling keeps working.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

/// Log levels, as nginx names them (`k8s_disc_set_log_level` takes their numbers).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[repr(u8)]
pub enum Level {
    /// Failures that stop discovery of a cluster or lose an update.
    Error = 1,
    /// Failures that are retried, and risky settings.
    Warn = 2,
    /// Rare, significant events (a fallback taken, a takeover).
    Notice = 3,
    /// Progress: lists, watches, rotations (the default).
    Info = 4,
    /// Everything else.
    Debug = 5,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Notice => "notice",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Logs messages of level `l` and above; drops the rest.
pub fn set_max_level(l: Level) {
    MAX_LEVEL.store(l as u8, Ordering::Relaxed);
}

pub fn enabled(l: Level) -> bool {
    l as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

pub fn log(level: Level, msg: &str) {
    if !enabled(level) {
        return;
    }
    // Whatever a message holds (server text is escaped already), it stays one line: no control character
    // reaches the log, so nothing can start a forged line.
    let msg: String = if msg.chars().any(char::is_control) {
        msg.chars()
            .map(|c| {
                if c.is_control() {
                    format!("\\u{{{:x}}}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        msg.to_string()
    };
    let line = format!(
        "{} [{}] {}#0: k8s-disc: {}\n",
        timestamp(),
        level.name(),
        std::process::id(),
        msg
    );
    // One write call per line so lines from several processes do not interleave.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

macro_rules! log_at {
    ($lvl:ident, $($arg:tt)*) => {
        if $crate::log::enabled($crate::log::Level::$lvl) {
            $crate::log::log($crate::log::Level::$lvl, &format!($($arg)*))
        }
    };
}
pub(crate) use log_at;

/// Text from the API server (Status messages, bodies, names) made safe for one log line: control characters
/// (newlines included) and backslashes escaped, so it cannot forge or split log lines, and cut to `max` characters.
pub fn escape_server_text(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 8);
    for (n, c) in s.chars().enumerate() {
        if n == max {
            out.push_str("...");
            break;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// `YYYY/MM/DD HH:MM:SS` in UTC, now.
fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    utc_timestamp(secs)
}

/// `YYYY/MM/DD HH:MM:SS` in UTC for seconds since the epoch.
pub fn utc_timestamp(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}/{m:02}/{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_text_is_escaped_and_capped() {
        assert_eq!(
            super::escape_server_text("a\nb\r\u{1b}[31m\\", 100),
            "a\\nb\\r\\u{1b}[31m\\\\"
        );
        assert_eq!(super::escape_server_text("abcdef", 3), "abc...");
        assert_eq!(super::escape_server_text("ok", 3), "ok");
    }

    #[test]
    fn dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_782), (2026, 11, 25));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
    }
}
