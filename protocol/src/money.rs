//! Money as integer minor units of an ISO 4217 currency: never floating point.
//!
//! A [`Currency`] knows how many minor units its major unit has (USD 2, JPY 0, KWD 3), so an
//! amount of `1999` USD reads `19.99`. Arithmetic is checked: adding two currencies, or
//! overflowing `i64`, is an error rather than a wrong total. A percentage is applied in basis
//! points (1 % = 100 bp) and rounded half away from zero, to the minor unit — the rule billing
//! documents for discounts and tax.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ISO 4217 currency this system accepts, with its number of minor-unit digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

/// Accepted currencies and their minor-unit exponents (ISO 4217). A code outside the table is
/// refused rather than guessed at: its exponent decides what an amount means.
const CURRENCIES: &[(&str, u8)] = &[
    ("ARS", 2),
    ("AUD", 2),
    ("BHD", 3),
    ("BOB", 2),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CRC", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("DOP", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("GTQ", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("MXN", 2),
    ("MYR", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PHP", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("RON", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("THB", 2),
    ("TND", 3),
    ("TRY", 2),
    ("TWD", 2),
    ("UAH", 2),
    ("USD", 2),
    ("UYU", 2),
    ("VND", 0),
    ("ZAR", 2),
];

/// Why a currency code or an amount was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoneyError {
    /// Not a three-letter ISO 4217 code this system accepts.
    UnknownCurrency,
    /// Two amounts of different currencies were combined.
    CurrencyMismatch,
    /// The result does not fit in `i64` minor units.
    Overflow,
}

impl fmt::Display for MoneyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MoneyError::UnknownCurrency => "not an accepted ISO 4217 currency code",
            MoneyError::CurrencyMismatch => "amounts in different currencies",
            MoneyError::Overflow => "amount out of range",
        })
    }
}

impl std::error::Error for MoneyError {}

impl Currency {
    /// Reads an upper-case ISO 4217 code (`USD`); lower case is refused, as in the database's
    /// CHECK, so one currency has one spelling.
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        CURRENCIES
            .iter()
            .find(|(known, _)| *known == code)
            .and_then(|(known, exponent)| {
                let bytes: [u8; 3] = known.as_bytes().try_into().ok()?;
                Some(Self {
                    code: bytes,
                    exponent: *exponent,
                })
            })
            .ok_or(MoneyError::UnknownCurrency)
    }

    /// Every accepted code, for documentation and schemas.
    pub fn codes() -> impl Iterator<Item = &'static str> {
        CURRENCIES.iter().map(|(code, _)| *code)
    }

    pub fn as_str(&self) -> &str {
        // The bytes came from the ASCII table above.
        std::str::from_utf8(&self.code).unwrap_or("???")
    }

    /// Digits after the decimal point of a major unit (2 for USD).
    pub fn exponent(&self) -> u8 {
        self.exponent
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Currency {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&code).map_err(serde::de::Error::custom)
    }
}

/// An amount in minor units of one currency (`1999` USD is 19.99 dollars).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// Minor units; negative for refunds and discounts.
    pub cents: i64,
    pub currency: Currency,
}

/// One percent in basis points.
pub const BASIS_POINTS_PER_PERCENT: u32 = 100;
/// A whole, in basis points (100 %).
pub const BASIS_POINTS_WHOLE: u32 = 10_000;

impl Money {
    pub fn new(cents: i64, currency: Currency) -> Self {
        Self { cents, currency }
    }

    /// Nothing, in `currency`.
    pub fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    /// `self + other`, in the same currency.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let cents = self
            .cents
            .checked_add(other.cents)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(cents, self.currency))
    }

    /// `self - other`, in the same currency.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let cents = self
            .cents
            .checked_sub(other.cents)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(cents, self.currency))
    }

    /// `self × quantity` (a unit price times the quantity of an order line).
    pub fn checked_mul(self, quantity: u32) -> Result<Money, MoneyError> {
        let cents = self
            .cents
            .checked_mul(i64::from(quantity))
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(cents, self.currency))
    }

    /// `basis_points` / 10 000 of this amount, rounded half away from zero to the minor unit
    /// (12.5 % of 0.99 USD is 0.12375 → 0.12; of 1.00 USD, 0.125 → 0.13).
    pub fn percentage(self, basis_points: u32) -> Money {
        let whole = i128::from(BASIS_POINTS_WHOLE);
        let product = i128::from(self.cents) * i128::from(basis_points);
        let half = whole / 2;
        let rounded = if product >= 0 {
            (product + half) / whole
        } else {
            (product - half) / whole
        };
        // |cents × bp / 10 000| ≤ |cents| × 429 497 for any u32: saturate rather than wrap.
        let cents = i64::try_from(rounded).unwrap_or(if rounded < 0 { i64::MIN } else { i64::MAX });
        Money::new(cents, self.currency)
    }

    /// The smaller of two amounts of the same currency (a discount never above the subtotal).
    pub fn min(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        Ok(if other.cents < self.cents {
            other
        } else {
            self
        })
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch)
        }
    }
}

impl fmt::Display for Money {
    /// `19.99 USD`, `-5.00 EUR`, `1200 JPY`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exponent = u32::from(self.currency.exponent);
        let sign = if self.cents < 0 { "-" } else { "" };
        let units = self.cents.unsigned_abs();
        if exponent == 0 {
            return write!(f, "{sign}{units} {}", self.currency);
        }
        let scale = 10u64.pow(exponent);
        let width = exponent as usize;
        write!(
            f,
            "{sign}{}.{:0width$} {}",
            units / scale,
            units % scale,
            self.currency
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(cents: i64) -> Money {
        Money::new(cents, Currency::parse("USD").unwrap())
    }

    #[test]
    fn only_known_upper_case_codes_are_currencies() {
        assert_eq!(Currency::parse("USD").unwrap().exponent(), 2);
        assert_eq!(Currency::parse("JPY").unwrap().exponent(), 0);
        assert_eq!(Currency::parse("KWD").unwrap().exponent(), 3);
        for bad in ["usd", "US", "USDD", "XXX", "", "EU€"] {
            assert_eq!(
                Currency::parse(bad),
                Err(MoneyError::UnknownCurrency),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_currency_table_is_sorted_and_three_upper_case_letters_each() {
        let codes: Vec<&str> = Currency::codes().collect();
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(codes, sorted);
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
        );
    }

    #[test]
    fn amounts_are_shown_with_their_currencys_minor_digits() {
        assert_eq!(usd(1999).to_string(), "19.99 USD");
        assert_eq!(usd(-5).to_string(), "-0.05 USD");
        assert_eq!(
            Money::new(1200, Currency::parse("JPY").unwrap()).to_string(),
            "1200 JPY"
        );
        assert_eq!(
            Money::new(1005, Currency::parse("KWD").unwrap()).to_string(),
            "1.005 KWD"
        );
    }

    #[test]
    fn arithmetic_refuses_mixed_currencies_and_overflow() {
        let eur = Money::new(100, Currency::parse("EUR").unwrap());
        assert_eq!(usd(1).checked_add(eur), Err(MoneyError::CurrencyMismatch));
        assert_eq!(usd(1).checked_sub(eur), Err(MoneyError::CurrencyMismatch));
        assert_eq!(usd(i64::MAX).checked_add(usd(1)), Err(MoneyError::Overflow));
        assert_eq!(usd(i64::MAX).checked_mul(2), Err(MoneyError::Overflow));
        assert_eq!(usd(250).checked_mul(3), Ok(usd(750)));
        assert_eq!(usd(250).checked_sub(usd(300)), Ok(usd(-50)));
    }

    #[test]
    fn a_percentage_rounds_half_away_from_zero_to_the_minor_unit() {
        // 12.5 % of 1.00 = 0.125 → 0.13; of 0.99 = 0.12375 → 0.12.
        assert_eq!(usd(100).percentage(1250), usd(13));
        assert_eq!(usd(99).percentage(1250), usd(12));
        // Exactly half a cent, both signs.
        assert_eq!(usd(1).percentage(5000), usd(1));
        assert_eq!(usd(-1).percentage(5000), usd(-1));
        assert_eq!(usd(-100).percentage(1250), usd(-13));
        assert_eq!(usd(12345).percentage(BASIS_POINTS_WHOLE), usd(12345));
        assert_eq!(usd(12345).percentage(0), usd(0));
        // 21 % VAT on 19.99: 4.1979 → 4.20.
        assert_eq!(
            usd(1999).percentage(21 * BASIS_POINTS_PER_PERCENT),
            usd(420)
        );
    }

    #[test]
    fn a_percentage_of_the_largest_amount_saturates_instead_of_wrapping() {
        assert_eq!(usd(i64::MAX).percentage(u32::MAX).cents, i64::MAX);
        assert_eq!(usd(i64::MIN).percentage(u32::MAX).cents, i64::MIN);
    }

    #[test]
    fn money_travels_as_cents_and_a_currency_code() {
        let json = serde_json::to_value(usd(1999)).unwrap();
        assert_eq!(json, serde_json::json!({"cents": 1999, "currency": "USD"}));
        let back: Money = serde_json::from_value(json).unwrap();
        assert_eq!(back, usd(1999));
        assert!(serde_json::from_str::<Money>(r#"{"cents": 1, "currency": "usd"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"cents": 1.5, "currency": "USD"}"#).is_err());
    }

    #[test]
    fn min_keeps_the_smaller_amount_of_one_currency() {
        assert_eq!(usd(5).min(usd(3)), Ok(usd(3)));
        assert_eq!(usd(3).min(usd(5)), Ok(usd(3)));
    }
}
