//! config_files (being written).
