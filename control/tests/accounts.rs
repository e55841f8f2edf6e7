//! Accounts: argon2id passwords, login throttling per account and per address, API keys shown
//! once and stored hashed, on the in-memory store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::Utc;
use nexus_control::accounts::{AuthError, MAX_FAILURES, NewUser};
use nexus_control::{ControlConfig, ControlError, ControlPlane};
use nexus_core::memory::{InProcessTransport, MemoryStore};
use nexus_core::model::{ApiKeyScope, Role};
use nexus_core::store::{ApiKeyRepo, Store, UserRepo};
use std::net::IpAddr;
use std::sync::Arc;

/// Where the tests' API keys are sent from.
const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10));

async fn control() -> (ControlPlane, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let (transport, _inbox) = InProcessTransport::new(4);
    let control = ControlPlane::new(store.clone() as Arc<dyn Store>, Arc::new(transport), ControlConfig::default())
        .await
        .unwrap();
    (control, store)
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([198, 51, 100, last])
}

fn refused(result: Result<impl std::fmt::Debug, ControlError>) -> AuthError {
    match result {
        Err(ControlError::Auth(e)) => e,
        other => panic!("expected an auth refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn accounts_are_checked_and_passwords_never_stored() {
    let (control, store) = control().await;
    let user = control
        .create_user(NewUser::new("alice", "alice@example.com", "correct horse battery", Role::User))
        .await
        .unwrap();
    let stored = store.get_user(user.id).await.unwrap();
    assert!(stored.password_hash.starts_with("$argon2id$"), "{}", stored.password_hash);
    assert!(!stored.password_hash.contains("correct horse"));

    for (new, field) in [
        (NewUser::new("al", "a@example.com", "long enough pw", Role::User), "username"),
        (NewUser::new("bob smith", "b@example.com", "long enough pw", Role::User), "username"),
        (NewUser::new("bob", "not-an-address", "long enough pw", Role::User), "email"),
        (NewUser::new("bob", "bob@example.com", "short", Role::User), "password"),
        (NewUser::new("bob", "bob@example.com", "x".repeat(2000), Role::User), "password"),
    ] {
        match control.create_user(new).await {
            Err(ControlError::Invalid { field: got, .. }) => assert_eq!(got, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let duplicate =
        control.create_user(NewUser::new("alice2", "ALICE@example.com", "another password", Role::User)).await;
    assert_eq!(duplicate.unwrap_err().status_code(), 409, "e-mail addresses are unique, whatever their case");
}

#[tokio::test]
async fn logins_by_name_or_address_and_one_answer_for_every_failure() {
    let (control, _) = control().await;
    let user = control
        .create_user(NewUser::new("alice", "alice@example.com", "correct horse battery", Role::User))
        .await
        .unwrap();
    assert_eq!(control.authenticate("alice", "correct horse battery", ip(1)).await.unwrap().id, user.id);
    assert_eq!(control.authenticate("Alice@Example.com", "correct horse battery", ip(1)).await.unwrap().id, user.id);
    assert_eq!(refused(control.authenticate("alice", "wrong password!", ip(1)).await), AuthError::InvalidCredentials);
    assert_eq!(refused(control.authenticate("nobody", "wrong password!", ip(1)).await), AuthError::InvalidCredentials);
}

#[tokio::test]
async fn failed_logins_are_throttled_per_account_and_per_address() {
    let (control, _) = control().await;
    control.create_user(NewUser::new("alice", "alice@example.com", "correct horse battery", Role::User)).await.unwrap();
    control.create_user(NewUser::new("carol", "carol@example.com", "another good one", Role::User)).await.unwrap();

    // Guessing alice's password from one address: that address is locked out of alice (even
    // with the right password), while alice herself, elsewhere, is not.
    for _ in 0..MAX_FAILURES {
        assert_eq!(refused(control.authenticate("alice", "guess", ip(10)).await), AuthError::InvalidCredentials);
    }
    let locked = refused(control.authenticate(" ALICE ", "correct horse battery", ip(10)).await);
    assert!(matches!(locked, AuthError::Throttled { .. }), "case and blanks do not reset it: {locked:?}");
    assert_eq!(control.authenticate("alice", "correct horse battery", ip(99)).await.unwrap().username, "alice");
    assert_eq!(control.authenticate("carol", "another good one", ip(99)).await.unwrap().username, "carol");

    // Many guesses at once: each is counted before its password is checked.
    let attempts = (0..20).map(|_| control.authenticate("carol", "guess", ip(50)));
    let results = futures::future::join_all(attempts).await;
    let wrong = results.iter().filter(|r| matches!(r, Err(ControlError::Auth(AuthError::InvalidCredentials)))).count();
    assert_eq!(wrong, MAX_FAILURES as usize, "only {MAX_FAILURES} guesses are checked");

    // One address guessing many accounts: the address locks, for every account.
    for i in 0..MAX_FAILURES {
        refused(control.authenticate(&format!("user{i}"), "guess", ip(200)).await);
    }
    let from_there = refused(control.authenticate("carol", "another good one", ip(200)).await);
    assert!(matches!(from_there, AuthError::Throttled { .. }), "{from_there:?}");
    let err = control.authenticate("carol", "another good one", ip(200)).await.unwrap_err();
    assert_eq!(err.status_code(), 429);
}

#[tokio::test]
async fn api_keys_are_shown_once_stored_hashed_and_scoped() {
    let (control, store) = control().await;
    let user = control
        .create_user(NewUser::new("alice", "alice@example.com", "correct horse battery", Role::User))
        .await
        .unwrap();
    let admin =
        control.create_user(NewUser::new("root", "root@example.com", "admin password!", Role::Admin)).await.unwrap();

    let (record, key) = control.create_api_key(user.id, ApiKeyScope::Client, "billing", None).await.unwrap();
    assert!(key.starts_with("ptlc_") && key.len() == 53, "{key}");
    assert!(key[5..].bytes().all(|b| b.is_ascii_alphanumeric()));
    let stored = store.list_api_keys(user.id).await.unwrap();
    assert_eq!(stored, vec![record.clone()]);
    assert!(!stored[0].secret_hash.contains(&key[21..]), "the secret is not stored");
    let (found, owner) = control.authenticate_key(&key, HERE).await.unwrap();
    assert_eq!((found.id, owner.id), (record.id, user.id));
    assert!(store.list_api_keys(user.id).await.unwrap()[0].last_used_at.is_some(), "use recorded");

    // Tampered, truncated, the other kind's prefix, garbage: one answer.
    let mut tampered = key.clone();
    tampered.replace_range(50..51, if &key[50..51] == "a" { "b" } else { "a" });
    for bad in [tampered, key[..52].to_owned(), key.replacen("ptlc_", "ptla_", 1), "ptlc_".into(), "Bearer x".into()] {
        assert_eq!(refused(control.authenticate_key(&bad, HERE).await), AuthError::InvalidCredentials, "{bad}");
    }

    // Application keys are for admins; an expired key says so.
    assert_eq!(
        control.create_api_key(user.id, ApiKeyScope::Application, "x", None).await.unwrap_err().status_code(),
        403
    );
    let (_, admin_key) = control.create_api_key(admin.id, ApiKeyScope::Application, "ops", None).await.unwrap();
    assert!(admin_key.starts_with("ptla_"));
    assert_eq!(control.authenticate_key(&admin_key, HERE).await.unwrap().1.id, admin.id);
    let past = Utc::now() - chrono::Duration::seconds(1);
    let (_, expired) = control.create_api_key(user.id, ApiKeyScope::Client, "old", Some(past)).await.unwrap();
    assert_eq!(refused(control.authenticate_key(&expired, HERE).await), AuthError::Expired);
}

/// A verified key is cached, yet deleting it through the control plane ends it at once; a
/// key of another account cannot be deleted.
#[tokio::test]
async fn a_deleted_key_stops_working_at_once_despite_the_cache() {
    let (control, _store) = control().await;
    let alice =
        control.create_user(NewUser::new("alice", "alice@example.com", "alice password", Role::User)).await.unwrap();
    let bob = control.create_user(NewUser::new("bob", "bob@example.com", "bob password", Role::User)).await.unwrap();
    let (record, key) = control.create_api_key(alice.id, ApiKeyScope::Client, "", None).await.unwrap();
    control.authenticate_key(&key, HERE).await.unwrap();
    control.authenticate_key(&key, HERE).await.unwrap();
    assert_eq!(control.delete_api_key(bob.id, record.id).await.unwrap_err().status_code(), 404);
    control.authenticate_key(&key, HERE).await.unwrap();
    control.delete_api_key(alice.id, record.id).await.unwrap();
    assert!(matches!(
        control.authenticate_key(&key, HERE).await,
        Err(ControlError::Auth(AuthError::InvalidCredentials))
    ));
}

/// A key limited to addresses works from them only (every time: the cache does not skip the
/// check), refuses an impossible list at creation, and stores the list canonically.
#[tokio::test]
async fn a_key_limited_to_addresses_is_refused_from_others() {
    let (control, store) = control().await;
    let user =
        control.create_user(NewUser::new("alice", "alice@example.com", "alice password", Role::User)).await.unwrap();
    let allowed = vec!["192.0.2.0/28".to_owned(), "2001:DB8::1".to_owned()];
    let (record, key) = control.create_limited_api_key(user.id, ApiKeyScope::Client, "", None, &allowed).await.unwrap();
    assert_eq!(store.list_api_keys(user.id).await.unwrap()[0].allowed_ips, ["192.0.2.0/28", "2001:db8::1"]);
    assert_eq!(record.allowed_ips, ["192.0.2.0/28", "2001:db8::1"]);
    control.authenticate_key(&key, HERE).await.unwrap();
    control.authenticate_key(&key, "2001:db8::1".parse().unwrap()).await.unwrap();
    for elsewhere in ["192.0.2.16", "198.51.100.1", "2001:db8::2"] {
        let err = control.authenticate_key(&key, elsewhere.parse().unwrap()).await.unwrap_err();
        assert!(matches!(err, ControlError::Auth(AuthError::AddressNotAllowed)), "{elsewhere}: {err:?}");
        assert_eq!(err.status_code(), 403);
    }
    for bad in [vec!["192.0.2.1/28".to_owned()], vec!["example.com".to_owned()], vec!["10.0.0.1".to_owned(); 51]] {
        let err = control.create_limited_api_key(user.id, ApiKeyScope::Client, "", None, &bad).await.unwrap_err();
        assert!(matches!(err, ControlError::Invalid { field: "allowed_ips", .. }), "{bad:?}: {err:?}");
    }
    assert_eq!(store.list_api_keys(user.id).await.unwrap().len(), 1, "nothing stored by a refusal");
}
