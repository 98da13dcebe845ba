//! Danish CPR numbers (personnummer): `DDMMYY-SSSS`.
//!
//! Since 2007 not every CPR number passes the old modulus-11 check, so validation checks the
//! shape and that the date (with the century the seventh digit implies) exists — nothing more.
//! A [`Cpr`] prints as a redaction; use [`Cpr::expose`] where the number must be shown.

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A validated CPR number, stored as ten digits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Cpr(String);

/// Why a string is not a CPR number. Never carries the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CprError {
    #[error("must be 10 digits, written DDMMYY-SSSS or DDMMYYSSSS")]
    Shape,
    #[error("the first six digits are not a real date")]
    Date,
    #[error("the birth date lies in the future")]
    Future,
}

impl Cpr {
    /// Parses `DDMMYY-SSSS` or `DDMMYYSSSS` (surrounding spaces allowed).
    pub fn parse(input: &str) -> Result<Cpr, CprError> {
        let trimmed = input.trim();
        let digits: String = match trimmed.len() {
            10 => trimmed.to_owned(),
            11 if trimmed.as_bytes()[6] == b'-' => format!("{}{}", &trimmed[..6], &trimmed[7..]),
            _ => return Err(CprError::Shape),
        };
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CprError::Shape);
        }
        let cpr = Cpr(digits);
        let born = cpr.birth_date().ok_or(CprError::Date)?;
        if born > chrono::Utc::now().date_naive() {
            return Err(CprError::Future);
        }
        Ok(cpr)
    }

    /// The ten digits, `DDMMYY-SSSS`. Personal data: only for display to an authorised worker.
    pub fn expose(&self) -> String {
        format!("{}-{}", &self.0[..6], &self.0[6..])
    }

    /// The ten digits without the dash, for search.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// The birth date, with the century from the seventh digit (CPR office rules).
    pub fn birth_date(&self) -> Option<NaiveDate> {
        let n = |r: std::ops::Range<usize>| self.0[r].parse::<u32>().ok();
        let (day, month, yy, seventh) = (n(0..2)?, n(2..4)?, n(4..6)? as i32, n(6..7)?);
        let century = match seventh {
            0..=3 => 1900,
            4 | 9 => {
                if yy <= 36 {
                    2000
                } else {
                    1900
                }
            }
            5..=8 => {
                if yy <= 57 {
                    2000
                } else {
                    1800
                }
            }
            _ => return None,
        };
        NaiveDate::from_ymd_opt(century + yy, month, day)
    }
}

impl fmt::Debug for Cpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cpr(‹redacted›)")
    }
}

impl Serialize for Cpr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.expose())
    }
}

impl<'de> Deserialize<'de> for Cpr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Cpr::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_both_spellings_and_finds_the_century() {
        let a = Cpr::parse("010190-1234").unwrap();
        let b = Cpr::parse(" 0101901234 ").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.birth_date(), NaiveDate::from_ymd_opt(1990, 1, 1));
        assert_eq!(
            Cpr::parse("010105-4234").unwrap().birth_date(),
            NaiveDate::from_ymd_opt(2005, 1, 1)
        );
        assert_eq!(
            Cpr::parse("010170-4234").unwrap().birth_date(),
            NaiveDate::from_ymd_opt(1970, 1, 1)
        );
    }

    #[test]
    fn rejects_bad_shapes_and_dates_without_echoing_input() {
        assert_eq!(Cpr::parse("12345"), Err(CprError::Shape));
        assert_eq!(Cpr::parse("01019x-1234"), Err(CprError::Shape));
        assert_eq!(Cpr::parse("0101901-234"), Err(CprError::Shape));
        assert_eq!(Cpr::parse("310290-1234"), Err(CprError::Date)); // 31 February
        assert_eq!(Cpr::parse("011390-1234"), Err(CprError::Date)); // month 13
        assert_eq!(Cpr::parse("010150-5234"), Err(CprError::Future)); // 2050
        let msg = CprError::Date.to_string();
        assert!(!msg.contains("0290"));
    }

    #[test]
    fn debug_is_redacted() {
        let cpr = Cpr::parse("010190-1234").unwrap();
        assert!(!format!("{cpr:?}").contains("0101"));
    }
}
