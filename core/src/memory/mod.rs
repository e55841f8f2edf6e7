//! In-memory implementations (being written).
