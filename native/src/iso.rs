//! ISO-8601 timestamps with a zone, as the contract's JSON form writes them.
//!
//! Only one spelling is read here: `YYYY-MM-DDTHH:MM:SS`, an optional
//! fraction of 1 to 6 digits, then `Z` or `+HH:MM` / `-HH:MM`. Python's
//! `datetime.fromisoformat` reads every such string to the same instant and
//! accepts many more (other separators, basic format, offsets with seconds,
//! longer fractions it truncates); for those this gives `None` and the caller
//! leaves the record to the Python path, which has the last word.

/// Microseconds since the epoch (UTC) of `text`, or `None` if it is not
/// spelt as above, is not a valid date and time, or falls outside years 1 to
/// 9999 once in UTC (Python's `astimezone(UTC)` fails there).
pub fn micros(text: &[u8]) -> Option<i64> {
    let [
        y1,
        y2,
        y3,
        y4,
        b'-',
        m1,
        m2,
        b'-',
        d1,
        d2,
        b'T',
        h1,
        h2,
        b':',
        n1,
        n2,
        b':',
        s1,
        s2,
        rest @ ..,
    ] = text
    else {
        return None;
    };
    let year = digits(&[*y1, *y2, *y3, *y4])?;
    let month = digits(&[*m1, *m2])?;
    let day = digits(&[*d1, *d2])?;
    let hour = digits(&[*h1, *h2])?;
    let minute = digits(&[*n1, *n2])?;
    let second = digits(&[*s1, *s2])?;
    if year == 0
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let (fraction, zone) = match rest {
        [b'.', tail @ ..] => {
            let digits_len = tail.iter().take_while(|b| b.is_ascii_digit()).count();
            if !(1..=6).contains(&digits_len) {
                return None;
            }
            let value = digits(&tail[..digits_len])?;
            (
                value * 10_i64.pow(6 - digits_len as u32),
                &tail[digits_len..],
            )
        }
        _ => (0, rest),
    };
    let offset_minutes = match zone {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), oh1, oh2, b':', om1, om2] => {
            let hours = digits(&[*oh1, *oh2])?;
            let minutes = digits(&[*om1, *om2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 60 + minutes;
            if *sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    let micros = seconds * 1_000_000 + fraction;
    (FIRST_MICROS..=LAST_MICROS)
        .contains(&micros)
        .then_some(micros)
}

/// `datetime(1, 1, 1, tzinfo=UTC)` and the last microsecond of 9999, since the epoch.
const FIRST_MICROS: i64 = -62_135_596_800_000_000;
const LAST_MICROS: i64 = 253_402_300_799_999_999;

fn digits(bytes: &[u8]) -> Option<i64> {
    bytes.iter().try_fold(0_i64, |value, byte| {
        byte.is_ascii_digit()
            .then(|| value * 10 + i64::from(byte - b'0'))
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::micros;

    #[test]
    fn reads_the_contract_spelling() {
        assert_eq!(micros(b"1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(micros(b"2026-03-01T08:00:00Z"), Some(1_772_352_000_000_000));
        assert_eq!(micros(b"1970-01-01T00:00:00.5Z"), Some(500_000));
        assert_eq!(micros(b"1970-01-01T00:00:00.000001Z"), Some(1));
        assert_eq!(micros(b"1970-01-01T08:00:00+08:00"), Some(0));
        assert_eq!(micros(b"1969-12-31T23:30:00-00:30"), Some(0));
        assert_eq!(micros(b"2024-02-29T00:00:00Z"), Some(1_709_164_800_000_000));
        assert_eq!(
            micros(b"0001-01-01T00:00:00Z"),
            Some(-62_135_596_800_000_000)
        );
    }

    #[test]
    fn leaves_everything_else_to_python() {
        for text in [
            "2026-02-29T00:00:00Z",
            "2026-03-01T24:00:00Z",
            "2026-03-01T08:00:60Z",
            "2026-03-01T08:00:00",
            "2026-03-01T08:00:00z",
            "2026-03-01 08:00:00Z",
            "2026-03-01T08:00:00.1234567Z",
            "2026-03-01T08:00:00.Z",
            "2026-03-01T08:00:00+0800",
            "2026-03-01T08:00:00+24:00",
            "0000-01-01T00:00:00Z",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
        ] {
            assert_eq!(micros(text.as_bytes()), None, "{text}");
        }
    }
}
