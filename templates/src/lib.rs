//! # nexus-templates
//!
//! Layered server templates kept in object storage.
