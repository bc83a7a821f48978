//! Pagination, sorting and filter helpers for list endpoints
//! (`?page=1&per_page=20&sort=created_at&order=desc&created_after=2026-01-01`).
//!
//! `sort` is checked against each endpoint's whitelist of columns and turned into a
//! `&'static str` from that whitelist, so it can be pushed into SQL without ever carrying user
//! text; every other value goes through `push_bind`.
//!
//! The OpenAPI document shows the same rules: [`ListQuery<T>`] documents the page and sort
//! parameters of a list of `T` from `T`'s [`Listed::SORT`] — the spec its handler validates
//! with — and [`TimeBound`]'s schema is a date or a date-time.

use std::marker::PhantomData;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Deserializer};
use sqlx::{Postgres, QueryBuilder};
use utoipa::{
    IntoParams,
    openapi::{
        KnownFormat, ObjectBuilder, SchemaFormat, Type,
        path::{Parameter, ParameterBuilder, ParameterIn},
        schema::AnyOfBuilder,
    },
};

use super::{
    error::Error,
    validate::{FieldErrors, FieldProblem},
};

pub const DEFAULT_PER_PAGE: u32 = 20;
pub const MAX_PER_PAGE: u32 = 100;
/// The last page that can be asked for: its offset still fits a `u32`.
pub const MAX_PAGE: i64 = (u32::MAX / MAX_PER_PAGE) as i64;
/// The directions `order` accepts.
const ORDERS: [&str; 2] = ["asc", "desc"];

/// A type listed by an endpoint, with the columns its list may be sorted by.
pub trait Listed {
    const SORT: SortSpec;
}

/// The page and sort parameters of a list of `T`, for the OpenAPI document: what
/// [`ListParams::validate`] with `T::SORT` accepts.
pub struct ListQuery<T>(PhantomData<T>);

impl<T: Listed> IntoParams for ListQuery<T> {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let query = |name: &str, description: &str, schema: ObjectBuilder| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .description(Some(description))
                .schema(Some(schema))
                .build()
        };
        let integer = |min: i64, max: i64| {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(min))
                .maximum(Some(max))
        };
        let one_of = |allowed: Vec<&'static str>| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(allowed))
        };
        vec![
            query("page", "Page number, from 1.", integer(1, MAX_PAGE)),
            query(
                "per_page",
                "Items per page (default 20).",
                integer(1, i64::from(MAX_PER_PAGE)),
            ),
            query("sort", "The column to sort by.", one_of(T::SORT.names())),
            query("order", "The direction.", one_of(ORDERS.to_vec())),
        ]
    }
}

/// The raw list parameters of a query string.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListParams {
    pub page: Option<i64>,
    pub per_page: Option<i64>,
    pub sort: Option<String>,
    pub order: Option<String>,
}

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u32,
    pub per_page: u32,
}

impl PageRequest {
    pub fn offset(self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.per_page)
    }

    pub fn limit(self) -> i64 {
        i64::from(self.per_page)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

impl Order {
    pub fn sql(self) -> &'static str {
        match self {
            Self::Asc => "ASC",
            Self::Desc => "DESC",
        }
    }
}

/// A validated sort: a whitelisted SQL column and a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub column: &'static str,
    pub order: Order,
}

/// The columns an endpoint may be sorted by: `(name in the query string, SQL expression)`.
#[derive(Debug, Clone, Copy)]
pub struct SortSpec {
    pub allowed: &'static [(&'static str, &'static str)],
    pub default: Sort,
}

impl SortSpec {
    /// Names accepted in `sort`, for error messages and documentation.
    fn names(&self) -> Vec<&'static str> {
        self.allowed.iter().map(|(name, _)| *name).collect()
    }
}

/// A validated page and sort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListRequest {
    pub page: PageRequest,
    pub sort: Sort,
}

impl ListParams {
    /// Checks page bounds and the sort whitelist, reporting every bad parameter at once.
    pub fn validate(&self, spec: &SortSpec) -> Result<ListRequest, Error> {
        let mut errors = FieldErrors::new();
        let page = self.page.unwrap_or(1);
        if !(1..=MAX_PAGE).contains(&page) {
            errors.add(
                "page",
                FieldProblem::OutOfRange {
                    min: 1,
                    max: MAX_PAGE,
                },
            );
        }
        let per_page = self.per_page.unwrap_or(i64::from(DEFAULT_PER_PAGE));
        if !(1..=i64::from(MAX_PER_PAGE)).contains(&per_page) {
            errors.add(
                "per_page",
                FieldProblem::OutOfRange {
                    min: 1,
                    max: i64::from(MAX_PER_PAGE),
                },
            );
        }
        let column = match self.sort.as_deref() {
            None => Some(spec.default.column),
            Some(name) => spec
                .allowed
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, col)| *col),
        };
        if column.is_none() {
            errors.add(
                "sort",
                FieldProblem::NotOneOf {
                    allowed: spec.names(),
                },
            );
        }
        let order = match self.order.as_deref() {
            None => Some(spec.default.order),
            Some("asc") => Some(Order::Asc),
            Some("desc") => Some(Order::Desc),
            Some(_) => None,
        };
        if order.is_none() {
            errors.add(
                "order",
                FieldProblem::NotOneOf {
                    allowed: ORDERS.to_vec(),
                },
            );
        }
        errors.into_result()?;
        Ok(ListRequest {
            page: PageRequest {
                page: u32::try_from(page).unwrap_or(1),
                per_page: u32::try_from(per_page).unwrap_or(DEFAULT_PER_PAGE),
            },
            sort: Sort {
                column: column.unwrap_or(spec.default.column),
                order: order.unwrap_or(Order::Desc),
            },
        })
    }
}

impl ListRequest {
    /// Appends `ORDER BY <column> <dir>, <tiebreak> <dir> LIMIT … OFFSET …` to a query.
    ///
    /// `tiebreak` (usually the primary key) keeps pages stable when sort values repeat.
    pub fn push_order_and_page(&self, qb: &mut QueryBuilder<Postgres>, tiebreak: &'static str) {
        qb.push(" ORDER BY ")
            .push(self.sort.column)
            .push(" ")
            .push(self.sort.order.sql())
            .push(", ")
            .push(tiebreak)
            .push(" ")
            .push(self.sort.order.sql());
        qb.push(" LIMIT ")
            .push_bind(self.page.limit())
            .push(" OFFSET ")
            .push_bind(self.page.offset());
    }
}

/// A point in time given as a date (`2026-01-01`, midnight UTC) or an RFC 3339 timestamp, as the
/// spec's `created_after`/`created_before` filters take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBound(pub DateTime<Utc>);

impl TimeBound {
    pub fn parse(raw: &str) -> Option<Self> {
        if let Ok(ts) = DateTime::parse_from_rfc3339(raw) {
            return Some(Self(ts.with_timezone(&Utc)));
        }
        NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .ok()
            .map(|d| Self(d.and_time(NaiveTime::MIN).and_utc()))
    }
}

impl TimeBound {
    /// The schema of a time bound query parameter: a date or an RFC 3339 date-time.
    pub fn schema() -> AnyOfBuilder {
        let of = |format| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(format)))
        };
        AnyOfBuilder::new()
            .item(of(KnownFormat::Date))
            .item(of(KnownFormat::DateTime))
            .description(Some(
                "A date (`YYYY-MM-DD`, midnight UTC) or an RFC 3339 timestamp",
            ))
    }
}

impl<'de> Deserialize<'de> for TimeBound {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).ok_or_else(|| {
            serde::de::Error::invalid_value(
                serde::de::Unexpected::Str(&raw),
                &"a date (YYYY-MM-DD) or an RFC 3339 timestamp",
            )
        })
    }
}

/// Builds a `WHERE` clause from optional filters: each present filter adds one `AND` condition,
/// with its value bound, never interpolated.
pub struct Filters<'a> {
    qb: &'a mut QueryBuilder<Postgres>,
    any: bool,
}

impl<'a> Filters<'a> {
    pub fn new(qb: &'a mut QueryBuilder<Postgres>) -> Self {
        Self { qb, any: false }
    }

    fn next(&mut self) -> &mut QueryBuilder<Postgres> {
        self.qb.push(if self.any { " AND " } else { " WHERE " });
        self.any = true;
        self.qb
    }

    /// `column = value` when the filter is present.
    pub fn eq<'q, T>(&mut self, column: &'static str, value: Option<T>) -> &mut Self
    where
        T: sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres> + Send,
    {
        if let Some(value) = value {
            self.next().push(column).push(" = ").push_bind(value);
        }
        self
    }

    /// `column >= value` when present (a lower time bound, inclusive).
    pub fn after(&mut self, column: &'static str, value: Option<TimeBound>) -> &mut Self {
        if let Some(TimeBound(ts)) = value {
            self.next().push(column).push(" >= ").push_bind(ts);
        }
        self
    }

    /// `column < value` when present (an upper time bound, exclusive).
    pub fn before(&mut self, column: &'static str, value: Option<TimeBound>) -> &mut Self {
        if let Some(TimeBound(ts)) = value {
            self.next().push(column).push(" < ").push_bind(ts);
        }
        self
    }

    /// Case-insensitive substring match over one or more columns when a search term is present.
    pub fn search(&mut self, columns: &[&'static str], term: Option<String>) -> &mut Self {
        let Some(term) = term.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()) else {
            return self;
        };
        let pattern = format!(
            "%{}%",
            term.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let qb = self.next();
        qb.push("(");
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                qb.push(" OR ");
            }
            qb.push(*column).push(" ILIKE ").push_bind(pattern.clone());
        }
        qb.push(")");
        self
    }

    /// `before <value> after`, e.g. `EXISTS (... WHERE m.user_id = ` + id + `)`; the value is bound.
    pub fn condition<'q, T>(
        &mut self,
        before: &'static str,
        value: T,
        after: &'static str,
    ) -> &mut Self
    where
        T: sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres> + Send,
    {
        self.next().push(before).push_bind(value).push(after);
        self
    }

    /// A condition written by the caller, e.g. `deleted_at IS NULL`. Must not contain user input.
    pub fn raw(&mut self, condition: &'static str) -> &mut Self {
        self.next().push(condition);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: SortSpec = SortSpec {
        allowed: &[("created_at", "t.created_at"), ("name", "t.name")],
        default: Sort {
            column: "t.created_at",
            order: Order::Desc,
        },
    };

    fn params(
        page: Option<i64>,
        per_page: Option<i64>,
        sort: Option<&str>,
        order: Option<&str>,
    ) -> ListParams {
        ListParams {
            page,
            per_page,
            sort: sort.map(Into::into),
            order: order.map(Into::into),
        }
    }

    #[test]
    fn defaults_are_first_page_of_twenty_newest_first() {
        let list = ListParams::default().validate(&SPEC).unwrap();
        assert_eq!(
            list.page,
            PageRequest {
                page: 1,
                per_page: 20
            }
        );
        assert_eq!(list.sort, SPEC.default);
        assert_eq!(list.page.offset(), 0);
    }

    #[test]
    fn sort_maps_names_to_whitelisted_columns() {
        let list = params(Some(3), Some(50), Some("name"), Some("asc"))
            .validate(&SPEC)
            .unwrap();
        assert_eq!(
            list.sort,
            Sort {
                column: "t.name",
                order: Order::Asc
            }
        );
        assert_eq!(list.page.offset(), 100);
    }

    #[test]
    fn every_bad_parameter_is_reported() {
        let err = params(
            Some(0),
            Some(101),
            Some("password; DROP TABLE x"),
            Some("sideways"),
        )
        .validate(&SPEC)
        .unwrap_err();
        let Error::Validation(fields) = err else {
            panic!("expected validation error")
        };
        let names: Vec<_> = fields
            .render(celaest_protocol::Lang::En)
            .into_iter()
            .map(|f| f.field)
            .collect();
        assert_eq!(names, ["page", "per_page", "sort", "order"]);
    }

    #[test]
    fn time_bounds_accept_dates_and_timestamps() {
        assert_eq!(
            TimeBound::parse("2026-01-01").unwrap().0.to_rfc3339(),
            "2026-01-01T00:00:00+00:00"
        );
        assert_eq!(
            TimeBound::parse("2026-01-01T10:00:00+02:00")
                .unwrap()
                .0
                .to_rfc3339(),
            "2026-01-01T08:00:00+00:00"
        );
        assert!(TimeBound::parse("yesterday").is_none());
        assert!(TimeBound::parse("2026-13-01").is_none());
    }

    #[test]
    fn filters_bind_values_and_join_with_and() {
        let mut qb = QueryBuilder::<Postgres>::new("SELECT * FROM t");
        Filters::new(&mut qb)
            .eq("t.status", Some("active"))
            .eq::<&str>("t.kind", None)
            .after("t.created_at", TimeBound::parse("2026-01-01"))
            .search(&["t.name", "t.email"], Some("50%_off".into()));
        assert_eq!(
            qb.sql(),
            "SELECT * FROM t WHERE t.status = $1 AND t.created_at >= $2 AND (t.name ILIKE $3 OR t.email ILIKE $4)"
        );
    }
}
