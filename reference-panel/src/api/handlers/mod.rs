//! The handlers of [`routes`](super::routes), one file per area, and the JSON views they
//! answer with (never a password hash or a token hash).

pub(super) mod account;
pub(super) mod infra;
pub(super) mod schedules;
pub(super) mod servers;
pub(super) mod subusers;
mod views;

use super::{ApiError, json_response};
use serde::Serialize;
use warp::http::StatusCode;
use warp::reply::Response;

/// A list page: `{"data":[…],"pagination":{"page","per_page","has_more"}}`. `rows` holds up
/// to one more row than `per_page` (how the store tells that more follow).
#[derive(Serialize)]
struct Listing<T> {
    data: Vec<T>,
    pagination: Pagination,
}

#[derive(Serialize)]
struct Pagination {
    page: u64,
    per_page: u64,
    has_more: bool,
}

fn listing<T: Serialize>(mut rows: Vec<T>, page: u64, per_page: u64) -> Result<Response, ApiError> {
    let limit = usize::try_from(per_page).unwrap_or(usize::MAX);
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    Ok(json_response(StatusCode::OK, &Listing { data: rows, pagination: Pagination { page, per_page, has_more } }))
}

/// A page of a list the store returns whole (small tables: locations, nodes, eggs).
fn page_of<T>(rows: Vec<T>, page: nexus_core::store::Page) -> Vec<T> {
    let offset = usize::try_from(page.offset).unwrap_or(usize::MAX);
    let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
    rows.into_iter().skip(offset).take(limit).collect()
}

fn ok<T: Serialize>(value: &T) -> Result<Response, ApiError> {
    Ok(json_response(StatusCode::OK, value))
}

fn created<T: Serialize>(value: &T) -> Result<Response, ApiError> {
    Ok(json_response(StatusCode::CREATED, value))
}

fn no_content() -> Result<Response, ApiError> {
    let mut response = Response::new(Vec::new().into());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}
