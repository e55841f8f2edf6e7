//! The web UI in a real browser: Debian's headless chromium driven over WebDriver
//! (chromedriver, through fantoccini) against `nexus-panel up` on Docker.
//!
//! - An admin logs in, imports an egg, creates a server, starts it, sees its console line,
//!   sends a command and sees its output, edits a file in the file manager, stops the server
//!   and logs out.
//! - A subuser holding only `control.console` sees the console and its command input but no
//!   power buttons and no file manager; the file page and the routes behind those buttons
//!   refuse them.
//!
//! Screenshots of the server page, the file manager, the admin overview and the subuser's
//! view are written to `<target>/ui-screenshots/` for a reviewer. Needs Docker, the busybox
//! test image and chromium + chromium-driver (`scripts/services/chromium.sh`); fails under
//! `CI=true` without them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Client;
use common::up::Up;
use fantoccini::{Client as Browser, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

/// One browser test at a time: each runs a panel, a node's servers and a chromium on two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn chromedriver() -> Option<String> {
    let path = std::env::var("NEXUS_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let probe = match Command::new(&path).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        Err(e) => Err(format!("{path}: {e}")),
    };
    nexus_conformance::require_service("chromium-driver", probe).then_some(path)
}

/// A chromedriver process on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start(path: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + T;
        while reqwest::get(format!("{url}/status")).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver never answered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child, url }
    }

    async fn browser(&self) -> Browser {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"] }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector).capabilities(capabilities).connect(&self.url).await.expect("a browser session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshots() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("..").join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(browser: &Browser, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(screenshots().join(name), png).unwrap();
}

/// Waits for the element, then types `text` into it.
async fn type_into(browser: &Browser, at: Locator<'_>, text: &str) {
    browser.wait().at_most(T).for_element(at).await.unwrap().send_keys(text).await.unwrap();
}

/// Waits until the element's text contains `needle`.
async fn wait_text(browser: &Browser, css: &str, needle: &str) {
    let deadline = Instant::now() + T;
    loop {
        if let Ok(element) = browser.find(Locator::Css(css)).await
            && element.text().await.unwrap_or_default().contains(needle)
        {
            return;
        }
        assert!(Instant::now() < deadline, "`{css}` never showed {needle:?}: {}", text_of(browser, css).await);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn text_of(browser: &Browser, css: &str) -> String {
    match browser.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => format!("(no {css})"),
    }
}

/// Waits until the button is enabled (its state allows it).
async fn wait_enabled(browser: &Browser, css: &str) {
    let deadline = Instant::now() + T;
    loop {
        let element = browser.wait().at_most(T).for_element(Locator::Css(css)).await.unwrap();
        if element.prop("disabled").await.unwrap().as_deref() == Some("false") {
            return;
        }
        assert!(Instant::now() < deadline, "`{css}` stayed disabled; state {}", text_of(browser, "#state").await);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn wait_path(browser: &Browser, prefix: &str) -> String {
    let deadline = Instant::now() + T;
    loop {
        let url = browser.current_url().await.unwrap();
        if url.path().starts_with(prefix) {
            return url.path().to_owned();
        }
        assert!(Instant::now() < deadline, "stayed on {url}, expected {prefix}…");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn login(browser: &Browser, base: &str, login: &str, password: &str) {
    browser.goto(&format!("{base}/login")).await.unwrap();
    type_into(browser, Locator::Id("login"), login).await;
    browser.find(Locator::Id("password")).await.unwrap().send_keys(password).await.unwrap();
    browser.find(Locator::Id("login-submit")).await.unwrap().click().await.unwrap();
    browser.wait().at_most(T).for_element(Locator::Id("servers")).await.expect("the server list after login");
}

/// A `fetch` from the page (its cookie and CSRF token): the status the API answers.
async fn fetch_status(browser: &Browser, method: &str, path: &str, body: Option<Value>) -> u16 {
    let script = r#"
        const [method, path, body, done] = arguments;
        const csrf = document.querySelector('meta[name="csrf-token"]').content;
        fetch(path, { method, headers: { "content-type": "application/json", "x-csrf-token": csrf },
                      body: body === null ? undefined : JSON.stringify(body) })
          .then((r) => done(r.status), () => done(0));
    "#;
    let status =
        browser.execute_async(script, vec![json!(method), json!(path), body.unwrap_or(Value::Null)]).await.unwrap();
    u16::try_from(status.as_u64().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_runs_a_server_from_the_browser() {
    let (Some(driver_path), true) = (chromedriver(), common::docker_ready()) else { return };
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut up = Up::start_with_ports(&dir.path().join("data"), "30430-30439", "127.0.0.1:0");
    let password = up.password.clone().unwrap();
    let api = Client::login(&up.url, "admin@nexus.local", &password).await;
    let node = api.get("/api/v1/nodes").await["data"][0]["id"].as_str().unwrap().to_owned();
    up.node_containers = Some(format!("label={}={node}", nexus_agent::NODE_LABEL));
    let driver = Driver::start(&driver_path).await;
    let browser = driver.browser().await;
    let base = up.url.clone();

    // Unauthenticated pages send you to the login page.
    browser.goto(&format!("{base}/")).await.unwrap();
    wait_path(&browser, "/login").await;
    // A wrong password is explained next to the form, in words.
    type_into(&browser, Locator::Id("login"), "admin@nexus.local").await;
    browser.find(Locator::Id("password")).await.unwrap().send_keys("wrong password").await.unwrap();
    browser.find(Locator::Id("login-submit")).await.unwrap().click().await.unwrap();
    wait_text(&browser, "#login-form .form-error", "").await;
    let refusal = loop {
        let text = text_of(&browser, "#login-form .form-error").await;
        if !text.is_empty() {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!refusal.contains('{') && !refusal.contains("error"), "a sentence, not JSON: {refusal}");
    login(&browser, &base, "admin@nexus.local", &password).await;

    // Import an egg from a file.
    browser.goto(&format!("{base}/admin/eggs")).await.unwrap();
    let egg = concat!(env!("CARGO_MANIFEST_DIR"), "/../egg-engine/tests/fixtures/egg-busybox-echo.json");
    let egg = std::fs::canonicalize(egg).unwrap();
    type_into(&browser, Locator::Id("egg-file"), egg.to_str().unwrap()).await;
    browser.find(Locator::Id("egg-import-submit")).await.unwrap().click().await.unwrap();
    wait_text(&browser, "#egg-imported", "Imported Busybox echo").await;

    // Create a server on it; a bad variable is shown next to that variable.
    browser.goto(&format!("{base}/admin/servers/new")).await.unwrap();
    let option = "//select[@id='server-egg']/option[text()='Busybox echo']";
    browser.wait().at_most(T).for_element(Locator::XPath(option)).await.unwrap().click().await.unwrap();
    browser.find(Locator::Id("server-name")).await.unwrap().send_keys("from the browser").await.unwrap();
    let players = browser.wait().at_most(T).for_element(Locator::Css("input[data-env=MAX_PLAYERS]")).await.unwrap();
    players.clear().await.unwrap();
    players.send_keys("500").await.unwrap();
    browser.find(Locator::Id("create-server")).await.unwrap().click().await.unwrap();
    wait_text(&browser, "[data-error-for=MAX_PLAYERS]", "MAX_PLAYERS").await;
    players.clear().await.unwrap();
    players.send_keys("8").await.unwrap();
    browser.find(Locator::Id("create-server")).await.unwrap().click().await.unwrap();
    let page = wait_path(&browser, "/server/").await;
    let server = page.trim_start_matches("/server/").to_owned();

    // Installed, then started from its button: the console shows the done line.
    wait_enabled(&browser, "#power-start").await;
    browser.find(Locator::Id("power-start")).await.unwrap().click().await.unwrap();
    wait_text(&browser, "#console", "hello on port 30430").await;
    wait_text(&browser, "#state", "running").await;
    let command = browser.find(Locator::Id("command")).await.unwrap();
    command.send_keys("hi from chromium\n").await.unwrap();
    wait_text(&browser, "#console", "echo: hi from chromium").await;
    // The live charts have had a sample (the node samples every few seconds).
    wait_text(&browser, "#mem-now", "MiB").await;
    screenshot(&browser, "server-page.png").await;

    // Edit server.properties in the file manager.
    browser.find(Locator::Id("tab-files")).await.unwrap().click().await.unwrap();
    let file = "//tbody[@id='file-rows']//button[text()='server.properties']";
    browser.wait().at_most(T).for_element(Locator::XPath(file)).await.unwrap().click().await.unwrap();
    let editor = browser.wait().at_most(T).for_element(Locator::Id("editor-text")).await.unwrap();
    wait_text(&browser, "#editor-name", "server.properties").await;
    editor.send_keys("\nedited-in=chromium").await.unwrap();
    browser.find(Locator::Id("editor-save")).await.unwrap().click().await.unwrap();
    wait_text(&browser, "#editor-save", "Saved").await;
    let (status, content) = api
        .call(reqwest::Method::GET, &format!("/api/v1/servers/{server}/files/contents?file=server.properties"), None)
        .await;
    assert_eq!(status, 200);
    assert!(content.as_str().unwrap().contains("edited-in=chromium"), "{content}");
    screenshot(&browser, "file-manager.png").await;

    // Stop from the button; the state follows.
    browser.find(Locator::Id("power-stop")).await.unwrap().click().await.unwrap();
    api.wait_state(&server, "stopped").await;
    wait_text(&browser, "#state", "stopped").await;

    browser.goto(&format!("{base}/admin")).await.unwrap();
    wait_text(&browser, "#nodes-online", "1").await;
    screenshot(&browser, "admin-overview.png").await;

    // Log out: the session is over, pages send you back to the login.
    browser.find(Locator::Id("logout")).await.unwrap().click().await.unwrap();
    wait_path(&browser, "/login").await;
    browser.goto(&format!("{base}/server/{server}")).await.unwrap();
    wait_path(&browser, "/login").await;
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_only_subuser_sees_no_power_and_no_files() {
    let (Some(driver_path), true) = (chromedriver(), common::docker_ready()) else { return };
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut up = Up::start_with_ports(&dir.path().join("data"), "30440-30449", "127.0.0.1:0");
    let password = up.password.clone().unwrap();
    let api = Client::login(&up.url, "admin@nexus.local", &password).await;
    let node = api.get("/api/v1/nodes").await["data"][0]["id"].as_str().unwrap().to_owned();
    up.node_containers = Some(format!("label={}={node}", nexus_agent::NODE_LABEL));

    // A server, and a user who may only use its console.
    let egg = api.get("/api/v1/eggs").await["data"][0]["id"].clone();
    let me = api.get("/api/v1/account").await["id"].clone();
    let (status, created) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/servers",
            Some(json!({ "name": "shared", "owner": me, "egg": egg, "limits": { "memory_mb": 128 } })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let server = created["server"]["id"].as_str().unwrap().to_owned();
    let (status, body) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/users",
            Some(json!({ "username": "helper", "email": "helper@example.com", "password": "a long helper password" })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = api
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/servers/{server}/users"),
            Some(json!({ "email": "helper@example.com", "permissions": ["control.console"] })),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let driver = Driver::start(&driver_path).await;
    let browser = driver.browser().await;
    let base = up.url.clone();
    login(&browser, &base, "helper@example.com", "a long helper password").await;
    wait_text(&browser, "#servers", "shared").await;
    browser.goto(&format!("{base}/server/{server}")).await.unwrap();
    browser.wait().at_most(T).for_element(Locator::Id("command-form")).await.expect("the console's command input");
    for absent in ["#power-start", "#power-stop", "#power-restart", "#power-kill", "#tab-files", "#tab-startup"] {
        assert!(browser.find(Locator::Css(absent)).await.is_err(), "{absent} is shown to a console-only subuser");
    }
    assert!(browser.find(Locator::Css("nav a[href='/admin']")).await.is_err(), "the admin link is shown to a user");
    screenshot(&browser, "subuser-console.png").await;
    // The routes behind the missing buttons refuse them too, from this very page.
    assert_eq!(
        fetch_status(&browser, "POST", &format!("/api/v1/servers/{server}/power"), Some(json!({"action":"start"})))
            .await,
        403
    );
    assert_eq!(fetch_status(&browser, "GET", &format!("/api/v1/servers/{server}/files"), None).await, 403);
    assert_eq!(
        fetch_status(&browser, "GET", &format!("/api/v1/servers/{server}/files/contents?file=server.properties"), None)
            .await,
        403
    );
    // The console's own route is theirs.
    assert_eq!(fetch_status(&browser, "GET", &format!("/api/v1/servers/{server}/websocket"), None).await, 200);
    // The file manager's page is not there for them, nor the admin's.
    browser.goto(&format!("{base}/server/{server}/files")).await.unwrap();
    wait_text(&browser, "h1", "Not found").await;
    assert!(browser.find(Locator::Id("file-manager")).await.is_err());
    browser.goto(&format!("{base}/admin")).await.unwrap();
    wait_text(&browser, "h1", "Not found").await;
    browser.close().await.unwrap();
}

/// Decodes RFC 4648 base32 (a TOTP secret as the panel shows it).
fn base32_decode(text: &str) -> Vec<u8> {
    let (mut bits, mut value, mut out) = (0u32, 0u64, Vec::new());
    for c in text.trim_end_matches('=').chars() {
        let v = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".find(c.to_ascii_uppercase()).expect("base32") as u64;
        value = (value << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((value >> bits) as u8);
        }
    }
    out
}

/// What a page weighs: its HTML and every resource it loaded, bytes as sent.
async fn page_weight(browser: &Browser) -> u64 {
    let weight = browser
        .execute(
            "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))
               .reduce((sum, e) => sum + (e.encodedBodySize || 0), 0);",
            vec![],
        )
        .await
        .unwrap();
    weight.as_u64().unwrap()
}

/// Script errors the page recorded (app.js keeps them).
async fn script_errors(browser: &Browser) -> Vec<String> {
    let errors = browser.execute("return window.nexusErrors || ['app.js did not load'];", vec![]).await.unwrap();
    serde_json::from_value(errors).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_works_is_small_and_fits_a_phone() {
    let (Some(driver_path), true) = (chromedriver(), common::docker_ready()) else { return };
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut up = Up::start_with_ports(&dir.path().join("data"), "30450-30459", "127.0.0.1:0");
    let password = up.password.clone().unwrap();
    let api = Client::login(&up.url, "admin@nexus.local", &password).await;
    let node = api.get("/api/v1/nodes").await["data"][0]["id"].as_str().unwrap().to_owned();
    up.node_containers = Some(format!("label={}={node}", nexus_agent::NODE_LABEL));
    let egg = api.import_busybox_egg().await;
    let me = api.get("/api/v1/account").await["id"].clone();
    let (status, created) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/servers",
            Some(json!({ "name": "pages", "owner": me, "egg": egg["id"], "limits": { "memory_mb": 128 } })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let server = created["server"]["id"].as_str().unwrap().to_owned();
    api.wait_state(&server, "installed").await;
    let (status, body) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/users",
            Some(json!({ "username": "friend", "email": "friend@example.com", "password": "a long friend password" })),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let driver = Driver::start(&driver_path).await;
    let browser = driver.browser().await;
    let base = up.url.clone();
    login(&browser, &base, "admin@nexus.local", &password).await;

    // Every page: it renders, its scripts raise nothing, and it weighs under 200 KB.
    let pages = [
        "/".to_owned(),
        format!("/server/{server}"),
        format!("/server/{server}/files"),
        format!("/server/{server}/startup"),
        format!("/server/{server}/schedules"),
        format!("/server/{server}/users"),
        format!("/server/{server}/activity"),
        format!("/server/{server}/settings"),
        "/account".to_owned(),
        "/admin".to_owned(),
        "/admin/nodes".to_owned(),
        format!("/admin/nodes/{node}"),
        "/admin/servers".to_owned(),
        "/admin/servers/new".to_owned(),
        "/admin/eggs".to_owned(),
        "/admin/users".to_owned(),
        "/admin/activity".to_owned(),
        "/admin/settings".to_owned(),
    ];
    for page in &pages {
        browser.goto(&format!("{base}{page}")).await.unwrap();
        browser
            .wait()
            .at_most(T)
            .for_element(Locator::Css("main h1"))
            .await
            .unwrap_or_else(|_| panic!("{page}: no heading"));
        tokio::time::sleep(Duration::from_millis(700)).await; // its API calls
        assert_eq!(script_errors(&browser).await, Vec::<String>::new(), "{page}: script errors");
        let weight = page_weight(&browser).await;
        assert!(weight > 0 && weight < 200 * 1024, "{page} weighs {weight} bytes");
        let text = text_of(&browser, "main").await;
        assert!(!text.contains("{\"") && !text.contains("[object"), "{page} shows raw data: {text}");
    }

    // Startup variables: a value the egg's rules refuse is explained next to it.
    browser.goto(&format!("{base}/server/{server}/startup")).await.unwrap();
    let players = browser.wait().at_most(T).for_element(Locator::Css("input[data-env=MAX_PLAYERS]")).await.unwrap();
    players.clear().await.unwrap();
    players.send_keys("500").await.unwrap();
    browser.find(Locator::Id("startup-save")).await.unwrap().click().await.unwrap();
    wait_text(&browser, "[data-error-for=MAX_PLAYERS]", "MAX_PLAYERS").await;
    players.clear().await.unwrap();
    players.send_keys("12").await.unwrap();
    browser.find(Locator::Id("startup-save")).await.unwrap().click().await.unwrap();
    browser.wait().at_most(T).for_element(Locator::Css("#startup-saved:not([hidden])")).await.unwrap();
    assert_eq!(api.get(&format!("/api/v1/servers/{server}/startup")).await["variables"][1]["value"], "12");

    // A schedule: created from the form, run now, its result shown.
    browser.goto(&format!("{base}/server/{server}/schedules")).await.unwrap();
    type_into(&browser, Locator::Id("schedule-name"), "nightly").await;
    browser.find(Locator::Css("[data-task=payload]")).await.unwrap().send_keys("say nightly").await.unwrap();
    browser.find(Locator::Id("schedule-save")).await.unwrap().click().await.unwrap();
    wait_text(&browser, "#schedule-rows", "nightly").await;
    browser
        .find(Locator::XPath("//tr[@data-schedule='nightly']//button[text()='Run now']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let deadline = Instant::now() + T;
    loop {
        let row = text_of(&browser, "tr[data-schedule=nightly]").await;
        if !row.contains("never ran") {
            // The server is stopped: the command task fails, and says so in words.
            assert!(row.contains("failed") || row.contains("ok"), "{row}");
            break;
        }
        assert!(Instant::now() < deadline, "no result shown: {row}");
        browser.refresh().await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // A subuser added with permission checkboxes.
    browser.goto(&format!("{base}/server/{server}/users")).await.unwrap();
    browser.wait().at_most(T).for_element(Locator::Id("subuser-add")).await.unwrap().click().await.unwrap();
    browser.find(Locator::Id("subuser-email")).await.unwrap().send_keys("friend@example.com").await.unwrap();
    for permission in ["control.console", "file.read"] {
        browser.find(Locator::Css(&format!("input[value='{permission}']"))).await.unwrap().click().await.unwrap();
    }
    browser.find(Locator::Id("subuser-save")).await.unwrap().click().await.unwrap();
    wait_text(&browser, "#subusers", "friend").await;
    let subusers = api.get(&format!("/api/v1/servers/{server}/users")).await;
    assert_eq!(subusers[0]["permissions"], json!(["control.console", "file.read"]), "{subusers}");
    // Their file access works, and ends while the server is suspended (admins keep it).
    let friend = Client::login(&base, "friend@example.com", "a long friend password").await;
    let files = format!("/api/v1/servers/{server}/files");
    assert_eq!(friend.call(reqwest::Method::GET, &files, None).await.0, 200);
    // With the activity, a subuser sees who did what, but not an administrator's name or
    // anyone else's address.
    let (status, body) = api
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/servers/{server}/users/{}", subusers[0]["user"]["id"].as_str().unwrap()),
            Some(json!({ "permissions": ["control.console", "file.read", "activity.read"] })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let seen = friend.get(&format!("/api/v1/servers/{server}/activity")).await;
    let entries = seen["data"].as_array().unwrap();
    assert!(!entries.is_empty());
    for entry in entries {
        assert!(entry["ip"].is_null(), "{entry}");
        assert_ne!(entry["actor_name"], "admin", "{entry}");
    }
    assert!(entries.iter().any(|e| e["actor_name"] == "an administrator"), "{seen}");
    let all = api.get(&format!("/api/v1/servers/{server}/activity")).await;
    assert!(all["data"].as_array().unwrap().iter().any(|e| e["actor_name"] == "admin" && e["ip"].is_string()), "{all}");
    assert_eq!(api.call(reqwest::Method::POST, &format!("/api/v1/servers/{server}/suspend"), None).await.0, 200);
    let (status, error) = friend.call(reqwest::Method::GET, &files, None).await;
    assert_eq!((status, error["error"]["code"].as_str()), (409, Some("suspended")), "{error}");
    assert_eq!(api.call(reqwest::Method::GET, &files, None).await.0, 200, "an admin still reads them");
    assert_eq!(api.call(reqwest::Method::POST, &format!("/api/v1/servers/{server}/unsuspend"), None).await.0, 200);
    assert_eq!(friend.call(reqwest::Method::GET, &files, None).await.0, 200);

    // A phone's width: nothing wider than the screen on the server and file pages.
    browser.set_window_size(390, 844).await.unwrap();
    for page in [format!("/server/{server}"), format!("/server/{server}/files"), "/".to_owned()] {
        browser.goto(&format!("{base}{page}")).await.unwrap();
        browser.wait().at_most(T).for_element(Locator::Css("main h1")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let overflow =
            browser.execute("return document.documentElement.scrollWidth - window.innerWidth;", vec![]).await.unwrap();
        assert!(overflow.as_i64().unwrap() <= 0, "{page} is wider than a phone by {overflow} px");
    }
    screenshot(&browser, "server-page-phone.png").await;
    browser.set_window_size(1280, 900).await.unwrap();

    // Two-factor: set up from the account page, then the login asks for a code (a recovery
    // code here: the code just used cannot be used twice).
    browser.goto(&format!("{base}/account")).await.unwrap();
    browser.wait().at_most(T).for_element(Locator::Id("totp-begin")).await.unwrap().click().await.unwrap();
    wait_text(&browser, "#totp-secret", "").await;
    let secret = loop {
        let text = text_of(&browser, "#totp-secret").await;
        if !text.is_empty() {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let code = nexus_control::totp::code_at(&base32_decode(&secret), nexus_control::totp::current_step());
    browser.find(Locator::Css("#totp-enable-form input[name=code]")).await.unwrap().send_keys(&code).await.unwrap();
    browser.find(Locator::Css("#totp-enable-form button")).await.unwrap().click().await.unwrap();
    wait_text(&browser, "#recovery-codes", "").await;
    browser.wait().at_most(T).for_element(Locator::Css("#recovery-codes li")).await.unwrap();
    let recovery = browser.find(Locator::Css("#recovery-codes li")).await.unwrap().text().await.unwrap();
    browser.find(Locator::Id("logout")).await.unwrap().click().await.unwrap();
    wait_path(&browser, "/login").await;
    type_into(&browser, Locator::Id("login"), "admin@nexus.local").await;
    browser.find(Locator::Id("password")).await.unwrap().send_keys(&password).await.unwrap();
    browser.find(Locator::Id("login-submit")).await.unwrap().click().await.unwrap();
    let field =
        browser.wait().at_most(T).for_element(Locator::Css("#totp-form:not([hidden]) #totp-code")).await.unwrap();
    field.send_keys(recovery.trim()).await.unwrap();
    browser.find(Locator::Id("totp-submit")).await.unwrap().click().await.unwrap();
    browser.wait().at_most(T).for_element(Locator::Id("servers")).await.expect("logged in with the second factor");

    // A wrong current password is explained next to its field; the session stays.
    browser.goto(&format!("{base}/account")).await.unwrap();
    let current = browser.wait().at_most(T).for_element(Locator::Css("input[name=current_password]")).await.unwrap();
    current.send_keys("not my password").await.unwrap();
    browser
        .find(Locator::Css("input[name=new_password]"))
        .await
        .unwrap()
        .send_keys("another long password")
        .await
        .unwrap();
    browser.find(Locator::XPath("//button[text()='Change password']")).await.unwrap().click().await.unwrap();
    wait_text(&browser, "[data-error-for=current_password]", "wrong").await;
    assert_eq!(browser.current_url().await.unwrap().path(), "/account");
    browser.close().await.unwrap();
}
