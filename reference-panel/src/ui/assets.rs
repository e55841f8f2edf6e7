//! `/assets/*`: the UI's stylesheet and scripts, compiled into the binary.

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

/// Every asset: name, media type, content.
pub(super) const ASSETS: &[(&str, &str, &str)] = &[
    ("app.css", "text/css; charset=utf-8", include_str!("assets/app.css")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("assets/app.js")),
    ("server.js", "text/javascript; charset=utf-8", include_str!("assets/server.js")),
    ("files.js", "text/javascript; charset=utf-8", include_str!("assets/files.js")),
    ("manage.js", "text/javascript; charset=utf-8", include_str!("assets/manage.js")),
    ("admin.js", "text/javascript; charset=utf-8", include_str!("assets/admin.js")),
];

pub(super) fn filter() -> BoxedFilter<(Response,)> {
    warp::path("assets")
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::get())
        .map(|name: String| {
            let Some((_, media, content)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
                let mut response = Response::new("no such asset".into());
                *response.status_mut() = StatusCode::NOT_FOUND;
                return response;
            };
            let mut response = Response::new((*content).into());
            let headers = response.headers_mut();
            headers.insert("content-type", HeaderValue::from_static(media));
            // Pages name assets with the panel's version, so a new release is fetched anew.
            headers.insert("cache-control", HeaderValue::from_static("public, max-age=86400"));
            headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
            response
        })
        .boxed()
}
