//! startup (being written).
