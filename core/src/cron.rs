//! Cron schedule maths (being written).
