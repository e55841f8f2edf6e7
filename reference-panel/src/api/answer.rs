//! [`Answer`]: what a handler returns. Its type parameter is the body's type, and the route
//! table names that same type for the OpenAPI document, so the document cannot describe a
//! body the handler does not send (the compiler checks each row).

use super::{ApiError, json_response};
use schemars::JsonSchema;
use serde::Serialize;
use warp::http::header::{CONTENT_TYPE, HeaderName};
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

/// A successful answer: status, body of type `T`, extra headers.
#[derive(Debug)]
pub struct Answer<T> {
    status: StatusCode,
    body: T,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// The body of a `204 No Content` answer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct NoContent;

/// A body that is not JSON: a document in its own media type (TOML, YAML).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Text {
    #[serde(skip)]
    media: &'static str,
    #[serde(skip)]
    text: String,
}

/// A body streamed from elsewhere (a file downloaded from a node), with its own headers.
#[derive(Debug)]
pub struct Download {
    response: Response,
}

/// A list page: `{"data":[…],"pagination":{"page","per_page","has_more"}}`.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "{T}Page")]
pub struct Listing<T> {
    /// The rows of this page.
    pub data: Vec<T>,
    /// Where this page is.
    pub pagination: Pagination,
}

/// Where a page is in its list.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Pagination {
    /// This page's number, from 1.
    pub page: u64,
    /// Rows per page asked for.
    pub per_page: u64,
    /// Whether another page follows.
    pub has_more: bool,
}

impl<T> Answer<T> {
    /// `body` with `status`.
    pub fn new(status: StatusCode, body: T) -> Self {
        Self { status, body, headers: Vec::new() }
    }

    /// The body (for callers that answer in another shape).
    pub(crate) fn into_body(self) -> T {
        self.body
    }

    /// Adds a header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl Answer<NoContent> {
    /// `204 No Content`.
    pub fn no_content() -> Self {
        Self::new(StatusCode::NO_CONTENT, NoContent)
    }
}

impl Answer<Text> {
    /// `200` with `text` as `media`.
    pub fn text(media: &'static str, text: String) -> Self {
        Self::new(StatusCode::OK, Text { media, text })
    }
}

impl<T> Answer<T> {
    fn finish(self, mut response: Response) -> Response {
        *response.status_mut() = self.status;
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

impl<T: Serialize> Answer<T> {
    /// The response, with the body as JSON.
    pub fn into_json(self) -> Response {
        let response = json_response(self.status, &self.body);
        if response.status() != self.status {
            // The body could not be serialized: the error answer stands, without the
            // success's headers (a session cookie, say).
            return response;
        }
        self.finish(response)
    }
}

impl Answer<Text> {
    /// The response, with the text in its media type.
    pub fn into_text(mut self) -> Response {
        let mut response = Response::new(std::mem::take(&mut self.body.text).into());
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(self.body.media));
        self.finish(response)
    }
}

impl Answer<Download> {
    /// `200` streaming `response`'s body with its headers.
    pub fn download(response: Response) -> Self {
        Self::new(StatusCode::OK, Download { response })
    }

    /// The response.
    pub fn into_download(self) -> Response {
        let Self { status, body, headers } = self;
        let mut response = body.response;
        *response.status_mut() = status;
        for (name, value) in headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

impl Answer<NoContent> {
    /// The response, without a body.
    pub fn into_empty(self) -> Response {
        self.finish(Response::new(Vec::new().into()))
    }
}

/// `200` with `body`.
pub fn ok<T>(body: T) -> Result<Answer<T>, ApiError> {
    Ok(Answer::new(StatusCode::OK, body))
}

/// `201` with `body`.
pub fn created<T>(body: T) -> Result<Answer<T>, ApiError> {
    Ok(Answer::new(StatusCode::CREATED, body))
}

/// `202` with `body`.
pub fn accepted<T>(body: T) -> Result<Answer<T>, ApiError> {
    Ok(Answer::new(StatusCode::ACCEPTED, body))
}

/// `204`.
pub fn no_content() -> Result<Answer<NoContent>, ApiError> {
    Ok(Answer::no_content())
}

/// A page of `rows`, which holds up to one row more than `per_page` (how the store tells
/// that more follow).
pub fn listing<T>(mut rows: Vec<T>, page: u64, per_page: u64) -> Result<Answer<Listing<T>>, ApiError> {
    let limit = usize::try_from(per_page).unwrap_or(usize::MAX);
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    ok(Listing { data: rows, pagination: Pagination { page, per_page, has_more } })
}
