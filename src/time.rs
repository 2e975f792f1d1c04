//! Time: records keep Unix milliseconds and answers print RFC 3339 UTC; durations from
//! payloads become `Duration`s and deadlines only through checked conversions.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::poll::PollTimeout;

/// A number of seconds as a `Duration`; `None` for a negative, NaN or unrepresentable one.
/// Payloads bound every duration before it gets here; this is the check that never panics.
pub fn seconds(value: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(value).ok()
}

/// The instant `after` from now; `None` when no instant is that far away, which every
/// caller treats as "no deadline" (it would never come).
pub fn deadline_after(after: Duration) -> Option<Instant> {
    Instant::now().checked_add(after)
}

/// A `poll` timeout for `left`, rounded up so that a wake is never a millisecond early (and
/// a loop never spins), capped at what `poll` takes.
pub fn poll_timeout(left: Duration) -> PollTimeout {
    let ms = left.as_millis() + u128::from(!left.subsec_nanos().is_multiple_of(1_000_000));
    PollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(elapsed) => i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
        // A clock set before 1970 is still ordered: report it as negative milliseconds.
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// `2026-11-21T20:21:18.123Z` for Unix milliseconds. Years outside 0..=9999 are clamped:
/// RFC 3339 has four year digits.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let secs_of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    // Written digit by digit: `list` prints three of these per task.
    let mut text = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut value: i64| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year.clamp(0, 9999));
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, secs_of_day / 3600);
    put(14, 2, secs_of_day % 3600 / 60);
    put(17, 2, secs_of_day % 60);
    put(20, 3, millis);
    text.iter().map(|&b| b as char).collect()
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to a proleptic Gregorian date.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_007), "2000-02-29T00:00:00.007Z");
        assert_eq!(rfc3339(1_795_292_478_123), "2026-11-21T20:21:18.123Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }
}
