//! The web UI: pages rendered on the server with tera, a little hand-written JavaScript,
//! every asset served by the panel itself (no CDN, no build step).
//!
//! Pages only decide what to show; everything a page does goes through `/api/v1` from the
//! browser (the session cookie and the page's CSRF token), so the UI is held to exactly the
//! API's permission checks. What a page renders depends on the same control-plane answers
//! the API gives (the caller's
//! [`ServerAccess`](nexus_control::subusers::ServerAccess)): a button the caller may not use is left
//! out, not merely disabled.
//!
//! | page | who |
//! |---|---|
//! | `/login` | anyone (a password, then a TOTP code when the account has one) |
//! | `/` | the servers the user may see, live state and resource bars |
//! | `/server/{id}` | console, power, live charts (needs access to the server) |
//! | `/server/{id}/files` | the file manager (`file.read`) |
//! | `/server/{id}/startup` | startup variables and their rules (`startup.read`) |
//! | `/account` | password, two-factor, API keys |
//! | `/admin` | overview: nodes, servers by state (admins) |
//! | `/admin/eggs` | import and export eggs (admins) |
//! | `/admin/servers/new` | create a server (admins) |
//!
//! Every page is sent with a strict Content-Security-Policy (scripts and styles from the panel
//! only, no inline script), `X-Frame-Options: DENY` and `no-store`. Templates escape every
//! value (tera's autoescape); scripts write tenant text with `textContent`, never as HTML.

mod assets;
mod pages;

use crate::api::PanelState;
use std::sync::Arc;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

/// The web UI's routes: its pages and `/assets/*`.
pub fn filter(state: Arc<PanelState>) -> BoxedFilter<(Response,)> {
    assets::filter().or(pages::filter(state)).unify().boxed()
}
