//! The parts of a request every route reads the same way, each failing with a typed
//! [`ApiError`] (so [`recover`](super::recover) ranks it above "wrong route"): the server id
//! in the path, query strings, and bodies.
//!
//! | input | refused with |
//! |---|---|
//! | `/api/servers/<not a UUID>/...` | `400 invalid_id`, naming the segment |
//! | a query parameter that does not parse, or is unknown | `400 bad_request`, naming it |
//! | a `content-type` other than `application/json` on a JSON route (none is fine) | `415 unsupported_media_type` |
//! | a body over the limit: declared (`content-length`, refused before reading) or counted while reading (chunked) | `413 payload_too_large` |
//! | a body that is not the expected JSON | `400 bad_request` |

use super::ApiError;
use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt as _};
use nexus_core::ids::ServerId;
use nexus_core::transport::validate::printable;
use serde::de::DeserializeOwned;
use warp::Filter;
use warp::filters::BoxedFilter;

/// Bytes reserved up front for a body, whatever length it declares (a client may declare
/// the limit and send nothing).
const INITIAL_BODY_CAPACITY: usize = 64 * 1024;

/// Matches `/api/servers/:id` (more segments may follow) and extracts the id. A segment that
/// is not a UUID is `400 invalid_id`.
pub(super) fn server_id() -> BoxedFilter<(ServerId,)> {
    warp::path!("api" / "servers" / ..)
        .and(warp::path::param::<String>())
        .and_then(|segment: String| async move {
            segment.parse::<ServerId>().map_err(|_| {
                warp::reject::custom(
                    ApiError::new(400, "invalid_id", format!("`{}` is not a server id (a UUID)", printable(&segment)))
                        .with_field("id"),
                )
            })
        })
        .boxed()
}

/// The query string as `T` (absent is empty).
pub(super) fn query<T: DeserializeOwned + Send + 'static>() -> BoxedFilter<(T,)> {
    warp::query::raw()
        .or(warp::any().map(String::new))
        .unify()
        .and_then(|raw: String| async move {
            serde_urlencoded::from_str::<T>(&raw).map_err(|e| {
                warp::reject::custom(ApiError::bad_request(format!(
                    "invalid query string: {}",
                    printable(&e.to_string())
                )))
            })
        })
        .boxed()
}

/// A JSON body as `T`, at most `limit` bytes, chunked or not.
pub(super) fn json_body<T: DeserializeOwned + Send + 'static>(limit: u64) -> BoxedFilter<(T,)> {
    json_content_type()
        .and(body(limit))
        .and_then(|bytes: Bytes| async move {
            serde_json::from_slice::<T>(&bytes)
                .map_err(|e| warp::reject::custom(ApiError::bad_request(format!("invalid JSON body: {e}"))))
        })
        .boxed()
}

/// The whole body, at most `limit` bytes: refused from its `content-length` before anything
/// is read, or once a chunked body passes the limit.
pub(super) fn body(limit: u64) -> BoxedFilter<(Bytes,)> {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |length, stream| read_bounded(length, stream, limit))
        .boxed()
}

/// Passes requests without a `content-type` or with `application/json` (parameters allowed);
/// others are `415 unsupported_media_type`.
pub(super) fn json_content_type() -> BoxedFilter<()> {
    warp::header::optional::<String>("content-type")
        .and_then(|content_type: Option<String>| async move {
            match content_type {
                Some(value) if !is_json(&value) => Err(warp::reject::custom(ApiError::new(
                    415,
                    "unsupported_media_type",
                    format!("expected application/json, got `{}`", printable(&value)),
                ))),
                _ => Ok(()),
            }
        })
        .untuple_one()
        .boxed()
}

fn is_json(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

async fn read_bounded<S, B>(length: Option<u64>, mut stream: S, limit: u64) -> Result<Bytes, warp::Rejection>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let too_large = || {
        warp::reject::custom(ApiError::new(413, "payload_too_large", format!("the body is larger than {limit} bytes")))
    };
    if length.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let capacity = length.and_then(|l| usize::try_from(l).ok()).unwrap_or(0).min(INITIAL_BODY_CAPACITY);
    let mut body = BytesMut::with_capacity(capacity);
    while let Some(chunk) = stream.next().await {
        let mut chunk =
            chunk.map_err(|e| warp::reject::custom(ApiError::bad_request(format!("reading the body: {e}"))))?;
        if u64::try_from(body.len() + chunk.remaining()).map_or(true, |total| total > limit) {
            return Err(too_large());
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            body.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/jsonx"));
        assert!(!is_json(""));
    }

    #[tokio::test]
    async fn bodies_are_bounded_declared_or_not() {
        let chunks = |parts: &[&'static [u8]]| {
            futures::stream::iter(parts.iter().map(|p| Ok::<_, warp::Error>(Bytes::from_static(p))).collect::<Vec<_>>())
        };
        let body = read_bounded(None, chunks(&[b"ab", b"cd"]), 4).await.unwrap();
        assert_eq!(&body[..], b"abcd");
        assert!(read_bounded(None, chunks(&[b"ab", b"cde"]), 4).await.is_err(), "chunked past the limit");
        assert!(read_bounded(Some(5), chunks(&[]), 4).await.is_err(), "declared past the limit");
    }
}
