//! Record refs: the integer numbers, short keys and external ids that APIs naming records by
//! integer (Pterodactyl's) use. Numbers are handed out under the row lock of the kind's
//! counter, so concurrent writers never hand out the same number and a key numbered by one
//! is seen by the next.

use super::{duplicate, invalid};
use crate::backend::upsert;
use crate::connection::AnyConnection;
use crate::convert::*;
use crate::error::SqlResult;
use crate::repo::infra::INSERT_CHUNK;
use crate::schema::{record_ref_counters, record_refs};
use diesel::prelude::*;
use nexus_core::model::{RecordKind, RecordRef, RefLookup};
use nexus_core::store::{check_external_id, check_record_extra, check_record_key};
use std::collections::{HashMap, HashSet};

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = record_refs)]
struct RefRow {
    kind: String,
    record_key: String,
    number: i64,
    short: String,
    external_id: Option<String>,
    extra: Option<String>,
}

impl RefRow {
    fn into_model(self) -> SqlResult<RecordRef> {
        let kind =
            RecordKind::from_name(&self.kind).ok_or_else(|| invalid(format!("unknown record kind `{}`", self.kind)))?;
        Ok(RecordRef {
            kind,
            key: self.record_key,
            number: to_u64(self.number, "record number")?,
            short: self.short,
            external_id: self.external_id,
            extra: match &self.extra {
                Some(json) => from_json(json, "record extra")?,
                None => Default::default(),
            },
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = record_ref_counters)]
struct CounterRow<'a> {
    kind: &'a str,
    last_number: i64,
}

/// The stored refs of `keys`, by key.
fn load(c: &mut AnyConnection, kind: RecordKind, keys: &[String]) -> SqlResult<HashMap<String, RecordRef>> {
    let mut found = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(INSERT_CHUNK) {
        let rows: Vec<RefRow> = record_refs::table
            .filter(record_refs::kind.eq(kind.as_str()))
            .filter(record_refs::record_key.eq_any(chunk))
            .select(RefRow::as_select())
            .load(c)?;
        for row in rows {
            let record = row.into_model()?;
            found.insert(record.key.clone(), record);
        }
    }
    Ok(found)
}

fn in_order(keys: &[String], found: &HashMap<String, RecordRef>) -> Option<Vec<RecordRef>> {
    keys.iter().map(|key| found.get(key).cloned()).collect()
}

/// The refs of `keys` if every one is numbered already (a read, no lock).
pub(crate) fn numbered(c: &mut AnyConnection, kind: RecordKind, keys: &[String]) -> SqlResult<Option<Vec<RecordRef>>> {
    keys.iter().try_for_each(|key| check_record_key(key))?;
    Ok(in_order(keys, &load(c, kind, keys)?))
}

pub(crate) fn record_refs(c: &mut AnyConnection, kind: RecordKind, keys: &[String]) -> SqlResult<Vec<RecordRef>> {
    keys.iter().try_for_each(|key| check_record_key(key))?;
    // Take the counter's row lock before looking: a key another writer is numbering is then
    // either committed (and seen) or not begun.
    let counter = CounterRow { kind: kind.as_str(), last_number: 0 };
    upsert!(
        c,
        record_ref_counters::table,
        &counter,
        record_ref_counters::kind,
        record_ref_counters::last_number.eq(record_ref_counters::last_number)
    )?;
    let mut found = load(c, kind, keys)?;
    let mut seen = HashSet::new();
    let missing: Vec<&String> = keys.iter().filter(|key| !found.contains_key(*key) && seen.insert(*key)).collect();
    if !missing.is_empty() {
        let count = to_i64(missing.len() as u64, "record count")?;
        diesel::update(record_ref_counters::table.find(kind.as_str()))
            .set(record_ref_counters::last_number.eq(record_ref_counters::last_number + count))
            .execute(c)?;
        let last: i64 =
            record_ref_counters::table.find(kind.as_str()).select(record_ref_counters::last_number).first(c)?;
        let first = last - count + 1;
        for (offset, key) in missing.into_iter().enumerate() {
            let row = RefRow {
                kind: kind.as_str().to_owned(),
                record_key: key.clone(),
                number: first + offset as i64,
                short: RecordRef::short_of(key),
                external_id: None,
                extra: None,
            };
            diesel::insert_into(record_refs::table).values(&row).execute(c)?;
            found.insert(key.clone(), row.into_model()?);
        }
    }
    in_order(keys, &found).ok_or_else(|| invalid("a record ref vanished while numbering").into())
}

pub(crate) fn find_record_refs(
    c: &mut AnyConnection,
    kind: RecordKind,
    lookup: RefLookup<'_>,
) -> SqlResult<Vec<RecordRef>> {
    let query = record_refs::table.filter(record_refs::kind.eq(kind.as_str())).into_boxed();
    let query = match lookup {
        RefLookup::Number(number) => match i64::try_from(number) {
            Ok(number) => query.filter(record_refs::number.eq(number)),
            Err(_) => return Ok(Vec::new()),
        },
        RefLookup::External(external) => query.filter(record_refs::external_id.eq(external.to_owned())),
        RefLookup::Short(short) => query.filter(record_refs::short.eq(short.to_owned())),
    };
    let rows: Vec<RefRow> = query.order(record_refs::number).limit(2).select(RefRow::as_select()).load(c)?;
    rows.into_iter().map(RefRow::into_model).collect()
}

pub(crate) fn set_external_id(
    c: &mut AnyConnection,
    kind: RecordKind,
    key: &str,
    external_id: Option<&str>,
) -> SqlResult<RecordRef> {
    let key = key.to_owned();
    if let Some(external) = external_id {
        check_external_id(external)?;
    }
    let mut record = record_refs(c, kind, std::slice::from_ref(&key))?.remove(0);
    if let Some(external) = external_id {
        let holders = record_refs::table
            .filter(record_refs::kind.eq(kind.as_str()))
            .filter(record_refs::external_id.eq(external))
            .filter(record_refs::record_key.ne(&key))
            .count()
            .get_result::<i64>(c)?;
        if holders > 0 {
            return Err(duplicate("record ref", format!("{} external id `{external}`", kind.as_str())).into());
        }
    }
    diesel::update(record_refs::table.find((kind.as_str(), &key)))
        .set(record_refs::external_id.eq(external_id))
        .execute(c)?;
    record.external_id = external_id.map(str::to_owned);
    Ok(record)
}

pub(crate) fn set_record_extra(
    c: &mut AnyConnection,
    kind: RecordKind,
    key: &str,
    extra: &std::collections::BTreeMap<String, String>,
) -> SqlResult<RecordRef> {
    let key = key.to_owned();
    let json = check_record_extra(extra)?;
    let mut record = record_refs(c, kind, std::slice::from_ref(&key))?.remove(0);
    diesel::update(record_refs::table.find((kind.as_str(), &key))).set(record_refs::extra.eq(Some(json))).execute(c)?;
    record.extra = extra.clone();
    Ok(record)
}

pub(crate) fn forget_record_refs(c: &mut AnyConnection, kind: RecordKind, keys: &[String]) -> SqlResult<()> {
    for chunk in keys.chunks(INSERT_CHUNK) {
        diesel::delete(
            record_refs::table
                .filter(record_refs::kind.eq(kind.as_str()))
                .filter(record_refs::record_key.eq_any(chunk)),
        )
        .execute(c)?;
    }
    Ok(())
}
