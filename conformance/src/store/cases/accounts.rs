//! Users, API keys, the audit log.

use crate::store::fixtures::*;
use nexus_core::ids::*;
use nexus_core::model::*;
use nexus_core::store::*;
use std::sync::Arc;

/// Users round-trip every field; `find_user_by_login` matches username or e-mail in any case;
/// `update_user` replaces every field.
pub async fn users_round_trip(store: Arc<dyn Store>) {
    let mut alice = user("alice");
    store.create_user(&alice).await.expect("create alice");
    assert_eq!(store.get_user(alice.id).await.expect("get alice"), alice, "get_user returns what was created");
    for login in ["alice", "ALICE", "alice@example.com", "Alice@Example.COM"] {
        let found = store.find_user_by_login(login).await.expect("find_user_by_login");
        assert_eq!(found.as_ref(), Some(&alice), "find_user_by_login({login:?})");
    }
    assert_eq!(store.find_user_by_login("bob").await.expect("find bob"), None, "unknown login");

    alice.username = "alice2".into();
    alice.email = "alice2@example.org".into();
    alice.password_hash = "$argon2id$other".into();
    alice.role = Role::Admin;
    alice.created_at = ts(5);
    store.update_user(&alice).await.expect("update alice");
    assert_eq!(store.get_user(alice.id).await.expect("get alice"), alice, "update_user replaces every field");
    assert_eq!(store.find_user_by_login("alice").await.expect("find"), None, "old username no longer matches");
    assert_eq!(store.find_user_by_login("ALICE2@example.org").await.expect("find").map(|u| u.id), Some(alice.id));
}

/// Username and e-mail are unique case-insensitively, on create and update; ids are unique.
pub async fn users_unique_case_insensitively(store: Arc<dyn Store>) {
    let alice = user("alice");
    store.create_user(&alice).await.expect("create alice");
    let same_name = User { email: "other@example.com".into(), ..user("ALICE") };
    assert_err!(store.create_user(&same_name).await, StoreError::Duplicate { .. }, "username differing in case");
    let same_email = User { email: "Alice@EXAMPLE.com".into(), ..user("bob") };
    assert_err!(store.create_user(&same_email).await, StoreError::Duplicate { .. }, "e-mail differing in case");
    let same_id = User { id: alice.id, ..user("carol") };
    assert_err!(store.create_user(&same_id).await, StoreError::Duplicate { .. }, "same id");
    assert_eq!(store.list_users(Page::all()).await.expect("list").len(), 1, "failed creates store nothing");

    let bob = user("bob");
    store.create_user(&bob).await.expect("create bob");
    let renamed = User { username: "Alice".into(), ..bob.clone() };
    assert_err!(store.update_user(&renamed).await, StoreError::Duplicate { .. }, "update to a taken username");
    let remailed = User { email: "ALICE@example.com".into(), ..bob.clone() };
    assert_err!(store.update_user(&remailed).await, StoreError::Duplicate { .. }, "update to a taken e-mail");
    assert_eq!(store.get_user(bob.id).await.expect("get bob"), bob, "a failed update changes nothing");

    let recased = User { username: "ALICE".into(), ..alice.clone() };
    store.update_user(&recased).await.expect("a user does not collide with itself");
}

/// Missing users are `NotFound` for get, update and delete.
pub async fn users_not_found(store: Arc<dyn Store>) {
    let ghost = user("ghost");
    assert_err!(store.get_user(ghost.id).await, StoreError::NotFound { .. }, "get_user");
    assert_err!(store.update_user(&ghost).await, StoreError::NotFound { .. }, "update_user");
    assert_err!(store.delete_user(ghost.id).await, StoreError::NotFound { .. }, "delete_user");
    assert_err!(store.get_user(ghost.id).await, StoreError::NotFound { .. }, "update_user must not insert");
}

/// `list_users` is ordered by username and honours offset and limit.
pub async fn users_listed_by_username_and_paged(store: Arc<dyn Store>) {
    for name in ["delta", "alpha", "echo", "charlie", "bravo"] {
        store.create_user(&user(name)).await.expect("create user");
    }
    let names = |users: Vec<User>| users.into_iter().map(|u| u.username).collect::<Vec<_>>();
    let all = names(store.list_users(Page::all()).await.expect("list all"));
    assert_eq!(all, ["alpha", "bravo", "charlie", "delta", "echo"], "ordered by username");
    let page = names(store.list_users(Page { offset: 1, limit: 2 }).await.expect("list page"));
    assert_eq!(page, ["bravo", "charlie"], "offset 1, limit 2");
    let tail = names(store.list_users(Page { offset: 4, limit: 10 }).await.expect("list tail"));
    assert_eq!(tail, ["echo"], "a page past the end is cut short");
    assert!(store.list_users(Page { offset: 5, limit: 10 }).await.expect("list").is_empty(), "offset at the end");
    assert!(store.list_users(Page::first(0)).await.expect("list").is_empty(), "limit 0");
    assert_eq!(names(store.list_users(Page::first(1)).await.expect("list")), ["alpha"], "first(1)");
}

/// A user who owns servers cannot be deleted (`InUse`); once free, deleting removes
/// the user's API keys too.
pub async fn user_delete_guarded_by_servers_and_removes_keys(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 1).await;
    let server = world.create_server(&*store, &[0]).await;
    let key = api_key(world.user.id, "nxk_owner001", ts(0));
    store.create_api_key(&key).await.expect("create key");

    assert_err!(store.delete_user(world.user.id).await, StoreError::InUse { .. }, "user owns a server");
    assert_eq!(store.get_user(world.user.id).await.expect("get"), world.user, "blocked delete changes nothing");

    store.delete_server(server.id).await.expect("delete server");
    store.delete_user(world.user.id).await.expect("delete user without servers");
    assert_err!(store.get_user(world.user.id).await, StoreError::NotFound { .. }, "deleted user");
    assert_eq!(store.find_api_key(&key.prefix).await.expect("find key"), None, "keys go with their user");
}

/// API keys: unique prefix, lookup by exact prefix, listing newest first, touch, delete; the
/// user must exist.
pub async fn api_keys_round_trip(store: Arc<dyn Store>) {
    let owner = user("keyowner");
    let other = user("someone");
    store.create_user(&owner).await.expect("create owner");
    store.create_user(&other).await.expect("create other");
    let old = api_key(owner.id, "nxk_old00001", ts(10));
    let new = ApiKey { scope: ApiKeyScope::Application, expires_at: None, ..api_key(owner.id, "nxk_new00001", ts(30)) };
    let mid = api_key(owner.id, "nxk_mid00001", ts(20));
    let foreign = api_key(other.id, "nxk_oth00001", ts(40));
    for key in [&old, &new, &mid, &foreign] {
        store.create_api_key(key).await.expect("create key");
    }

    assert_eq!(store.find_api_key("nxk_new00001").await.expect("find"), Some(new.clone()), "lookup by prefix");
    assert_eq!(store.find_api_key("nxk_nope0001").await.expect("find"), None, "unknown prefix");
    assert_eq!(store.find_api_key("nxk_new").await.expect("find"), None, "prefix lookup is exact, not LIKE");
    let listed: Vec<ApiKeyId> = store.list_api_keys(owner.id).await.expect("list").into_iter().map(|k| k.id).collect();
    assert_eq!(listed, [new.id, mid.id, old.id], "a user's keys, newest first");
    assert_err!(store.list_api_keys(UserId::new()).await, StoreError::NotFound { .. }, "keys of an unknown user");

    let clash = api_key(other.id, "nxk_old00001", ts(50));
    assert_err!(store.create_api_key(&clash).await, StoreError::Duplicate { .. }, "duplicate prefix");
    let orphan = api_key(UserId::new(), "nxk_orphan01", ts(50));
    assert_err!(store.create_api_key(&orphan).await, StoreError::InvalidReference(_), "unknown user");
    assert_eq!(store.find_api_key("nxk_orphan01").await.expect("find"), None, "failed create stores nothing");

    store.touch_api_key(old.id, ts(99)).await.expect("touch");
    let touched = store.find_api_key(&old.prefix).await.expect("find").expect("old key exists");
    assert_eq!(touched, ApiKey { last_used_at: Some(ts(99)), ..old.clone() }, "touch sets only last_used_at");
    assert_err!(store.touch_api_key(ApiKeyId::new(), ts(1)).await, StoreError::NotFound { .. }, "touch unknown");

    store.delete_api_key(old.id).await.expect("delete");
    assert_eq!(store.find_api_key(&old.prefix).await.expect("find"), None, "deleted key");
    assert_err!(store.delete_api_key(old.id).await, StoreError::NotFound { .. }, "delete twice");
}

/// The audit log lists newest first (equal times: last appended first), filters by subject,
/// pages, and rejects a duplicate id. Subjects need not exist.
pub async fn audit_newest_first_filtered_and_paged(store: Arc<dyn Store>) {
    let server = AuditSubject::Server(ServerId::new());
    let node = AuditSubject::Node(NodeId::new());
    let events = [
        audit(server.clone(), "server.create", ts(10)),
        audit(node.clone(), "node.create", ts(20)),
        audit(server.clone(), "server.power.start", ts(30)),
        audit(AuditSubject::Panel, "panel.settings", ts(30)),
        audit(server.clone(), "server.power.stop", ts(40)),
        audit(AuditSubject::User(UserId::new()), "user.login", ts(5)),
    ];
    for event in &events {
        store.append_audit(event).await.expect("append");
    }
    let actions = |list: Vec<AuditEvent>| list.into_iter().map(|e| e.action).collect::<Vec<_>>();

    let all = store.list_audit(None, Page::all()).await.expect("list all");
    assert_eq!(all.first(), Some(&events[4]), "entries round-trip, metadata included");
    assert_eq!(
        actions(all),
        ["server.power.stop", "panel.settings", "server.power.start", "node.create", "server.create", "user.login"],
        "newest first; equal times: last appended first"
    );
    let about_server = actions(store.list_audit(Some(&server), Page::all()).await.expect("list server"));
    assert_eq!(about_server, ["server.power.stop", "server.power.start", "server.create"], "filtered by subject");
    let paged = actions(store.list_audit(Some(&server), Page { offset: 1, limit: 1 }).await.expect("page"));
    assert_eq!(paged, ["server.power.start"], "filter, then page");
    let panel = actions(store.list_audit(Some(&AuditSubject::Panel), Page::all()).await.expect("list panel"));
    assert_eq!(panel, ["panel.settings"], "the panel subject");
    let nobody = store.list_audit(Some(&AuditSubject::User(UserId::new())), Page::all()).await.expect("list");
    assert!(nobody.is_empty(), "unknown subject: empty, not an error");

    assert_err!(store.append_audit(&events[0]).await, StoreError::Duplicate { .. }, "same audit id twice");
    assert_eq!(store.list_audit(None, Page::all()).await.expect("list").len(), events.len(), "nothing appended");
}
