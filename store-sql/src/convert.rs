//! Conversions between the domain model and column values.
//!
//! Ids are hyphenated lower-case UUID text (which sorts like the UUID bytes); timestamps are
//! UTC `NaiveDateTime`s cut to microseconds, the finest precision every backend keeps (so a
//! value reads back as it was written everywhere); unsigned numbers are checked into `i64`;
//! enums are their serde names; nested parts are JSON text.

use crate::error::{SqlError, SqlResult};
use chrono::{DateTime, NaiveDateTime, Timelike, Utc};
use nexus_core::store::Page;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::net::IpAddr;
use std::str::FromStr;
use uuid::Uuid;

/// An id column value back to its typed id.
pub(crate) fn parse_id<T: From<Uuid>>(value: &str, what: &'static str) -> SqlResult<T> {
    Uuid::parse_str(value).map(T::from).map_err(|err| SqlError::corrupt(what, format!("`{value}`: {err}")))
}

/// A timestamp as stored: UTC, microseconds.
pub(crate) fn to_db_time(at: DateTime<Utc>) -> NaiveDateTime {
    let naive = at.naive_utc();
    naive.with_nanosecond(naive.nanosecond() / 1_000 * 1_000).unwrap_or(naive)
}

/// A stored timestamp back to UTC.
pub(crate) fn from_db_time(at: NaiveDateTime) -> DateTime<Utc> {
    at.and_utc()
}

/// Optional [`to_db_time`].
pub(crate) fn to_db_time_opt(at: Option<DateTime<Utc>>) -> Option<NaiveDateTime> {
    at.map(to_db_time)
}

/// Optional [`from_db_time`].
pub(crate) fn from_db_time_opt(at: Option<NaiveDateTime>) -> Option<DateTime<Utc>> {
    at.map(from_db_time)
}

/// An unsigned number into a `BIGINT` column.
pub(crate) fn to_i64(value: u64, what: &'static str) -> SqlResult<i64> {
    i64::try_from(value).map_err(|_| SqlError::OutOfRange { what, value: value.to_string() })
}

/// A `BIGINT` column back to an unsigned number.
pub(crate) fn to_u64(value: i64, what: &'static str) -> SqlResult<u64> {
    u64::try_from(value).map_err(|_| SqlError::corrupt(what, format!("negative value {value}")))
}

/// A narrower unsigned number (port, weight, percent) back from its column.
pub(crate) fn narrow<T: TryFrom<i64>>(value: i64, what: &'static str) -> SqlResult<T> {
    T::try_from(value).map_err(|_| SqlError::corrupt(what, format!("{value} is out of range")))
}

/// A unit-like enum's serde name (`running`, `PTDL_v2`).
pub(crate) fn enum_name<T: Serialize>(value: &T, what: &'static str) -> SqlResult<String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => Ok(name),
        Ok(other) => Err(SqlError::OutOfRange { what, value: other.to_string() }),
        Err(err) => Err(SqlError::OutOfRange { what, value: err.to_string() }),
    }
}

/// An enum back from its serde name.
pub(crate) fn parse_enum<T: DeserializeOwned>(name: &str, what: &'static str) -> SqlResult<T> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|err| SqlError::corrupt(what, format!("`{name}`: {err}")))
}

/// A value as JSON text.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T, what: &'static str) -> SqlResult<String> {
    serde_json::to_string(value).map_err(|err| SqlError::OutOfRange { what, value: err.to_string() })
}

/// A value back from JSON text.
pub(crate) fn from_json<T: DeserializeOwned>(text: &str, what: &'static str) -> SqlResult<T> {
    serde_json::from_str(text).map_err(|err| SqlError::corrupt(what, err))
}

/// An address back from its column.
pub(crate) fn parse_ip(text: &str) -> SqlResult<IpAddr> {
    IpAddr::from_str(text).map_err(|err| SqlError::corrupt("allocation ip", format!("`{text}`: {err}")))
}

/// A text key that sorts like [`IpAddr`]'s `Ord`: every IPv4 address before every IPv6 one,
/// each numerically (`10.0.0.9` before `10.0.0.10`).
pub(crate) fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("4{:08x}", u32::from(v4)),
        IpAddr::V6(v6) => format!("6{:032x}", u128::from(v6)),
    }
}

/// `OFFSET`, `LIMIT` of a page (a `u64::MAX` limit means "all").
pub(crate) fn page(page: Page) -> (i64, i64) {
    let clamp = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    (clamp(page.offset), clamp(page.limit))
}

/// A user name or e-mail as compared for uniqueness and login: lower-cased.
pub(crate) fn login_key(value: &str) -> String {
    value.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn ip_keys_sort_like_addresses() {
        let mut ips = vec![
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 10)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)),
            IpAddr::V4(Ipv4Addr::new(255, 0, 0, 1)),
            IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
        ];
        let mut by_key = ips.clone();
        by_key.sort_by_key(|ip| ip_key(*ip));
        ips.sort();
        assert_eq!(by_key, ips);
    }

    #[test]
    fn times_keep_microseconds() {
        let at = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap_or_default();
        let stored = from_db_time(to_db_time(at));
        assert_eq!(stored.timestamp_subsec_nanos(), 123_456_000);
    }

    #[test]
    fn enums_by_serde_name() {
        let name = enum_name(&nexus_core::lifecycle::ServerState::InstallFailed, "state").ok();
        assert_eq!(name.as_deref(), Some("install_failed"));
        let back: nexus_core::lifecycle::ServerState =
            parse_enum("install_failed", "state").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, nexus_core::lifecycle::ServerState::InstallFailed);
    }
}
