//! `cargo bench -p nexus-store-mysql`: listing 50 servers of a user among 100,000, and
//! inserting servers (see `nexus_store_sql::testing::bench`).

fn main() {
    nexus_store_sql::testing::bench_main::<nexus_store_mysql::Mysql>();
}
