//! Request validation: the rules live in `celaest_protocol::input`, shared with the edge so both
//! answer bad input with the same fields, codes and messages; this re-exports them for central.
//!
//! It adds the other half of each rule: the JSON Schema the OpenAPI document shows for a field,
//! built from the same bounds the validator checks, so that a request the document allows is
//! accepted and one it forbids is refused. A rule is a type — [`Text`], [`Int`] — whose `check`
//! the body's [`Validate`] calls and whose `schema`/`optional` the field's
//! `#[schema(schema_with = …)]` names; modules give each rule a name
//! (`type Name = Text<1, 200>;`) and use that name in both places. Closed sets, e-mail, URLs and
//! IP addresses have a schema function beside their check.

pub use celaest_protocol::input::{FieldErrorBody, FieldErrors, FieldProblem, Validate};
use celaest_protocol::input::{NON_BLANK_TEXT_PATTERN, TEXT_PATTERN};
use utoipa::openapi::{
    KnownFormat, ObjectBuilder, SchemaFormat, Type,
    schema::{AnyOfBuilder, SchemaType},
};

/// A string, or a string or `null` when the field is optional (serde reads `null` as absent).
fn string(optional: bool) -> ObjectBuilder {
    let types = if optional {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::Type(Type::String)
    };
    ObjectBuilder::new().schema_type(types)
}

/// Text of `MIN..=MAX` characters, not blank when `MIN > 0`, without control characters but tab
/// and line breaks ([`FieldErrors::text`]).
#[derive(Debug, Clone, Copy)]
pub struct Text<const MIN: usize, const MAX: usize>;

impl<const MIN: usize, const MAX: usize> Text<MIN, MAX> {
    pub fn check(errors: &mut FieldErrors, field: &str, value: &str) {
        errors.text(field, value, MIN, MAX);
    }

    pub fn check_opt(errors: &mut FieldErrors, field: &str, value: Option<&str>) {
        errors.opt_text(field, value, MIN, MAX);
    }

    fn build(optional: bool) -> ObjectBuilder {
        string(optional)
            .min_length(Some(MIN))
            .max_length(Some(MAX))
            .pattern(Some(if MIN > 0 {
                NON_BLANK_TEXT_PATTERN
            } else {
                TEXT_PATTERN
            }))
    }

    /// The schema of a required field.
    pub fn schema() -> ObjectBuilder {
        Self::build(false)
    }

    /// The schema of an optional field.
    pub fn optional() -> ObjectBuilder {
        Self::build(true)
    }
}

/// An integer in `MIN..=MAX`.
#[derive(Debug, Clone, Copy)]
pub struct Int<const MIN: i64, const MAX: i64>;

impl<const MIN: i64, const MAX: i64> Int<MIN, MAX> {
    pub fn check(errors: &mut FieldErrors, field: &str, value: i64) {
        errors.range(field, value, MIN, MAX);
    }

    pub fn check_opt(errors: &mut FieldErrors, field: &str, value: Option<i64>) {
        if let Some(value) = value {
            Self::check(errors, field, value);
        }
    }

    fn build(optional: bool) -> ObjectBuilder {
        let types = if optional {
            SchemaType::from_iter([Type::Integer, Type::Null])
        } else {
            SchemaType::Type(Type::Integer)
        };
        ObjectBuilder::new()
            .schema_type(types)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(MIN as f64))
            .maximum(Some(MAX as f64))
    }

    /// The schema of a required field.
    pub fn schema() -> ObjectBuilder {
        Self::build(false)
    }

    /// The schema of an optional field.
    pub fn optional() -> ObjectBuilder {
        Self::build(true)
    }
}

/// One of a closed set of strings ([`FieldErrors::one_of`]).
pub fn one_of_schema(allowed: &[&str], optional: bool) -> ObjectBuilder {
    let mut values: Vec<Option<&str>> = allowed.iter().copied().map(Some).collect();
    if optional {
        values.push(None);
    }
    string(optional).enum_values(Some(values))
}

/// The longest e-mail address accepted.
pub const EMAIL_MAX: usize = 320;

/// Checks an e-mail address: one `@`, something before it, a dotted domain after it, no white
/// space or control character, at most [`EMAIL_MAX`] characters.
pub fn check_email(errors: &mut FieldErrors, field: &str, email: &str) {
    let ok = email.chars().count() <= EMAIL_MAX
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.matches('@').count() == 1;
    if !ok {
        errors.add(field, FieldProblem::InvalidFormat { expected: "email" });
    }
}

/// The schema of [`check_email`] for a required field.
pub fn email() -> ObjectBuilder {
    email_schema(false)
}

/// The schema of [`check_email`] for an optional field.
pub fn optional_email() -> ObjectBuilder {
    email_schema(true)
}

/// The rule of [`check_email`] as a pattern: each class leaves out `@`, control characters
/// (`\u0000-\u001F`, `\u007F-\u009F`) and white space as Rust's `char::is_whitespace` has it
/// (the `email` format alone would allow quoted local parts with spaces and dotless domains,
/// which the rule refuses).
fn email_schema(optional: bool) -> ObjectBuilder {
    string(optional)
        .max_length(Some(EMAIL_MAX))
        .pattern(Some(concat!(
            r"^[^@\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]+",
            r"@[^@.\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]",
            r"[^@\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*",
            r"\.",
            r"[^@\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*",
            r"[^@.\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]$",
        )))
}

/// The longest URL accepted.
pub const URL_MAX: usize = 2048;

/// Checks an `http://` or `https://` URL of at most [`URL_MAX`] characters.
pub fn check_url(errors: &mut FieldErrors, field: &str, url: Option<&str>) {
    if let Some(url) = url {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            errors.add(
                field,
                FieldProblem::InvalidFormat {
                    expected: "http(s) URL",
                },
            );
        }
        errors.opt_text(field, Some(url), 1, URL_MAX);
    }
}

/// The schema of [`check_url`] for an optional field.
pub fn optional_url() -> ObjectBuilder {
    string(true).max_length(Some(URL_MAX)).pattern(Some(concat!(
        "^https?://",
        "[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$"
    )))
}

/// Addresses `protocol::validation::parse_ip` refuses although they are well formed: unspecified,
/// multicast, the IPv4 broadcast address, and those as IPv4-mapped IPv6 addresses (a negative
/// lookahead: JSON Schema patterns are ECMA-262).
const UNUSABLE_IP: &str = concat!(
    r"^(?!0\.0\.0\.0$|255\.255\.255\.255$|2(2[4-9]|3[0-9])\.|[fF][fF]|[0:]+$",
    r"|::[fF]{4}:(0\.0\.0\.0$|255\.255\.255\.255$|2(2[4-9]|3[0-9])\.))"
);

/// The schema of an IP address `protocol::validation::parse_ip` accepts: IPv4 or IPv6, not one
/// that cannot be a client's ([`UNUSABLE_IP`]).
pub fn ip_address() -> AnyOfBuilder {
    let of = |format| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(format)))
            .pattern(Some(UNUSABLE_IP))
    };
    AnyOfBuilder::new()
        .item(of(KnownFormat::Ipv4))
        .item(of(KnownFormat::Ipv6))
}

/// A time that must still be ahead, e.g. an expiry being set.
pub const IN_THE_PAST: FieldProblem = FieldProblem::Custom {
    code: "IN_THE_PAST",
    es: "debe ser una fecha futura",
    en: "must be in the future",
};

/// `at`, when given, lies in the future; otherwise 409 `CONFLICT` naming `field` (the clock is
/// state no schema can state).
pub fn ensure_future(
    field: &str,
    at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(), super::Error> {
    match at {
        Some(at) if at <= chrono::Utc::now() => Err(super::Error::conflict(field, IN_THE_PAST)),
        _ => Ok(()),
    }
}

/// A body type whose create form must carry fields its update form may leave out.
pub trait Creates: Validate + utoipa::PartialSchema {
    /// Those fields, by their JSON names.
    const REQUIRED: &'static [&'static str];

    /// Whether `field`, one of [`Self::REQUIRED`], is present (and not `null`).
    fn has(&self, field: &str) -> bool;
}

/// The body of a create: `T`, the body of the matching update, with every field of
/// [`Creates::REQUIRED`] present — in the check and in the schema ([`New::schema`]), from the
/// one list.
#[derive(Debug)]
pub struct New<T>(pub T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for New<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Self)
    }
}

impl<T: Creates> Validate for New<T> {
    fn validate(&self, errors: &mut FieldErrors) {
        for field in T::REQUIRED {
            if !self.0.has(field) {
                errors.add(*field, FieldProblem::Required);
            }
        }
        self.0.validate(errors);
    }
}

impl<T: Creates> New<T> {
    /// `T`'s schema with [`Creates::REQUIRED`] required and not nullable.
    pub fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::{RefOr, Schema};
        let mut schema = T::schema();
        if let RefOr::T(Schema::Object(object)) = &mut schema {
            object.required = T::REQUIRED.iter().map(|f| (*f).to_owned()).collect();
            for field in T::REQUIRED {
                if let Some(RefOr::T(Schema::Object(property))) = object.properties.get_mut(*field)
                {
                    if let SchemaType::Array(types) = &mut property.schema_type {
                        types.retain(|t| *t != Type::Null);
                        if let [only] = types.as_slice() {
                            property.schema_type = SchemaType::Type(only.clone());
                        }
                    }
                    if let Some(values) = &mut property.enum_values {
                        values.retain(|v| !v.is_null());
                    }
                }
            }
        }
        schema
    }
}

/// `T`'s schema with a rule between fields added (`allOf`).
pub fn with_rule(
    schema: utoipa::openapi::RefOr<utoipa::openapi::Schema>,
    rule: impl Into<utoipa::openapi::RefOr<utoipa::openapi::Schema>>,
) -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    utoipa::openapi::AllOfBuilder::new()
        .item(schema)
        .item(rule)
        .into()
}

/// A field absent or `null`.
fn absent(field: &str) -> ObjectBuilder {
    ObjectBuilder::new().property(field, ObjectBuilder::new().schema_type(Type::Null))
}

/// Exactly one of `fields` given (present and not `null`), each `(name, type)`.
pub fn exactly_one_of(fields: &[(&str, Type)]) -> utoipa::openapi::OneOfBuilder {
    let mut one_of = utoipa::openapi::OneOfBuilder::new();
    for (given, kind) in fields {
        let mut branch = ObjectBuilder::new()
            .required(*given)
            .property(*given, ObjectBuilder::new().schema_type(kind.clone()));
        for (other, _) in fields.iter().filter(|(f, _)| f != given) {
            branch = branch.property(*other, ObjectBuilder::new().schema_type(Type::Null));
        }
        one_of = one_of.item(branch);
    }
    one_of
}

/// Not both of two fields given.
pub fn not_both(a: &str, b: &str) -> AnyOfBuilder {
    AnyOfBuilder::new().item(absent(a)).item(absent(b))
}

/// Text PostgreSQL can store: anything but NUL, which it refuses (answered 422 by
/// `Error::Database`'s classification). For free-text filters and codes looked up as given.
const NO_NUL_PATTERN: &str = "^[^\\u0000]*$";

/// The schema of a free-text query parameter (or an item of a list of free texts).
pub fn query_text() -> ObjectBuilder {
    string(false).pattern(Some(NO_NUL_PATTERN))
}

/// The schema of an optional free-text body field with no rule but PostgreSQL's.
pub fn optional_plain_text() -> ObjectBuilder {
    string(true).pattern(Some(NO_NUL_PATTERN))
}
