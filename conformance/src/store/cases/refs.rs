//! Record refs: numbers, short keys and external ids.

use nexus_core::model::*;
use nexus_core::store::*;
use std::collections::HashSet;
use std::sync::Arc;

fn key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Keys are numbered once, in the order first asked for, consecutively within a kind and
/// independently of other kinds; asking again (in any order, with repeats) answers the same
/// numbers; lookups by number and by short key find the record; a forgotten key's number is
/// never handed out again.
pub async fn record_refs_number_once_in_order(store: Arc<dyn Store>) {
    let (a, b, c) = (key(), key(), key());
    let first = store.record_refs(RecordKind::User, &[a.clone(), b.clone()]).await.expect("number");
    assert_eq!(first.len(), 2);
    let n = first[0].number;
    assert!(n >= 1, "numbers start at 1");
    assert_eq!(first[1].number, n + 1, "consecutive in the order given");
    assert_eq!((first[0].key.as_str(), first[0].short.as_str()), (a.as_str(), &a[..SHORT_KEY_LEN]));
    assert_eq!(first[0].external_id, None);
    let again =
        store.record_refs(RecordKind::User, &[b.clone(), a.clone(), c.clone(), c.clone()]).await.expect("again");
    let numbers: Vec<u64> = again.iter().map(|r| r.number).collect();
    assert_eq!(numbers, [n + 1, n, n + 2, n + 2], "known keys keep their numbers; a repeated new key gets one");
    assert!(store.record_refs(RecordKind::User, &[]).await.expect("none").is_empty());

    let other = store.record_refs(RecordKind::Server, std::slice::from_ref(&a)).await.expect("other kind");
    assert_eq!(other[0].kind, RecordKind::Server);
    let found = store.find_record_refs(RecordKind::Server, RefLookup::Number(other[0].number)).await.expect("find");
    assert_eq!(found, other, "kinds are numbered apart");
    let found = store.find_record_refs(RecordKind::User, RefLookup::Number(n)).await.expect("find");
    assert_eq!(found, [first[0].clone()]);
    let found = store.find_record_refs(RecordKind::User, RefLookup::Short(&a[..SHORT_KEY_LEN])).await.expect("short");
    assert!(found.iter().any(|r| r.key == a), "by short key");
    assert!(store.find_record_refs(RecordKind::User, RefLookup::Number(u64::MAX)).await.expect("find").is_empty());
    assert!(store.find_record_refs(RecordKind::Nest, RefLookup::Short("zzzzzzzz")).await.expect("find").is_empty());

    // A forgotten key's number stays spent: asked again, it gets a new one.
    store.forget_record_refs(RecordKind::User, &[b.clone(), key()]).await.expect("forget");
    assert!(store.find_record_refs(RecordKind::User, RefLookup::Number(n + 1)).await.expect("find").is_empty());
    let renumbered = store.record_refs(RecordKind::User, std::slice::from_ref(&b)).await.expect("again");
    assert!(renumbered[0].number > n + 2, "not reused: {}", renumbered[0].number);
    assert_eq!(
        store.record_refs(RecordKind::User, std::slice::from_ref(&a)).await.expect("a")[0].number,
        n,
        "others kept"
    );

    for bad in [String::new(), "k".repeat(MAX_RECORD_KEY_BYTES + 1), "a\nb".into()] {
        assert_err!(store.record_refs(RecordKind::User, &[bad]).await, StoreError::InvalidReference(_), "bad key");
    }
}

/// An external id belongs to one record of a kind at a time; it can be looked up, moved
/// once cleared, and the same text may name a record of another kind. Extra attributes are
/// stored with the ref, replaced whole, and bounded.
pub async fn record_refs_external_ids_are_unique_per_kind(store: Arc<dyn Store>) {
    let (a, b) = (key(), key());
    let external = format!("billing-{}", &key()[..8]);
    let set = store.set_external_id(RecordKind::Server, &a, Some(&external)).await.expect("set");
    assert_eq!(set.external_id.as_deref(), Some(external.as_str()));
    assert!(set.number >= 1, "numbered when first named");
    let found = store.find_record_refs(RecordKind::Server, RefLookup::External(&external)).await.expect("find");
    assert_eq!(found, std::slice::from_ref(&set));
    assert_err!(
        store.set_external_id(RecordKind::Server, &b, Some(&external)).await,
        StoreError::Duplicate { .. },
        "held by another server"
    );
    store.set_external_id(RecordKind::User, &b, Some(&external)).await.expect("another kind may use it");
    store.set_external_id(RecordKind::Server, &a, Some(&external)).await.expect("setting it again is a no-op");
    let cleared = store.set_external_id(RecordKind::Server, &a, None).await.expect("clear");
    assert_eq!((cleared.external_id, cleared.number), (None, set.number), "the number stays");
    let moved = store.set_external_id(RecordKind::Server, &b, Some(&external)).await.expect("moved");
    let found = store.find_record_refs(RecordKind::Server, RefLookup::External(&external)).await.expect("find");
    assert_eq!(found, [moved]);
    for bad in ["", "a\u{7}b"] {
        assert_err!(
            store.set_external_id(RecordKind::Server, &a, Some(bad)).await,
            StoreError::InvalidReference(_),
            "bad external id"
        );
    }
    // Extra attributes ride along with the external id and are replaced whole.
    let extra = std::collections::BTreeMap::from([
        ("first_name".to_owned(), "Pat".to_owned()),
        ("note".to_owned(), "two\nlines".to_owned()),
    ]);
    let with_extra = store.set_record_extra(RecordKind::Server, &b, &extra).await.expect("extra");
    assert_eq!((with_extra.extra.clone(), with_extra.external_id.as_deref()), (extra.clone(), Some(external.as_str())));
    let found = store.find_record_refs(RecordKind::Server, RefLookup::External(&external)).await.expect("find");
    assert_eq!(found[0].extra, extra, "stored");
    let read = store.record_refs(RecordKind::Server, std::slice::from_ref(&b)).await.expect("read");
    assert_eq!(read[0].extra, extra, "read back with the number");
    store.set_record_extra(RecordKind::Server, &b, &Default::default()).await.expect("cleared");
    assert!(store.record_refs(RecordKind::Server, std::slice::from_ref(&b)).await.expect("read")[0].extra.is_empty());
    let huge = std::collections::BTreeMap::from([("description".to_owned(), "x".repeat(MAX_RECORD_EXTRA_BYTES))]);
    assert_err!(
        store.set_record_extra(RecordKind::Server, &b, &huge).await,
        StoreError::InvalidReference(_),
        "too large"
    );
    let bell = std::collections::BTreeMap::from([("x".to_owned(), "\u{7}".to_owned())]);
    assert_err!(
        store.set_record_extra(RecordKind::Server, &b, &bell).await,
        StoreError::InvalidReference(_),
        "control"
    );
    let long = "x".repeat(MAX_EXTERNAL_ID_BYTES + 1);
    assert_err!(
        store.set_external_id(RecordKind::Server, &a, Some(&long)).await,
        StoreError::InvalidReference(_),
        "long"
    );
}

/// Writers numbering at once never hand out a number twice, and a key they share gets one
/// number.
pub async fn record_refs_numbered_once_under_concurrency(store: Arc<dyn Store>) {
    let shared = key();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let mut keys: Vec<String> = (0..10).map(|_| key()).collect();
            keys.push(shared.clone());
            tokio::spawn(async move { store.record_refs(RecordKind::Egg, &keys).await.expect("number") })
        })
        .collect();
    let mut numbers = HashSet::new();
    let mut shared_numbers = HashSet::new();
    for task in tasks {
        for record in task.await.expect("task") {
            if record.key == shared {
                shared_numbers.insert(record.number);
            } else {
                assert!(numbers.insert(record.number), "number {} handed out twice", record.number);
            }
        }
    }
    assert_eq!(shared_numbers.len(), 1, "the shared key has one number");
    assert!(!numbers.contains(shared_numbers.iter().next().expect("one")), "and it is its own");
    assert_eq!(numbers.len(), 80);
}
