//! Folding validations into counted rows, so that overload costs detail, never a validation.
//!
//! When the recorder cannot store validations one by one (its queue is full because PostgreSQL is
//! slow or down), each further validation joins a [`Coalescer`]: the validations of one license,
//! IP address, result code and minute become one [`Row`] with a `count`. Memory stays bounded
//! however large the key space is, because each level has a cap and, past it, a validation folds
//! into a coarser key; the count is exact at every level:
//!
//! | level | key | at most |
//! |-------|-----|---------|
//! | 0 | license, IP, code, minute | [`Caps::by_ip`] rows |
//! | 1 | license, code, minute     | [`Caps::by_license`] rows |
//! | 2 | code, minute              | [`Caps::by_minute`] rows |
//! | 3 | code                      | one row per result code and verdict (a closed set) |
//!
//! A validation joins the finest level that already holds its key or still has room. A field the
//! merged validations all share is kept; one they differ in is left empty (a level-1 row of two
//! addresses has no IP, a level-2 row of two licenses has no license). So the total of `count` is
//! exact everywhere, the per-license counters are exact up to level 1, the per-binding counters
//! up to level 0, and collision detection sees every address a row still names.
//!
//! The bound: at most `by_ip + by_license + by_minute + 2 × codes` rows, each about 200 bytes
//! plus its device text (at most 512 characters, kept only while the merged validations agree).

use std::{collections::HashMap, net::IpAddr};

use uuid::Uuid;

use super::ValidationRecord;
use crate::licensing::store::ValidationWrite as Row;

impl From<ValidationRecord> for Row {
    fn from(r: ValidationRecord) -> Self {
        Self {
            id: r.id,
            license_id: r.license_id,
            key_hash: r.key_hash,
            ip: Some(r.ip),
            device_info: r.device_info,
            result_code: r.result_code,
            valid: r.valid,
            answered_by: r.answered_by,
            region: r.region,
            validated_at: r.validated_at,
            count: 1,
        }
    }
}

/// Adds `other`'s validations to `held`: counts add up, shared fields stay, the others are left
/// empty.
fn absorb(held: &mut Row, other: &Row) {
    fn keep_shared<T: PartialEq>(mine: &mut Option<T>, theirs: Option<&T>) {
        if mine.as_ref() != theirs {
            *mine = None;
        }
    }
    held.count = held.count.saturating_add(other.count);
    keep_shared(&mut held.license_id, other.license_id.as_ref());
    keep_shared(&mut held.key_hash, other.key_hash.as_ref());
    keep_shared(&mut held.ip, other.ip.as_ref());
    keep_shared(&mut held.device_info, other.device_info.as_ref());
    keep_shared(&mut held.region, other.region.as_ref());
    held.validated_at = held.validated_at.max(other.validated_at);
}

fn minute(row: &Row) -> i64 {
    row.validated_at.timestamp().div_euclid(60)
}

/// The rows each level may hold before validations fold into the next, coarser one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub by_ip: usize,
    pub by_license: usize,
    pub by_minute: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            by_ip: 100_000,
            by_license: 50_000,
            by_minute: 10_000,
        }
    }
}

impl Caps {
    /// The most rows a [`Coalescer`] with these caps can hold.
    pub fn max_rows(&self) -> usize {
        self.by_ip
            + self.by_license
            + self.by_minute
            + 2 * celaest_protocol::ValidationCode::ALL.len()
    }
}

/// The level a validation joined (see the module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ip,
    License,
    Minute,
    Code,
}

type Code = (&'static str, bool);

/// Validations folded into counted rows, within [`Caps`].
#[derive(Debug, Default)]
pub struct Coalescer {
    caps: Caps,
    by_ip: HashMap<(Option<Uuid>, Option<IpAddr>, Code, i64), Row>,
    by_license: HashMap<(Option<Uuid>, Code, i64), Row>,
    by_minute: HashMap<(Code, i64), Row>,
    by_code: HashMap<Code, Row>,
    validations: u64,
}

impl Coalescer {
    pub fn new(caps: Caps) -> Self {
        Self {
            caps,
            ..Self::default()
        }
    }

    /// Adds a row (one validation, or several already merged) at the finest level that holds
    /// its key or has room.
    pub fn add(&mut self, row: Row) -> Level {
        self.validations = self.validations.saturating_add(row.count);
        let (code, minute) = ((row.result_code, row.valid), minute(&row));
        let by_ip = (row.license_id, row.ip, code, minute);
        if let Some(held) = self.by_ip.get_mut(&by_ip) {
            absorb(held, &row);
            return Level::Ip;
        }
        if self.by_ip.len() < self.caps.by_ip {
            self.by_ip.insert(by_ip, row);
            return Level::Ip;
        }
        let by_license = (row.license_id, code, minute);
        if let Some(held) = self.by_license.get_mut(&by_license) {
            absorb(held, &row);
            return Level::License;
        }
        if self.by_license.len() < self.caps.by_license {
            self.by_license.insert(by_license, row);
            return Level::License;
        }
        if let Some(held) = self.by_minute.get_mut(&(code, minute)) {
            absorb(held, &row);
            return Level::Minute;
        }
        if self.by_minute.len() < self.caps.by_minute {
            self.by_minute.insert((code, minute), row);
            return Level::Minute;
        }
        match self.by_code.get_mut(&code) {
            Some(held) => absorb(held, &row),
            None => {
                self.by_code.insert(code, row);
            }
        }
        Level::Code
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.by_ip.len() + self.by_license.len() + self.by_minute.len() + self.by_code.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Validations held (the sum of the rows' counts).
    pub fn validations(&self) -> u64 {
        self.validations
    }

    /// Takes up to `max` rows out, the coarsest first (they hold the most validations).
    pub fn take(&mut self, max: usize) -> Vec<Row> {
        let mut rows = Vec::with_capacity(max.min(self.len()));
        take_from(&mut self.by_code, max, &mut rows);
        take_from(&mut self.by_minute, max, &mut rows);
        take_from(&mut self.by_license, max, &mut rows);
        take_from(&mut self.by_ip, max, &mut rows);
        let taken = rows.iter().map(|r| r.count).sum::<u64>();
        self.validations = self.validations.saturating_sub(taken);
        rows
    }
}

fn take_from<K: Copy + Eq + std::hash::Hash>(
    map: &mut HashMap<K, Row>,
    max: usize,
    rows: &mut Vec<Row>,
) {
    let room = max.saturating_sub(rows.len());
    if room >= map.len() {
        rows.extend(map.drain().map(|(_, row)| row));
        return;
    }
    let keys: Vec<K> = map.keys().take(room).copied().collect();
    rows.extend(keys.iter().filter_map(|k| map.remove(k)));
}

/// Merges a set of validations (one edge batch) by license, IP, code and minute — level 0 with
/// no cap: the set is already bounded.
pub fn merge_all(records: Vec<ValidationRecord>) -> Vec<Row> {
    merge_rows(records.into_iter().map(Row::from).collect())
}

/// [`merge_all`] for rows (some perhaps already merged).
pub fn merge_rows(rows: Vec<Row>) -> Vec<Row> {
    let mut merged: HashMap<(Option<Uuid>, Option<IpAddr>, Code, i64), Row> = HashMap::new();
    let mut order = Vec::new();
    for row in rows {
        let key = (
            row.license_id,
            row.ip,
            (row.result_code, row.valid),
            minute(&row),
        );
        match merged.get_mut(&key) {
            Some(held) => absorb(held, &row),
            None => {
                order.push(key);
                merged.insert(key, row);
            }
        }
    }
    // In arrival order, so the first row stored is the first validation reported.
    order.iter().filter_map(|k| merged.remove(k)).collect()
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};

    use super::*;

    const VALID: &str = "VALID";
    const EXPIRED: &str = "LICENSE_EXPIRED";

    fn at(minute: i64, second: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_040 + minute * 60 + second, 0)
            .unwrap()
    }

    fn record(license: u128, ip: u8, code: &'static str, when: DateTime<Utc>) -> ValidationRecord {
        ValidationRecord {
            id: Uuid::now_v7(),
            license_id: (license > 0).then(|| Uuid::from_u128(license)),
            key_hash: Some([u8::try_from(license % 256).unwrap(); 32]),
            ip: IpAddr::from([198, 51, 100, ip]),
            device_info: Some("Windows 11".to_owned()),
            result_code: code,
            valid: code == VALID,
            answered_by: "central".to_owned(),
            region: None,
            validated_at: when,
        }
    }

    fn caps(by_ip: usize, by_license: usize, by_minute: usize) -> Caps {
        Caps {
            by_ip,
            by_license,
            by_minute,
        }
    }

    fn drain(c: &mut Coalescer) -> Vec<Row> {
        let rows = c.take(usize::MAX);
        assert!(c.is_empty());
        assert_eq!(c.validations(), 0);
        rows
    }

    #[test]
    fn the_same_license_ip_code_and_minute_become_one_row_with_a_count() {
        let mut c = Coalescer::new(Caps::default());
        let first = record(1, 1, VALID, at(0, 1));
        let first_id = first.id;
        c.add(first.into());
        c.add(record(1, 1, VALID, at(0, 59)).into());
        c.add(record(1, 1, VALID, at(0, 30)).into());
        // Another minute, address, code or license is another row.
        c.add(record(1, 1, VALID, at(1, 0)).into());
        c.add(record(1, 2, VALID, at(0, 2)).into());
        c.add(record(1, 1, EXPIRED, at(0, 3)).into());
        c.add(record(2, 1, VALID, at(0, 4)).into());
        assert_eq!((c.len(), c.validations()), (5, 7));
        let rows = drain(&mut c);
        let three = rows.iter().find(|r| r.count == 3).unwrap();
        assert_eq!(three.id, first_id, "the first validation's id");
        assert_eq!(three.validated_at, at(0, 59), "the latest time");
        assert_eq!(three.ip, Some(IpAddr::from([198, 51, 100, 1])));
        assert_eq!(three.device_info.as_deref(), Some("Windows 11"));
        assert_eq!(rows.iter().map(|r| r.count).sum::<u64>(), 7);
    }

    #[test]
    fn past_each_cap_validations_fold_into_the_next_coarser_level() {
        let mut c = Coalescer::new(caps(1, 1, 1));
        assert_eq!(c.add(record(1, 1, VALID, at(0, 0)).into()), Level::Ip);
        // Level 0 is full: a new address of the same license and minute joins level 1.
        assert_eq!(c.add(record(1, 2, VALID, at(0, 1)).into()), Level::License);
        assert_eq!(c.add(record(1, 3, VALID, at(0, 2)).into()), Level::License);
        // A key level 0 already holds still joins it.
        assert_eq!(c.add(record(1, 1, VALID, at(0, 3)).into()), Level::Ip);
        // Another license: level 1 is full too, so it joins level 2 (code and minute).
        assert_eq!(c.add(record(2, 1, VALID, at(0, 4)).into()), Level::Minute);
        assert_eq!(c.add(record(3, 1, VALID, at(0, 5)).into()), Level::Minute);
        // Another minute: every capped level is full; only the code remains.
        assert_eq!(c.add(record(4, 1, VALID, at(5, 0)).into()), Level::Code);
        assert_eq!(c.add(record(5, 9, VALID, at(9, 0)).into()), Level::Code);
        assert_eq!(c.add(record(5, 9, EXPIRED, at(9, 0)).into()), Level::Code);
        assert_eq!((c.len(), c.validations()), (5, 9));

        let rows = drain(&mut c);
        let count_of =
            |f: &dyn Fn(&Row) -> bool| rows.iter().filter(|r| f(r)).map(|r| r.count).sum::<u64>();
        // Level 1 merged two addresses of one license: the license stays, the address does not.
        let by_license = rows
            .iter()
            .find(|r| r.license_id == Some(Uuid::from_u128(1)) && r.ip.is_none())
            .unwrap();
        assert_eq!(by_license.count, 2);
        assert_eq!(by_license.key_hash, Some([1; 32]), "one license, one key");
        // Level 2 merged two licenses: neither stays.
        let by_minute = rows
            .iter()
            .find(|r| r.license_id.is_none() && r.validated_at == at(0, 5))
            .unwrap();
        assert_eq!((by_minute.count, by_minute.key_hash), (2, None));
        assert_eq!(
            by_minute.ip,
            Some(IpAddr::from([198, 51, 100, 1])),
            "one address, kept"
        );
        assert_eq!(count_of(&|r| r.result_code == EXPIRED), 1);
        assert_eq!(count_of(&|r| r.valid), 8);
    }

    #[test]
    fn a_large_key_space_stays_within_the_bound_and_every_validation_is_counted() {
        let caps = caps(50, 20, 10);
        let mut c = Coalescer::new(caps);
        let mut added = 0u64;
        let mut valid = 0u64;
        let mut by_license: HashMap<u128, u64> = HashMap::new();
        // 300 licenses × 40 addresses × 2 codes over 30 minutes: far more keys than room.
        for i in 0..24_000u32 {
            let license = u128::from(i % 300) + 1;
            let ip = u8::try_from(i % 40).unwrap();
            let code = if i % 7 == 0 { EXPIRED } else { VALID };
            c.add(record(license, ip, code, at(i64::from(i % 30), 0)).into());
            added += 1;
            valid += u64::from(code == VALID);
            *by_license.entry(license).or_default() += 1;
            assert!(c.len() <= caps.max_rows(), "{} rows", c.len());
        }
        assert_eq!(c.validations(), added);
        // Taken in parts, as the writer does: the counts still add up exactly.
        let mut rows = Vec::new();
        while !c.is_empty() {
            let part = c.take(7);
            assert!(part.len() <= 7);
            rows.extend(part);
        }
        assert_eq!(c.validations(), 0);
        assert_eq!(rows.iter().map(|r| r.count).sum::<u64>(), added);
        assert_eq!(
            rows.iter()
                .filter(|r| r.valid)
                .map(|r| r.count)
                .sum::<u64>(),
            valid
        );
        // A license a row still names got at most what was recorded for it.
        for row in rows.iter().filter(|r| r.license_id.is_some()) {
            let license = row.license_id.unwrap().as_u128();
            assert!(row.count <= by_license[&license]);
        }
    }

    #[test]
    fn a_batch_merges_by_license_ip_code_and_minute_in_arrival_order() {
        let records = vec![
            record(2, 1, VALID, at(0, 0)),
            record(1, 1, VALID, at(0, 1)),
            record(2, 1, VALID, at(0, 2)),
            record(2, 1, VALID, at(1, 0)),
            record(0, 7, "LICENSE_NOT_FOUND", at(0, 3)),
        ];
        let first = records[0].id;
        let rows = merge_all(records);
        let summary: Vec<(Option<Uuid>, u64)> =
            rows.iter().map(|r| (r.license_id, r.count)).collect();
        assert_eq!(
            summary,
            vec![
                (Some(Uuid::from_u128(2)), 2),
                (Some(Uuid::from_u128(1)), 1),
                (Some(Uuid::from_u128(2)), 1),
                (None, 1)
            ]
        );
        assert_eq!(rows[0].id, first);
        // Merging merged rows again changes nothing.
        assert_eq!(merge_rows(rows.clone()), rows);
    }
}
