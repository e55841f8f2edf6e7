//! The tracing store passes the store conformance suite, counts its calls, and the
//! `custom_store` example runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::Utc;
use nexus_core::ids::UserId;
use nexus_core::memory::MemoryStore;
use nexus_core::model::{Role, User};
use nexus_core::store::{Store, UserRepo};
use nexus_examples::tracing_store::TracingStore;
use std::process::Command;

mod conformance {
    nexus_conformance::store_conformance_tests!(|| async {
        Some(nexus_examples::tracing_store::TracingStore::new(nexus_core::memory::MemoryStore::new()))
    });
}

fn user(username: &str) -> User {
    User {
        id: UserId::new(),
        username: username.to_owned(),
        email: format!("{username}@example.com"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        role: Role::User,
        created_at: Utc::now(),
    }
}

#[tokio::test]
async fn counts_calls_per_method() {
    let store = TracingStore::new(MemoryStore::new());
    assert!(store.calls().is_empty());

    let alice = user("alice");
    store.create_user(&alice).await.unwrap();
    assert_eq!(store.get_user(alice.id).await.unwrap(), alice);

    let calls = store.calls();
    assert_eq!(calls.get("create_user"), Some(&1));
    assert_eq!(calls.get("get_user"), Some(&1));
    assert_eq!(calls.len(), 2, "{calls:?}");

    // Failed calls count too.
    store.get_user(UserId::new()).await.unwrap_err();
    assert_eq!(store.calls().get("get_user"), Some(&2));

    store.reset_calls();
    assert!(store.calls().is_empty());
}

#[tokio::test]
async fn counts_calls_made_through_transactions() {
    let store = TracingStore::new(MemoryStore::new());
    let bob = user("bob");

    let transaction = store.begin().await.unwrap();
    transaction.create_user(&bob).await.unwrap();
    transaction.commit().await.unwrap();

    let transaction = store.begin().await.unwrap();
    transaction.get_user(bob.id).await.unwrap();
    transaction.rollback().await.unwrap();

    let calls = store.calls();
    assert_eq!(calls.get("begin"), Some(&2));
    assert_eq!(calls.get("create_user"), Some(&1));
    assert_eq!(calls.get("get_user"), Some(&1));
    assert_eq!(calls.get("commit"), Some(&1));
    assert_eq!(calls.get("rollback"), Some(&1));
    // The write went to the inner store.
    assert_eq!(store.inner().get_user(bob.id).await.unwrap(), bob);
    assert_eq!(store.backend(), "memory");
}

#[test]
fn custom_store_binary_runs() {
    let output = Command::new(env!("CARGO_BIN_EXE_custom_store")).output().expect("runs custom_store");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    assert!(stdout.lines().any(|line| line.contains("calls:")), "no `calls:` line in:\n{stdout}");
    for method in
        ["create_user", "create_location", "create_node", "create_allocations", "create_egg", "claim_free_allocation"]
    {
        assert!(stdout.contains(&format!("{method}: 1")), "no count for {method} in:\n{stdout}");
    }
}
