//! Template layers and backups end to end, through `nexus-panel up` with its local node on
//! the real Docker engine: layers published through the API and applied after the install
//! script (variables replaced, whiteouts, binary files unchanged); backups created, listed,
//! downloaded, restored (with and without wiping), locked, rotated by a schedule and
//! deleted, through `/api/v1` and Pterodactyl's client API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Client;
use common::up::{Up, create_key};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Digest as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// A tar archive of `dir` (the layer's files as an operator packs them).
fn tar_of(dir: &Path) -> Vec<u8> {
    let out = std::process::Command::new("tar").arg("-C").arg(dir).args(["-cf", "-", "."]).output().unwrap();
    assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

async fn publish(session: &Client, layer: &str, archive: Vec<u8>) -> (u16, Value) {
    let response = session
        .request(Method::POST, &format!("/api/v1/templates/{layer}"))
        .header("content-type", "application/x-tar")
        .body(archive)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn file(session: &Client, server: &str, path: &str) -> Option<Vec<u8>> {
    let response = session
        .request(Method::GET, &format!("/api/v1/servers/{server}/files/download?file={path}"))
        .send()
        .await
        .unwrap();
    match response.status().as_u16() {
        200 => Some(response.bytes().await.unwrap().to_vec()),
        404 => None,
        other => panic!("downloading {path}: {other} {}", response.text().await.unwrap()),
    }
}

async fn write(session: &Client, server: &str, path: &str, content: &str) {
    let response = session
        .request(Method::PUT, &format!("/api/v1/servers/{server}/files/contents?file={path}"))
        .body(content.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "writing {path}");
}

/// Waits until the server's backup `id` is no longer pending; answers it.
async fn settled(session: &Client, server: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let backup = session.get(&format!("/api/v1/servers/{server}/backups/{id}")).await;
        if backup["state"] != "pending" {
            return backup;
        }
        assert!(Instant::now() < deadline, "backup {id} still pending");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for the `n`th activity entry `action` about the server.
async fn activity(session: &Client, server: &str, action: &str, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = session.get(&format!("/api/v1/servers/{server}/activity?per_page=100")).await;
        let found: Vec<&Value> = page["data"].as_array().unwrap().iter().filter(|e| e["action"] == action).collect();
        if found.len() >= n {
            return found[0].clone();
        }
        assert!(Instant::now() < deadline, "no {n} `{action}` in the activity: {page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_and_backups_through_the_panel() {
    if !common::docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut up = Up::start_with_ports(&data, "30450-30459", "127.0.0.1:0");
    // The local node's containers go when the test ends, whatever happens.
    let session = up.admin_session().await;

    // Two layers: the egg's base, and the server's own on top of it.
    let base = dir.path().join("base");
    std::fs::create_dir_all(base.join("config")).unwrap();
    std::fs::write(base.join("config/server.yml"), "port: {{ env.SERVER_PORT }}\nmemory: {{ server.memory }}\n")
        .unwrap();
    std::fs::write(base.join("readme.txt"), "from base").unwrap();
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    std::fs::write(base.join("plugin.bin"), &binary).unwrap();
    std::fs::write(base.join(".nexus-render"), "config/*.yml\n").unwrap();
    let extra = dir.path().join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(extra.join(".wh.readme.txt"), "").unwrap();
    std::fs::write(extra.join("motd.txt"), "from extra").unwrap();
    let (status, body) = publish(&session, "base@1", tar_of(&base)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["layer"], "base@1");
    // The second from the command line, into the running panel's store.
    let publish_extra = || {
        std::process::Command::new(common::up::BIN)
            .args(["templates", "publish", "extra@1"])
            .arg(&extra)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap()
    };
    let out = publish_extra();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("published extra@1"));
    let again = publish_extra();
    assert!(!again.status.success(), "versions are immutable");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already published"), "{again:?}");
    assert_eq!(publish(&session, "base@1", tar_of(&base)).await.0, 409, "versions are immutable");
    let layers = session.get("/api/v1/templates").await;
    assert!(layers.as_array().unwrap().iter().any(|l| l == "extra@1"), "{layers}");

    let egg = session.import_busybox_egg().await;
    let egg_id = egg["id"].as_str().unwrap();
    let (status, body) = session
        .call(Method::PUT, &format!("/api/v1/eggs/{egg_id}/templates"), Some(json!({ "templates": ["base@1"] })))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["templates"], json!(["base@1"]));
    let (status, body) = session
        .call(Method::PUT, &format!("/api/v1/eggs/{egg_id}/templates"), Some(json!({ "templates": ["no version"] })))
        .await;
    assert!(status == 400 || status == 422, "{status} {body}");
    let owner = session.get("/api/v1/account").await["id"].clone();
    let (status, created) = session
        .call(
            Method::POST,
            "/api/v1/servers",
            Some(json!({
                "name": "layered", "owner": owner, "egg": egg_id,
                "limits": { "memory_mb": 128, "swap_mb": 0, "cpu_percent": 100, "disk_mb": 512, "io_weight": 500, "pids": 0 },
                "templates": ["extra@1"], "backup_limit": 2,
            })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let server = created["server"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["server"]["templates"], json!(["extra@1"]));
    session.wait_state(&server, "installed").await;

    // The install script's file, then the layers over it.
    let port = session.get(&format!("/api/v1/servers/{server}")).await["allocation"]["port"].clone();
    let yml = String::from_utf8(file(&session, &server, "config/server.yml").await.unwrap()).unwrap();
    assert_eq!(yml, format!("port: {port}\nmemory: 128\n"), "rendered with the server's values");
    assert_eq!(file(&session, &server, "plugin.bin").await.unwrap(), binary, "binary files unchanged");
    assert_eq!(file(&session, &server, "readme.txt").await, None, "whited out by the later layer");
    assert_eq!(file(&session, &server, "motd.txt").await.unwrap(), b"from extra");
    assert!(file(&session, &server, "server.properties").await.is_some(), "the install script ran first");

    // Backups: one, downloaded and checked against its checksum.
    write(&session, &server, "world/level.dat", "level one").await;
    write(&session, &server, ".pteroignore", "*.log\n").await;
    write(&session, &server, "latest.log", "noise").await;
    let (status, backup) = session
        .call(Method::POST, &format!("/api/v1/servers/{server}/backups"), Some(json!({ "name": "first" })))
        .await;
    assert_eq!(status, 202, "{backup}");
    assert_eq!(backup["state"], "pending");
    let first = backup["id"].as_str().unwrap().to_owned();
    let done = settled(&session, &server, &first).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let checksum = done["checksum"].as_str().unwrap().to_owned();
    let response = session
        .request(Method::GET, &format!("/api/v1/servers/{server}/backups/{first}/download"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let archive = response.bytes().await.unwrap();
    assert_eq!(archive.len() as u64, done["bytes"].as_u64().unwrap());
    assert_eq!(hex(&sha2::Sha256::digest(&archive)), checksum, "the recorded checksum is the archive's");
    assert_eq!(&archive[..4], &[0x28, 0xb5, 0x2f, 0xfd], "a zstd stream");
    let listing = tar_listing(&archive);
    assert!(listing.iter().any(|n| n.ends_with("world/level.dat")), "{listing:?}");
    assert!(!listing.iter().any(|n| n.ends_with("latest.log")), ".pteroignore respected: {listing:?}");

    // Restore without wiping: the backup's files come back, newer ones stay.
    write(&session, &server, "world/level.dat", "level two").await;
    write(&session, &server, "new.txt", "after the backup").await;
    let (status, body) = session
        .call(
            Method::POST,
            &format!("/api/v1/servers/{server}/backups/{first}/restore"),
            Some(json!({ "wipe": false })),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    activity(&session, &server, "backup.restore.completed", 1).await;
    assert_eq!(file(&session, &server, "world/level.dat").await.unwrap(), b"level one");
    assert_eq!(file(&session, &server, "new.txt").await.unwrap(), b"after the backup");
    // With wiping: only the backup's files.
    let (status, _) = session
        .call(Method::POST, &format!("/api/v1/servers/{server}/backups/{first}/restore"), Some(json!({ "wipe": true })))
        .await;
    assert_eq!(status, 202);
    activity(&session, &server, "backup.restore.completed", 2).await;
    assert_eq!(file(&session, &server, "new.txt").await, None, "wiped");
    assert_eq!(file(&session, &server, "world/level.dat").await.unwrap(), b"level one");

    // A running server is not restored.
    session.call(Method::POST, &format!("/api/v1/servers/{server}/power"), Some(json!({ "action": "start" }))).await;
    session.wait_state(&server, "running").await;
    let (status, body) = session
        .call(Method::POST, &format!("/api/v1/servers/{server}/backups/{first}/restore"), Some(json!({ "wipe": true })))
        .await;
    assert_eq!(status, 409, "{body}");

    // The limit (2): a second by hand, then a third refused.
    let (status, second) = session
        .call(Method::POST, &format!("/api/v1/servers/{server}/backups"), Some(json!({ "name": "second" })))
        .await;
    assert_eq!(status, 202, "{second}");
    let second = second["id"].as_str().unwrap().to_owned();
    assert_eq!(settled(&session, &server, &second).await["state"], "succeeded");
    let (status, body) =
        session.call(Method::POST, &format!("/api/v1/servers/{server}/backups"), Some(json!({}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("backup_refused")), "{body}");

    // Locks guard against deletion; a scheduled backup replaces the oldest unlocked one.
    let (status, locked) = session
        .call(Method::POST, &format!("/api/v1/servers/{server}/backups/{first}/lock"), Some(json!({ "locked": true })))
        .await;
    assert_eq!((status, locked["locked"].as_bool()), (200, Some(true)));
    let (status, _) = session.call(Method::DELETE, &format!("/api/v1/servers/{server}/backups/{first}"), None).await;
    assert_eq!(status, 400, "locked");
    let (status, schedule) = session
        .call(
            Method::POST,
            &format!("/api/v1/servers/{server}/schedules"),
            Some(json!({
                "name": "nightly", "cron": "0 3 * * *", "timezone": "UTC", "enabled": true, "only_when_online": false,
                "tasks": [{ "action": { "kind": "backup", "payload": ["*.tmp"] }, "offset_seconds": 0, "continue_on_failure": false }],
            })),
        )
        .await;
    assert_eq!(status, 201, "{schedule}");
    let schedule = schedule["id"].as_str().unwrap();
    let (status, _) =
        session.call(Method::POST, &format!("/api/v1/servers/{server}/schedules/{schedule}/run"), None).await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(60);
    let rotated = loop {
        let list = session.get(&format!("/api/v1/servers/{server}/backups")).await;
        let ids: Vec<&str> = list.as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap()).collect();
        if !ids.contains(&second.as_str()) && ids.len() == 2 {
            break list;
        }
        assert!(Instant::now() < deadline, "the schedule did not rotate: {list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let newest = rotated[0].clone();
    assert_eq!(newest["ignored"], json!(["*.tmp"]), "{rotated}");
    assert!(rotated.as_array().unwrap().iter().any(|b| b["id"] == first.as_str()), "the locked one stays");
    assert_eq!(settled(&session, &server, newest["id"].as_str().unwrap()).await["state"], "succeeded");

    // Pterodactyl's client API over the same backups.
    let key = create_key(&data, "admin@nexus.local", "client");
    let http = reqwest::Client::new();
    let short = {
        let list: Value =
            http.get(format!("{}/api/client", up.url)).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
        list["data"][0]["attributes"]["identifier"].as_str().unwrap().to_owned()
    };
    let ptero = |method: Method, path: &str| {
        http.request(method, format!("{}/api/client/servers/{short}{path}", up.url)).bearer_auth(&key)
    };
    let list: Value = ptero(Method::GET, "/backups").send().await.unwrap().json().await.unwrap();
    assert_eq!(list["object"], "list");
    assert_eq!(list["meta"]["backup_count"], 2, "{list}");
    let one = &list["data"][0];
    assert_eq!(one["object"], "backup");
    assert!(one["attributes"]["checksum"].as_str().unwrap().starts_with("sha256:"), "{one}");
    let (status, body) = {
        let r = ptero(Method::POST, "/backups").json(&json!({ "name": "p" })).send().await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 400, "over the limit: {body}");
    assert_eq!(body["errors"][0]["code"], "DisplayException");
    let signed: Value =
        ptero(Method::GET, &format!("/backups/{first}/download")).send().await.unwrap().json().await.unwrap();
    let url = signed["attributes"]["url"].as_str().unwrap();
    let direct = http.get(url).send().await.unwrap();
    assert_eq!(direct.status(), 200, "the signed link reads the archive from the node");
    assert_eq!(hex(&sha2::Sha256::digest(direct.bytes().await.unwrap())), checksum);
    let toggled: Value =
        ptero(Method::POST, &format!("/backups/{first}/lock")).send().await.unwrap().json().await.unwrap();
    assert_eq!(toggled["attributes"]["is_locked"], false);
    assert_eq!(ptero(Method::DELETE, &format!("/backups/{first}")).send().await.unwrap().status(), 204);
    let gone = ptero(Method::GET, &format!("/backups/{first}")).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    // Dropping `up` stops the panel and removes the node's containers (a running server
    // would hold its port for the next test).
    drop(up);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The entry names of a tar.zst archive.
fn tar_listing(archive: &[u8]) -> Vec<String> {
    let tar = zstd::decode_all(archive).expect("a zstd stream");
    let mut names = Vec::new();
    for entry in tar::Archive::new(&tar[..]).entries().expect("a tar archive") {
        names.push(entry.unwrap().path().unwrap().to_string_lossy().into_owned());
    }
    names
}
