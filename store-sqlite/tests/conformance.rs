//! The whole store conformance suite of `nexus-core`, unchanged, one test per case, each on
//! its own throwaway database.
nexus_conformance::store_conformance_tests!(nexus_store_sql::testing::fresh_store::<nexus_store_sqlite::Sqlite>);
