//! The JSON shapes of Pterodactyl's APIs: objects, lists with pagination, dates, and the
//! query parameters lists take.

use super::super::router::Call;
use super::super::{ApiError, PanelState};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use warp::http::StatusCode;
use warp::reply::Response;

/// Rows per page when none is asked for (Pterodactyl's).
pub(super) const DEFAULT_PER_PAGE: usize = 50;
/// Most rows per page.
pub(super) const MAX_PER_PAGE: usize = 100;

/// `{"object": object, "attributes": attributes}`.
pub(super) fn item(object: &str, attributes: Value) -> Value {
    json!({ "object": object, "attributes": attributes })
}

/// A date as Pterodactyl writes it (ISO 8601 with the offset: `2026-12-04T12:00:00+00:00`).
pub(super) fn date(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// `value` as JSON with `status`.
pub(super) fn answer(status: StatusCode, value: &Value) -> Result<Response, ApiError> {
    Ok(crate::api::json_response(status, value))
}

/// `204 No Content`.
pub(super) fn no_content() -> Result<Response, ApiError> {
    let mut response = Response::new(Vec::new().into());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

/// The page a list request asks for: `?page=` (from 1) and `?per_page=` (at most
/// [`MAX_PER_PAGE`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Paging {
    page: usize,
    per_page: usize,
}

/// Page links are absolute, on the panel's public URL.
#[derive(Clone, Debug)]
pub(super) struct Base<'a>(&'a str, String);

/// `text` for a query string.
fn encode(text: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(text, UNRESERVED).to_string()
}

impl Paging {
    /// Read from the call's query.
    pub(super) fn of<'a>(call: &Call, state: &'a PanelState) -> Result<(Self, Base<'a>), ApiError> {
        Self::with_default(call, state, DEFAULT_PER_PAGE)
    }

    /// [`Paging::of`] with another page length when none is asked for.
    pub(super) fn with_default<'a>(
        call: &Call,
        state: &'a PanelState,
        default: usize,
    ) -> Result<(Self, Base<'a>), ApiError> {
        // As Laravel's paginator: a page or size that is not a positive number is the default.
        let number = |name: &str, default: usize| {
            call.query.get(name).and_then(|v| v.trim().parse::<usize>().ok()).filter(|n| *n >= 1).unwrap_or(default)
        };
        let paging = Self { page: number("page", 1), per_page: number("per_page", default).min(MAX_PER_PAGE) };
        // Links keep the rest of the query (filters, `type`, `include`, `per_page`).
        let mut kept: Vec<(&String, &String)> = call.query.iter().filter(|(k, _)| k.as_str() != "page").collect();
        kept.sort();
        let query = kept.into_iter().map(|(k, v)| format!("&{}={}", encode(k), encode(v))).collect::<String>();
        Ok((paging, Base(&state.public_url, query)))
    }

    /// This page of `rows` as a Pterodactyl list of `object`s, each row turned into its
    /// attributes by `attributes` (only the rows shown are turned).
    pub(super) async fn list<T, F, Fut>(
        (paging, base): (Self, Base<'_>),
        rows: Vec<T>,
        object: &str,
        path: &str,
        attributes: F,
    ) -> Result<Value, ApiError>
    where
        F: Fn(Vec<T>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<Value>, ApiError>>,
    {
        let total = rows.len();
        let skip = (paging.page - 1).saturating_mul(paging.per_page);
        let shown: Vec<T> = rows.into_iter().skip(skip).take(paging.per_page).collect();
        let data: Vec<Value> = attributes(shown).await?.into_iter().map(|a| item(object, a)).collect();
        let total_pages = total.div_ceil(paging.per_page).max(1);
        let mut links = serde_json::Map::new();
        if paging.page > 1 {
            links.insert("previous".into(), json!(format!("{}{path}?page={}{}", base.0, paging.page - 1, base.1)));
        }
        if paging.page < total_pages {
            links.insert("next".into(), json!(format!("{}{path}?page={}{}", base.0, paging.page + 1, base.1)));
        }
        Ok(json!({
            "object": "list",
            "data": data,
            "meta": { "pagination": {
                "total": total,
                "count": data.len(),
                "per_page": paging.per_page,
                "current_page": paging.page,
                "total_pages": total_pages,
                "links": links,
            }},
        }))
    }
}

/// `?filter[name]=` of the call.
pub(super) fn filter<'a>(call: &'a Call, name: &str) -> Option<&'a str> {
    call.query.get(&format!("filter[{name}]")).map(String::as_str).filter(|v| !v.is_empty())
}

/// Whether `?include=` names `relation`.
pub(super) fn includes(call: &Call, relation: &str) -> bool {
    call.query.get("include").is_some_and(|list| list.split(',').any(|r| r.trim() == relation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_atom_strings_in_utc() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-04T12:00:00.123Z").unwrap().with_timezone(&Utc);
        assert_eq!(date(at), "2026-12-04T12:00:00+00:00");
    }

    #[test]
    fn objects_are_enveloped() {
        assert_eq!(item("user", json!({ "id": 1 })), json!({ "object": "user", "attributes": { "id": 1 } }));
    }
}
