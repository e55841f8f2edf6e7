//! export (being written).
