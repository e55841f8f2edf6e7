//! Subusers and second factors.

use crate::store::fixtures::*;
use nexus_core::ids::*;
use nexus_core::model::*;
use nexus_core::store::*;
use std::sync::Arc;

/// A stored user with a random name.
async fn stored_user(store: &dyn Store, prefix: &str) -> User {
    let user = user(&format!("{prefix}-{}", tag()));
    store.create_user(&user).await.expect("create user");
    user
}

/// `put_subuser` stores a grant that `get_subuser` returns; putting it again (also inside a
/// transaction) replaces the permissions and keeps the first `created_at`; a pair without a
/// grant is `None`, not an error.
pub async fn subusers_put_replaces_and_keeps_created_at(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 1).await;
    let server = world.create_server(&*store, &[0]).await;
    let friend = stored_user(&*store, "friend").await;
    let grant = subuser(server.id, friend.id, &["control.console", "file.read"], ts(10));
    store.put_subuser(&grant).await.expect("put");
    assert_eq!(store.get_subuser(server.id, friend.id).await.expect("get"), Some(grant.clone()), "round-trip");
    assert_eq!(store.get_subuser(server.id, world.user.id).await.expect("get"), None, "the owner holds no grant");
    assert_eq!(store.get_subuser(ServerId::new(), friend.id).await.expect("get"), None, "unknown server");

    let replacement = subuser(server.id, friend.id, &["control.start"], ts(20));
    store.put_subuser(&replacement).await.expect("replace");
    let replaced = Subuser { created_at: grant.created_at, ..replacement };
    assert_eq!(
        store.get_subuser(server.id, friend.id).await.expect("get"),
        Some(replaced.clone()),
        "permissions replaced, created_at kept"
    );
    assert_eq!(store.list_subusers(server.id).await.expect("list"), [replaced], "one grant, not two");

    let tx = store.begin().await.expect("begin");
    tx.put_subuser(&subuser(server.id, friend.id, &[], ts(30))).await.expect("replace in a transaction");
    tx.commit().await.expect("commit");
    let emptied = store.get_subuser(server.id, friend.id).await.expect("get");
    assert_eq!(emptied, Some(subuser(server.id, friend.id, &[], ts(10))), "no permissions left, created_at kept");
}

/// `put_subuser` fails with `InvalidReference` for a missing server, a missing user and the
/// server's own owner, and stores nothing.
pub async fn subusers_checked_references(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 1).await;
    let server = world.create_server(&*store, &[0]).await;
    let friend = stored_user(&*store, "friend").await;
    let cases = [
        (subuser(ServerId::new(), friend.id, &["file.read"], ts(1)), "missing server"),
        (subuser(server.id, UserId::new(), &["file.read"], ts(1)), "missing user"),
        (subuser(server.id, world.user.id, &["file.read"], ts(1)), "the owner"),
    ];
    for (grant, why) in cases {
        assert_err!(store.put_subuser(&grant).await, StoreError::InvalidReference(_), "{why}");
        assert_eq!(store.get_subuser(grant.server, grant.user).await.expect("get"), None, "stored although {why}");
    }
    assert!(store.list_subusers(server.id).await.expect("list").is_empty(), "failed puts store nothing");
}

/// `list_subusers` lists one server's grants oldest first, equal times by user id; empty for a
/// server without grants; `NotFound` for an unknown server.
pub async fn subusers_listed_oldest_first(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 2).await;
    let server = world.create_server(&*store, &[0]).await;
    let other = world.create_server(&*store, &[1]).await;
    assert!(store.list_subusers(server.id).await.expect("list").is_empty(), "no grants yet");
    let mut users = Vec::new();
    for i in 0..4 {
        users.push(stored_user(&*store, &format!("sub{i}")).await);
    }
    let late = subuser(server.id, users[0].id, &["file.read"], ts(30));
    let early = subuser(server.id, users[1].id, &["file.read"], ts(10));
    let tie_a = subuser(server.id, users[2].id, &["file.read"], ts(20));
    let tie_b = subuser(server.id, users[3].id, &["control.console"], ts(20));
    let foreign = subuser(other.id, users[0].id, &["file.read"], ts(1));
    for grant in [&late, &early, &tie_a, &tie_b, &foreign] {
        store.put_subuser(grant).await.expect("put");
    }
    let (first20, second20) = if tie_a.user < tie_b.user { (tie_a, tie_b) } else { (tie_b, tie_a) };
    let listed = store.list_subusers(server.id).await.expect("list");
    assert_eq!(listed, [early, first20, second20, late], "oldest first, then user id; only this server");
    assert_eq!(store.list_subusers(other.id).await.expect("list"), [foreign]);
    assert_err!(store.list_subusers(ServerId::new()).await, StoreError::NotFound { .. }, "unknown server");
}

/// `delete_subuser` removes one grant (`NotFound` when there is none); deleting a server
/// removes its grants and deleting a user theirs (a user re-created with the same id has none),
/// and every other grant stays.
pub async fn subusers_deleted_alone_and_with_server_or_user(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 2).await;
    let doomed = world.create_server(&*store, &[0]).await;
    let kept = world.create_server(&*store, &[1]).await;
    let leaving = stored_user(&*store, "leaving").await;
    let staying = stored_user(&*store, "staying").await;
    for server in [doomed.id, kept.id] {
        for user in [leaving.id, staying.id] {
            store.put_subuser(&subuser(server, user, &["file.read"], ts(5))).await.expect("put");
        }
    }

    store.delete_subuser(doomed.id, staying.id).await.expect("delete");
    assert_eq!(store.get_subuser(doomed.id, staying.id).await.expect("get"), None, "deleted grant");
    assert_err!(store.delete_subuser(doomed.id, staying.id).await, StoreError::NotFound { .. }, "delete twice");
    assert_err!(store.delete_subuser(doomed.id, world.user.id).await, StoreError::NotFound { .. }, "never granted");
    assert_err!(store.delete_subuser(ServerId::new(), staying.id).await, StoreError::NotFound { .. }, "no server");
    assert!(store.get_subuser(doomed.id, leaving.id).await.expect("get").is_some(), "the other grant stays");

    store.delete_server(doomed.id).await.expect("delete server");
    assert_eq!(store.get_subuser(doomed.id, leaving.id).await.expect("get"), None, "grants go with the server");
    assert_err!(store.list_subusers(doomed.id).await, StoreError::NotFound { .. }, "deleted server");

    store.delete_user(leaving.id).await.expect("delete subuser's account");
    assert_eq!(store.get_subuser(kept.id, leaving.id).await.expect("get"), None, "grants go with the user");
    let listed = store.list_subusers(kept.id).await.expect("list");
    assert_eq!(listed, [subuser(kept.id, staying.id, &["file.read"], ts(5))], "other grants stay");
    store.create_user(&leaving).await.expect("re-create the user with the same id");
    assert_eq!(store.get_subuser(kept.id, leaving.id).await.expect("get"), None, "a new account inherits nothing");
}

/// Second factors: `put_totp` stores one per user and replaces it whole (`None`s included),
/// `get_totp` is `None` for a user without one, `delete_totp` removes it (`NotFound` when there
/// is none), and a missing user is `InvalidReference`.
pub async fn totp_put_replace_delete(store: Arc<dyn Store>) {
    let alice = stored_user(&*store, "alice").await;
    let bob = stored_user(&*store, "bob").await;
    assert_eq!(store.get_totp(alice.id).await.expect("get"), None, "none yet");

    let pending = UserTotp { enabled_at: None, ..totp(alice.id, None) };
    store.put_totp(&pending).await.expect("put");
    assert_eq!(store.get_totp(alice.id).await.expect("get"), Some(pending), "round-trip while being set up");
    let confirmed = UserTotp {
        secret: "KRSXG5CTMVRXEZLU".into(),
        recovery_hashes: vec!["sha256:only-one-left".into()],
        // Above 2^32: the step is a 64-bit number.
        ..totp(alice.id, Some(1 << 40))
    };
    store.put_totp(&confirmed).await.expect("replace");
    assert_eq!(store.get_totp(alice.id).await.expect("get"), Some(confirmed.clone()), "replaced whole");
    let cleared = UserTotp { recovery_hashes: vec![], enabled_at: None, last_step: None, ..confirmed };
    store.put_totp(&cleared).await.expect("replace with Nones");
    assert_eq!(store.get_totp(alice.id).await.expect("get"), Some(cleared), "Nones written too");

    let bobs = totp(bob.id, Some(56_802_240));
    store.put_totp(&bobs).await.expect("put bob's");
    store.delete_totp(alice.id).await.expect("delete");
    assert_eq!(store.get_totp(alice.id).await.expect("get"), None, "deleted");
    assert_err!(store.delete_totp(alice.id).await, StoreError::NotFound { .. }, "delete twice");
    assert_eq!(store.get_totp(bob.id).await.expect("get"), Some(bobs), "another user's factor stays");

    let ghost = UserId::new();
    assert_err!(store.put_totp(&totp(ghost, None)).await, StoreError::InvalidReference(_), "missing user");
    assert_eq!(store.get_totp(ghost).await.expect("get"), None, "failed put stores nothing");
    assert_err!(store.delete_totp(ghost).await, StoreError::NotFound { .. }, "missing user");
}

/// A user's second factor goes with the user: a user re-created with the same id has none.
pub async fn totp_removed_with_user(store: Arc<dyn Store>) {
    let alice = stored_user(&*store, "alice").await;
    let bob = stored_user(&*store, "bob").await;
    store.put_totp(&totp(alice.id, Some(7))).await.expect("put alice's");
    store.put_totp(&totp(bob.id, Some(8))).await.expect("put bob's");
    store.delete_user(alice.id).await.expect("delete user");
    assert_eq!(store.get_totp(alice.id).await.expect("get"), None, "gone with the user");
    store.create_user(&alice).await.expect("re-create the user with the same id");
    assert_eq!(store.get_totp(alice.id).await.expect("get"), None, "a new account inherits no factor");
    assert_eq!(store.get_totp(bob.id).await.expect("get"), Some(totp(bob.id, Some(8))), "others stay");
}
