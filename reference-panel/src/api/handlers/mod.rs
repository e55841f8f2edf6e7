//! The handlers of [`routes`](super::routes), one file per area, and the JSON views they
//! answer with (never a password hash or a token hash).

pub(super) mod account;
pub(super) mod backups;
pub(super) mod files;
pub(super) mod infra;
pub(super) mod schedules;
pub(super) mod servers;
pub(super) mod subusers;
pub(super) mod templates;
pub(super) mod views;

/// A page of a list the store returns whole (small tables: locations, nodes, eggs).
fn page_of<T>(rows: Vec<T>, page: nexus_core::store::Page) -> Vec<T> {
    let offset = usize::try_from(page.offset).unwrap_or(usize::MAX);
    let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
    rows.into_iter().skip(offset).take(limit).collect()
}
