//! Request input rules shared by central and edge, so both answer bad input identically: the
//! [`Validate`] trait, the per-field problems it reports (answered as 422 `VALIDATION_FAILED`
//! with one entry per offending field, in the caller's language), and how a JSON body that did
//! not deserialize is told apart — broken syntax (400) from the wrong shape (422).

use serde::{Serialize, de::DeserializeOwned};

use crate::Lang;

/// What is wrong with one field. Messages are rendered in the caller's language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldProblem {
    Required,
    /// The value has the wrong JSON type or cannot be read as the expected one.
    InvalidType {
        expected: String,
    },
    /// A field the endpoint does not accept.
    Unknown,
    /// A reference to something that does not exist (a product, an organization, …).
    NotFound,
    InvalidFormat {
        expected: &'static str,
    },
    TooShort {
        min: usize,
    },
    TooLong {
        max: usize,
    },
    OutOfRange {
        min: i64,
        max: i64,
    },
    NotOneOf {
        allowed: Vec<&'static str>,
    },
    /// Anything else, with its own stable code and messages.
    Custom {
        code: &'static str,
        es: &'static str,
        en: &'static str,
    },
}

impl FieldProblem {
    /// Stable code of the problem, e.g. `TOO_LONG`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Required => "REQUIRED",
            Self::InvalidType { .. } => "INVALID_TYPE",
            Self::Unknown => "UNKNOWN_FIELD",
            Self::InvalidFormat { .. } => "INVALID_FORMAT",
            Self::TooShort { .. } => "TOO_SHORT",
            Self::TooLong { .. } => "TOO_LONG",
            Self::OutOfRange { .. } => "OUT_OF_RANGE",
            Self::NotOneOf { .. } => "NOT_ONE_OF",
            Self::NotFound => "NOT_FOUND",
            Self::Custom { code, .. } => code,
        }
    }

    pub fn message(&self, lang: Lang) -> String {
        match (self, lang) {
            (Self::Required, Lang::Es) => "es obligatorio".into(),
            (Self::Required, Lang::En) => "is required".into(),
            (Self::InvalidType { expected }, Lang::Es) => {
                format!("tipo inválido, se esperaba {expected}")
            }
            (Self::InvalidType { expected }, Lang::En) => {
                format!("invalid type, expected {expected}")
            }
            (Self::Unknown, Lang::Es) => "campo no admitido".into(),
            (Self::Unknown, Lang::En) => "field not accepted".into(),
            (Self::InvalidFormat { expected }, Lang::Es) => {
                format!("formato inválido, se esperaba {expected}")
            }
            (Self::InvalidFormat { expected }, Lang::En) => {
                format!("invalid format, expected {expected}")
            }
            (Self::TooShort { min }, Lang::Es) => format!("debe tener al menos {min} caracteres"),
            (Self::TooShort { min }, Lang::En) => format!("must be at least {min} characters long"),
            (Self::TooLong { max }, Lang::Es) => format!("debe tener como máximo {max} caracteres"),
            (Self::TooLong { max }, Lang::En) => format!("must be at most {max} characters long"),
            (Self::OutOfRange { min, max }, Lang::Es) => format!("debe estar entre {min} y {max}"),
            (Self::OutOfRange { min, max }, Lang::En) => format!("must be between {min} and {max}"),
            (Self::NotOneOf { allowed }, Lang::Es) => {
                format!("debe ser uno de: {}", allowed.join(", "))
            }
            (Self::NotOneOf { allowed }, Lang::En) => {
                format!("must be one of: {}", allowed.join(", "))
            }
            (Self::NotFound, Lang::Es) => "no existe".into(),
            (Self::NotFound, Lang::En) => "does not exist".into(),
            (Self::Custom { es, .. }, Lang::Es) => (*es).into(),
            (Self::Custom { en, .. }, Lang::En) => (*en).into(),
        }
    }
}

/// The problems found in one request, keeping the first problem of each field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors {
    entries: Vec<(String, FieldProblem)>,
}

/// One offending field as it appears in `error.details.fields`.
#[derive(Debug, Serialize)]
pub struct FieldErrorBody {
    /// Dotted path of the field, e.g. `items[0].quantity`.
    pub field: String,
    /// Stable code of the problem (`REQUIRED`, `TOO_LONG`, …).
    pub code: &'static str,
    pub message: String,
}

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// A single problem, for errors found outside a [`Validate`] pass.
    pub fn single(field: impl Into<String>, problem: FieldProblem) -> Self {
        let mut errors = Self::new();
        errors.add(field, problem);
        errors
    }

    /// Records a problem unless the field already has one.
    pub fn add(&mut self, field: impl Into<String>, problem: FieldProblem) {
        let field = field.into();
        if !self.entries.iter().any(|(f, _)| *f == field) {
            self.entries.push((field, problem));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `Ok(())` when nothing was recorded.
    pub fn into_result(self) -> Result<(), Self> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }

    pub fn render(&self, lang: Lang) -> Vec<FieldErrorBody> {
        self.entries
            .iter()
            .map(|(field, p)| FieldErrorBody {
                field: field.clone(),
                code: p.code(),
                message: p.message(lang),
            })
            .collect()
    }

    /// Checks a required text: `min..=max` characters, not blank when `min > 0`, and no control
    /// characters but tab and line breaks — exactly what [`TEXT_PATTERN`] and
    /// [`NON_BLANK_TEXT_PATTERN`] with `minLength`/`maxLength` say in a schema, so a value the
    /// document allows is accepted. Lengths count characters (Unicode scalar values), as JSON
    /// Schema does.
    pub fn text(&mut self, field: &str, value: &str, min: usize, max: usize) {
        let len = value.chars().count();
        if value.chars().any(is_forbidden_control) {
            self.add(
                field,
                FieldProblem::InvalidFormat {
                    expected: "text without control characters",
                },
            );
        } else if min > 0 && value.trim().is_empty() {
            self.add(field, FieldProblem::Required);
        } else if len < min {
            self.add(field, FieldProblem::TooShort { min });
        } else if len > max {
            self.add(field, FieldProblem::TooLong { max });
        }
    }

    /// Checks an optional text when present.
    pub fn opt_text(&mut self, field: &str, value: Option<&str>, min: usize, max: usize) {
        if let Some(value) = value {
            self.text(field, value, min, max);
        }
    }

    /// Checks an integer lies in `min..=max`.
    pub fn range(&mut self, field: &str, value: i64, min: i64, max: i64) {
        if !(min..=max).contains(&value) {
            self.add(field, FieldProblem::OutOfRange { min, max });
        }
    }

    /// Checks a value is one of a closed set.
    pub fn one_of(&mut self, field: &str, value: &str, allowed: &'static [&'static str]) {
        if !allowed.contains(&value) {
            self.add(
                field,
                FieldProblem::NotOneOf {
                    allowed: allowed.to_vec(),
                },
            );
        }
    }
}

/// Control characters a text may not hold: every one but tab and line breaks.
fn is_forbidden_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// The ECMA-262 pattern of a text [`FieldErrors::text`] accepts when blank is allowed: no
/// control character (`\p{Cc}`: U+0000–U+001F, U+007F–U+009F) but tab and line breaks.
pub const TEXT_PATTERN: &str = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$";

/// The pattern of a text that may not be blank: [`TEXT_PATTERN`], with at least one character
/// that is not white space (Rust's `char::is_whitespace`, spelled out so every regex dialect
/// agrees).
pub const NON_BLANK_TEXT_PATTERN: &str = concat!(
    "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*",
    "[^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]",
    "[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$",
);

/// Rules a request body must satisfy beyond its types. Each service's JSON extractor runs them,
/// so a handler only ever sees a body that passed.
pub trait Validate {
    /// Records every problem found in `errors`; the default accepts anything that deserialized.
    fn validate(&self, errors: &mut FieldErrors) {
        let _ = errors;
    }
}

/// Why a JSON body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonProblem {
    /// Not syntactically JSON (400 `MALFORMED_JSON`), with where it broke.
    Malformed { line: usize, column: usize },
    /// Valid JSON of the wrong shape: wrong types, missing or unknown fields (422).
    Fields(FieldErrors),
}

/// Deserializes a JSON body, telling broken syntax from a wrong shape; anything after the value
/// counts as broken syntax.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonProblem> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        json_problem(&path, err.inner())
    })?;
    de.end().map_err(|e| json_problem(".", &e))?;
    Ok(value)
}

/// [`parse_json`], reading a number with a zero fraction or an exponent (`5.0`, `1e3`) as the
/// integer it is, as JSON Schema does (`5.0` is an `integer` there, but not to serde), so that a
/// body the OpenAPI document allows is read. Central's extractor uses it; the edge's validation
/// path keeps the single-pass [`parse_json`], whose one body has no integer fields.
pub fn parse_json_integral<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonProblem> {
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| json_problem(".", &e))?;
    integral_numbers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        json_problem(&path, err.inner())
    })
}

/// Rewrites every float with no fractional part that fits an `i64` or a `u64` as that integer.
fn integral_numbers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0) {
                // The casts are exact: `f` is integral and inside the target's range.
                #[expect(clippy::cast_possible_truncation, reason = "checked range")]
                let integer = if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f)
                {
                    Some(serde_json::Number::from(f as i64))
                } else if (0.0..1.844_674_407_370_955_2e19).contains(&f) {
                    #[expect(clippy::cast_sign_loss, reason = "checked range")]
                    Some(serde_json::Number::from(f as u64))
                } else {
                    None
                };
                if let Some(integer) = integer {
                    *n = integer;
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

fn json_problem(path: &str, err: &serde_json::Error) -> JsonProblem {
    match err.classify() {
        serde_json::error::Category::Data => {
            let (field, problem) = describe_data_error(path, &err.to_string());
            JsonProblem::Fields(FieldErrors::single(field, problem))
        }
        _ => JsonProblem::Malformed {
            line: err.line(),
            column: err.column(),
        },
    }
}

/// Turns serde's message for a data error at `path` into a field name and a problem (also used
/// for query strings).
pub fn describe_data_error(path: &str, message: &str) -> (String, FieldProblem) {
    let join = |name: &str| {
        if path == "." || path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    let quoted = |m: &str| m.split('`').nth(1).map(str::to_owned);
    if let Some(name) = message.strip_prefix("missing field ").and_then(quoted) {
        return (join(&name), FieldProblem::Required);
    }
    if let Some(name) = message.strip_prefix("unknown field ").and_then(quoted) {
        // The path already ends at the unknown field.
        let at_field = path.rsplit('.').next() == Some(name.as_str());
        return (
            if at_field {
                path.to_owned()
            } else {
                join(&name)
            },
            FieldProblem::Unknown,
        );
    }
    let expected = message
        .split(", expected ")
        .nth(1)
        .map(|e| e.split(" at line ").next().unwrap_or(e).to_owned())
        .unwrap_or_else(|| "a valid value".into());
    let field = if path == "." || path.is_empty() {
        "body".to_owned()
    } else {
        path.to_owned()
    };
    (field, FieldProblem::InvalidType { expected })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_problem_of_a_field_is_kept() {
        let mut errors = FieldErrors::new();
        errors.add("name", FieldProblem::Required);
        errors.add("name", FieldProblem::TooLong { max: 3 });
        errors.add("email", FieldProblem::InvalidFormat { expected: "email" });
        let rendered = errors.render(Lang::En);
        assert_eq!(rendered.len(), 2);
        assert_eq!(rendered[0].code, "REQUIRED");
        assert_eq!(rendered[1].field, "email");
    }

    #[test]
    fn text_counts_characters_and_refuses_blank_and_control_characters() {
        let mut errors = FieldErrors::new();
        errors.text("a", "   ", 1, 10);
        errors.text("b", "ñandú", 1, 5);
        errors.text("c", "abcdef", 1, 5);
        errors.text("d", "a", 2, 5);
        errors.text("e", " abcd ", 1, 5);
        errors.text("f", "a\u{7}b", 0, 5);
        errors.text("g", "a\tb\r\n", 1, 5);
        errors.text("h", "", 0, 5);
        let codes: Vec<_> = errors
            .render(Lang::Es)
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect();
        assert_eq!(
            codes,
            vec![
                ("a".into(), "REQUIRED"),
                ("c".into(), "TOO_LONG"),
                ("d".into(), "TOO_SHORT"),
                ("e".into(), "TOO_LONG"),
                ("f".into(), "INVALID_FORMAT"),
            ]
        );
    }

    #[test]
    fn integral_floats_are_read_as_integers_and_fractions_are_not() {
        #[derive(Debug, serde::Deserialize)]
        struct Body {
            count: i64,
            big: u64,
        }
        let body: Body = parse_json_integral(br#"{"count": -5.0, "big": 1e19}"#).unwrap();
        assert_eq!((body.count, body.big), (-5, 10_000_000_000_000_000_000));
        assert!(matches!(
            parse_json_integral::<Body>(br#"{"count": 5.5, "big": 1}"#),
            Err(JsonProblem::Fields(_))
        ));
        assert!(matches!(
            parse_json_integral::<Body>(br#"{"count": 5,"#),
            Err(JsonProblem::Malformed { .. })
        ));
    }

    #[test]
    fn messages_follow_the_language() {
        let p = FieldProblem::OutOfRange { min: 1, max: 100 };
        assert_eq!(p.message(Lang::Es), "debe estar entre 1 y 100");
        assert_eq!(p.message(Lang::En), "must be between 1 and 100");
    }
}
