//! stop (being written).
