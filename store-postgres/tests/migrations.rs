//! Embedded migrations: idempotent start, newer schema refused, clean revert.
nexus_store_sql::migration_tests!(nexus_store_postgres::Postgres);
