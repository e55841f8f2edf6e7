//! End-to-end tests: real eggs' `config.files` blocks applied to realistic config files, the
//! public error cases, and property tests (idempotence, untouched lines).

use super::*;
use crate::test_support::{DAEMON_STACK, SMALL_STACK, on_stack};
use nexus_core::model::FindValue;
use proptest::prelude::*;
use std::net::SocketAddr;

const EGGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/eggs/");

/// The `config.files` entry `path` of an egg file, read the way the egg formats store it
/// (a JSON-encoded string in `PTDL_v2`, a native map in `PLCN_v3` YAML).
fn egg_config(egg: &str, path: &str) -> ConfigFile {
    let source = std::fs::read_to_string(format!("{EGGS}{egg}")).unwrap();
    let egg: serde_json::Value = if egg.ends_with(".json") {
        serde_json::from_str(&source).unwrap()
    } else {
        yaml_serde::from_str(&source).unwrap()
    };
    let files = match &egg["config"]["files"] {
        serde_json::Value::String(encoded) => serde_json::from_str(encoded).unwrap(),
        native => native.clone(),
    };
    let entry = &files[path];
    let parser = ConfigParser::from_name(entry["parser"].as_str().unwrap()).unwrap();
    let find = entry["find"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, value)| {
            let value = match value {
                serde_json::Value::String(text) => FindValue::Text(text.clone()),
                serde_json::Value::Object(rules) => FindValue::Match(
                    rules.iter().map(|(pattern, with)| (pattern.clone(), with.as_str().unwrap().to_owned())).collect(),
                ),
                scalar => FindValue::Scalar(scalar.clone()),
            };
            (key.clone(), value)
        })
        .collect();
    ConfigFile { path: path.to_owned(), parser, find }
}

fn ctx() -> ConfigContext {
    ConfigContext::new("203.0.113.7:25600".parse::<SocketAddr>().unwrap(), 4096)
        .with_node_config([("docker.interface", "172.18.0.1")])
}

/// Builds expected outputs: each edit must hit exactly one place of the original.
trait ExpectEdit {
    fn edited(&self, from: &str, to: &str) -> String;
}

impl ExpectEdit for str {
    fn edited(&self, from: &str, to: &str) -> String {
        assert_eq!(self.matches(from).count(), 1, "`{from}` should occur exactly once");
        self.replacen(from, to, 1)
    }
}

fn crlf(text: &str) -> String {
    text.replace('\n', "\r\n")
}

// ----- one test per parser, driven by real eggs -----

const SERVER_PROPERTIES: &str = "#Minecraft server properties
#Sat Jun 01 12:00:00 UTC 2024
accepts-transfers=false
allow-flight=false
difficulty=easy
enable-query=false
gamemode=survival
level-name=world
max-players=20
motd=A Minecraft Server
query.port=25565
rcon.port=25575
server-ip=
server-port=25565
view-distance=10
";

#[test]
fn properties_paper_egg() {
    let file = egg_config("pterodactyl__database__Seeders__eggs__minecraft__egg-paper.json", "server.properties");
    let out = apply(&file, SERVER_PROPERTIES, &ctx()).unwrap();
    let expected = SERVER_PROPERTIES
        .edited("query.port=25565", "query.port=25600")
        .edited("server-ip=\n", "server-ip=0.0.0.0\n")
        .edited("server-port=25565", "server-port=25600");
    assert_eq!(out, expected);
    assert_eq!(apply(&file, &out, &ctx()).unwrap(), out, "idempotent");
}

#[test]
fn properties_pelican_paper_egg_on_crlf_file_without_final_newline() {
    let file = egg_config("pelican-eggs__minecraft__java__paper__egg-paper.yaml", "server.properties");
    // No `query.port` yet: it is appended, with the file's CRLF, and still no final newline.
    let original = crlf("#Minecraft server properties\nserver-ip=0.0.0.0\nserver-port=25565\nmotd=\\u00A7aHi");
    let out = apply(&file, &original, &ctx()).unwrap();
    let expected =
        crlf("#Minecraft server properties\nserver-ip=\nserver-port=25600\nmotd=\\u00A7aHi\nquery.port=25600");
    assert_eq!(out, expected);
}

const BUNGEE_CONFIG: &str = "server_connect_timeout: 5000
remote_ping_cache: -1
forge_support: false
player_limit: -1
permissions:
  default:
  - bungeecord.command.server
  - bungeecord.command.list
  admin:
  - bungeecord.command.alert
  - bungeecord.command.reload
timeout: 30000
# Servers behind this proxy; addresses are rewritten by the panel.
servers:
  lobby:
    motd: '&1Just another BungeeCord - Forced Host'
    address: localhost:25565
    restricted: false
  survival:
    motd: '&1Survival'
    address: 127.0.0.1:25566  # same host
    restricted: false
  remote:
    motd: '&1Remote'
    address: 10.0.5.3:25565
    restricted: false
listeners:
- query_port: 25577
  motd: '&1Another Bungee server'
  tab_list: GLOBAL_PING
  query_enabled: false
  forced_hosts:
    pvp.md-5.net: pvp
  priorities:
  - lobby
  bind_local_address: true
  host: 0.0.0.0:25577
  max_players: 1
ip_forward: false
stats: 2b0e1ef4-7d1c-4a0e-9b1c-7f2a58e1a001
";

#[test]
fn yaml_bungeecord_egg_with_regex_rules() {
    let file = egg_config("pterodactyl__database__Seeders__eggs__minecraft__egg-bungeecord.json", "config.yml");
    let out = apply(&file, BUNGEE_CONFIG, &ctx()).unwrap();
    let expected = BUNGEE_CONFIG
        .edited("- query_port: 25577", "- query_port: 25600")
        .edited("host: 0.0.0.0:25577", "host: 0.0.0.0:25600")
        .edited("address: localhost:25565", "address: 172.18.0.1:25565")
        .edited("address: 127.0.0.1:25566  # same host", "address: 172.18.0.1:25566  # same host");
    assert_eq!(out, expected);
    assert_eq!(apply(&file, &out, &ctx()).unwrap(), out, "idempotent");
    let parsed: yaml_serde::Value = yaml_serde::from_str(&out).unwrap();
    assert_eq!(parsed["listeners"][0]["query_port"], yaml_serde::Value::from(25600));
}

#[test]
fn yaml_waterfall_egg_with_literal_rules_on_crlf() {
    let file = egg_config("parkervcp__game_eggs__minecraft__proxy__java__waterfall__egg-waterfall.json", "config.yml");
    let original = crlf(
        "servers:\n  lobby:\n    address: localhost\n  pvp:\n    address: 127.0.0.1:25566\nlisteners:\n- host: 0.0.0.0:25577\n  query_port: 25577\n",
    );
    let out = apply(&file, &original, &ctx()).unwrap();
    // Literal rules replace whole values only: `127.0.0.1:25566` is not `127.0.0.1`.
    let expected =
        original.edited("address: localhost", "address: 172.18.0.1").edited("0.0.0.0:25577", "0.0.0.0:25600");
    assert_eq!(out, expected);
}

const MURMUR_INI: &str = "; Murmur configuration file.
;
; * Make sure to quote the value when using commas in strings or passwords.
;    NOT variable = super,secret BUT variable = \"super,secret\"

; Path to database. If blank, will search for
; murmur.sqlite in default locations or create it if not found.
database=

;dbus=session

ice=\"tcp -h 127.0.0.1 -p 6502\"

; Welcome message sent to clients when they connect.
welcometext=\"<br />Welcome to this server running <b>Murmur</b>.<br />Enjoy your stay!<br />\"

; Port to bind TCP and UDP sockets to.
port=64738

; Specific IP or hostname to bind to.
;host=

; Maximum number of concurrent clients allowed.
users=100

;certrequired=False

[Ice]
Ice.Warn.UnknownProperties=1
Ice.MessageSizeMax=65536
";

#[test]
fn ini_mumble_egg_adds_missing_keys_before_the_first_section() {
    let file = egg_config("pelican-eggs__voice__mumble__egg-mumble-server.yaml", "murmur.ini");
    let ctx = ctx().with_environment([("MAX_USERS", "50")]);
    let out = apply(&file, MURMUR_INI, &ctx).unwrap();
    let expected = MURMUR_INI
        .edited("database=\n", "database=/home/container/murmur.sqlite\n")
        .edited("port=64738", "port=25600")
        .edited("users=100\n", "users=50\nlogfile=/home/container/murmur.log\nhost=\n");
    assert_eq!(out, expected);
    assert_eq!(apply(&file, &out, &ctx).unwrap(), out, "idempotent");
}

#[test]
fn ini_openttd_egg_with_a_scalar_value() {
    let file = egg_config("parkervcp__game_eggs__tycoon_games__openttd__egg-open-t-t-d-server.json", "openttd.cfg");
    let ctx = ctx().with_environment([("srv_name", "Nexus Transport; Co"), ("srv_advertise", "true")]);
    let original = crlf(
        "[misc]\ndisplay_opt = SHOW_TOWN_NAMES|SHOW_STATION_NAMES\nsave_mode = 0\n\n[network]\nserver_port = 3979\nserver_admin_port = 3977\nserver_name = Unnamed Server\nlan_internet = 1\nserver_advertise = false\n\n[ai_players]\n",
    );
    let out = apply(&file, &original, &ctx).unwrap();
    let expected = original
        .edited("server_port = 3979", "server_port = 25600")
        .edited("server_name = Unnamed Server", "server_name = Nexus Transport; Co")
        .edited("lan_internet = 1", "lan_internet = 0")
        .edited("server_advertise = false", "server_advertise = true");
    assert_eq!(out, expected);
}

const FACTORIO_SETTINGS: &str = r#"{
  "name": "Name of the game as it will appear in the game listing",
  "description": "Description of the game that will appear in the listing",
  "tags": ["game", "tags"],

  "_comment_max_players": "Maximum number of players allowed, admins can join even a full server. 0 means unlimited.",
  "max_players": 0,

  "_comment_visibility": ["public: Game will be published on the official Factorio matching server",
                          "lan: Game will be broadcast on LAN"],
  "visibility":
  {
    "public": true,
    "lan": true
  },

  "_comment_credentials": "Your factorio.com login credentials. Required for games with visibility public",
  "username": "",
  "password": "",

  "_comment_token": "Authentication token. May be used instead of 'password' above.",
  "token": "",

  "require_user_verification": true,

  "_comment_autosave_interval": "Autosave interval in minutes",
  "autosave_interval": 10,

  "_comment_autosave_slots": "server autosave slots, it is cycled through when the server autosaves.",
  "autosave_slots": 5,

  "_comment_afk_autokick_interval": "How many minutes until someone is kicked when doing nothing, 0 for never.",
  "afk_autokick_interval": 0,

  "auto_pause": true
}
"#;

#[test]
fn json_factorio_egg_keeps_types_and_layout() {
    let file = egg_config(
        "pelican-eggs__games-standalone__factorio__factorio__egg-factorio.yaml",
        "data/server-settings.json",
    );
    let ctx = ctx().with_environment([
        ("SERVER_NAME", "Nexus Factory"),
        ("SERVER_DESC", "The factory \"must\" grow\\"),
        ("MAX_SLOTS", "20"),
        ("SERVER_USERNAME", "12345"),
        ("SERVER_TOKEN", "abc"),
        ("SAVE_INTERVAL", "15"),
        ("SAVE_SLOTS", "3"),
        ("AFK_KICK", "0"),
        ("SERVER_PASSWORD", "p@ss"),
    ]);
    let out = apply(&file, FACTORIO_SETTINGS, &ctx).unwrap();
    let expected = FACTORIO_SETTINGS
        .edited("\"Name of the game as it will appear in the game listing\"", "\"Nexus Factory\"")
        .edited("\"Description of the game that will appear in the listing\"", r#""The factory \"must\" grow\\""#)
        .edited("\"max_players\": 0", "\"max_players\": 20")
        // A string stays a string even when the text is a number.
        .edited("\"username\": \"\"", "\"username\": \"12345\"")
        .edited("\"token\": \"\"", "\"token\": \"abc\"")
        .edited("\"autosave_interval\": 10", "\"autosave_interval\": 15")
        .edited("\"autosave_slots\": 5", "\"autosave_slots\": 3")
        // `game_password` is missing: added after the last member, in the file's style.
        .edited("\"auto_pause\": true\n", "\"auto_pause\": true,\n  \"game_password\": \"p@ss\"\n");
    assert_eq!(out, expected);
    let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(parsed["description"], "The factory \"must\" grow\\");
    assert_eq!(apply(&file, &out, &ctx).unwrap(), out, "idempotent");
}

#[test]
fn json_impostor_egg_nested_keys() {
    let file = egg_config(
        "parkervcp__game_eggs__among_us__impostor_server__egg-among-us--impostor-server.json",
        "config.json",
    );
    let original = crlf(
        "{\n  \"Server\": {\n    \"PublicIp\": \"127.0.0.1\",\n    \"PublicPort\": 22023,\n    \"ListenIp\": \"0.0.0.0\",\n    \"ListenPort\": 22023\n  },\n  \"AntiCheat\": {\n    \"Enabled\": true\n  }\n}",
    );
    let out = apply(&file, &original, &ctx()).unwrap();
    let expected = original
        .edited("\"PublicPort\": 22023", "\"PublicPort\": 25600")
        .edited("\"ListenPort\": 22023", "\"ListenPort\": 25600");
    assert_eq!(out, expected);
}

const SPACE_ENGINEERS_CFG: &str = "\u{feff}<?xml version=\"1.0\"?>
<MyConfigDedicated xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">
  <SessionSettings>
    <GameMode>Survival</GameMode>
    <InventorySizeMultiplier>3</InventorySizeMultiplier>
    <MaxPlayers>4</MaxPlayers>
    <AutoSaveInMinutes>5</AutoSaveInMinutes>
    <EnableSaving>true</EnableSaving>
    <ExperimentalMode>false</ExperimentalMode>
    <EnableIngameScripts>false</EnableIngameScripts>
  </SessionSettings>
  <!-- Written by the dedicated server -->
  <LoadWorld />
  <IP>0.0.0.0</IP>
  <SteamPort>8766</SteamPort>
  <ServerPort>27016</ServerPort>
  <Administrators />
  <ServerName>SE Server</ServerName>
  <WorldName>My World</WorldName>
  <ServerDescription />
  <RemoteApiEnabled>true</RemoteApiEnabled>
  <RemoteSecurityKey>kHRhKbVCkf5x8aNEjE4Wbw==</RemoteSecurityKey>
  <RemoteApiPort>8080</RemoteApiPort>
</MyConfigDedicated>
";

#[test]
fn xml_space_engineers_egg_with_bom_and_crlf() {
    let file = egg_config(
        "parkervcp__game_eggs__steamcmd_servers__space_engineers__default__egg-space-engineers.json",
        "config/SpaceEngineers-Dedicated.cfg",
    );
    let ctx = ctx().with_environment([
        ("SERVER_MODE", "Creative"),
        ("MAX_PLAYERS", "16"),
        ("SAVE_INTERVAL", "10"),
        ("SAVE_ENABLED", "true"),
        ("EXPERIMENTAL_ENABLED", "true"),
        ("INGAMESCRIPTS_ENABLED", "false"),
        ("WORLD_NAME", "Star System"),
        ("STEAM_PORT", "8767"),
        ("SERVER_NAME", "Nexus & <Friends>"),
        ("SERVER_DESC", ""),
        ("REMOTEAPI_ENABLE", "false"),
        ("REMOTEAPI_PORT", "8081"),
    ]);
    let original = crlf(SPACE_ENGINEERS_CFG);
    let out = apply(&file, &original, &ctx).unwrap();
    let expected = original
        .edited("<GameMode>Survival<", "<GameMode>Creative<")
        .edited("<MaxPlayers>4<", "<MaxPlayers>16<")
        .edited("<AutoSaveInMinutes>5<", "<AutoSaveInMinutes>10<")
        .edited("<ExperimentalMode>false<", "<ExperimentalMode>true<")
        .edited("<LoadWorld />", "<LoadWorld>Z:\\home\\container\\config\\Saves\\Star System\\Sandbox.sbc</LoadWorld>")
        .edited("<SteamPort>8766<", "<SteamPort>8767<")
        .edited("<ServerPort>27016<", "<ServerPort>25600<")
        .edited("<ServerName>SE Server<", "<ServerName>Nexus &amp; &lt;Friends&gt;<")
        .edited("<WorldName>My World<", "<WorldName>Star System<")
        .edited("<RemoteApiEnabled>true<", "<RemoteApiEnabled>false<")
        .edited("<RemoteApiPort>8080<", "<RemoteApiPort>8081<");
    assert_eq!(out, expected);
    assert!(out.starts_with('\u{feff}'));
    assert_eq!(apply(&file, &out, &ctx).unwrap(), out, "idempotent");
}

#[test]
fn file_rust_egg_replaces_prefixed_lines_only() {
    let file = egg_config("pelican-eggs__games-steamcmd__rust__vanilla__egg-rust.yaml", "server/rust/cfg/server.cfg");
    let ctx = ctx().with_environment([
        ("SERVER_HOSTNAME", "Nexus | Monthly"),
        ("DESCRIPTION", "Wipes monthly"),
        ("SERVER_URL", "https://example.org"),
        ("SERVER_IMG", ""),
        ("SERVER_LOGO", ""),
        ("LEVEL", "Procedural Map"),
        ("WORLD_SIZE", "3500"),
        ("WORLD_SEED", "42"),
        ("SERVER_TAGS", "monthly,vanilla"),
        ("MAP_URL", ""),
    ]);
    let original = crlf(
        "server.hostname \"Old Name\"\nserver.description \"Old description\"\nserver.url \"https://example.com\"\nserver.headerimage \"\"\nserver.worldsize 3000\nserver.seed 12345\nserver.maxplayers 50\n// a comment mentioning server.seed 1\nserver.tags \"weekly\"",
    );
    let out = apply(&file, &original, &ctx).unwrap();
    let expected = crlf(
        "server.hostname \"Nexus | Monthly\"\nserver.description \"Wipes monthly\"\nserver.url \"https://example.org\"\nserver.headerimage \"\"\nserver.worldsize 3500\nserver.seed 42\nserver.maxplayers 50\n// a comment mentioning server.seed 1\nserver.tags \"monthly,vanilla\"",
    );
    assert_eq!(out, expected);
}

const VELOCITY_TOML: &str = "# Config version. Do not change this
config-version = \"2.7\"

# What port should the proxy be bound to? By default, we'll bind to all addresses on port 25565.
bind = \"0.0.0.0:25577\"

# What should be the MOTD? Only MiniMessage format is accepted.
motd = \"<#09add3>A Velocity Server\"

# What should we display for the maximum number of players?
show-max-players = 500

online-mode = true
player-info-forwarding-mode = \"NONE\"

[servers]
# Each key represents the server's name, and the value the address of the server to connect to.
lobby = \"127.0.0.1:30066\"
factions = \"localhost\"
minigames = \"10.0.0.7:30068\"

# In what order we should try servers when a player logs in or is kicked from a server.
try = [
    \"lobby\"
]

[forced-hosts]
\"lobby.example.com\" = [
    \"lobby\"
]

[advanced]
# How large a Minecraft packet has to be before we compress it.
compression-threshold = 256 # bytes

[query]
# Whether to enable responding to GameSpy 4 queries or not.
enabled = false

# If query is enabled, on what port should the query protocol listen on?
port = 25577
";

#[test]
fn toml_velocity_config() {
    let rule = r"regex:^(127\.0\.0\.1|localhost)(:\d{1,5})?$";
    let file = ConfigFile {
        path: "velocity.toml".to_owned(),
        parser: ConfigParser::Toml,
        find: vec![
            ("bind".into(), FindValue::Text("0.0.0.0:{{server.build.default.port}}".into())),
            ("show-max-players".into(), FindValue::Text("{{env.MAX_PLAYERS}}".into())),
            ("servers.*".into(), FindValue::Match(vec![(rule.into(), "{{config.docker.interface}}$2".into())])),
            ("advanced.compression-threshold".into(), FindValue::Scalar(serde_json::json!(512))),
            ("advanced.login-ratelimit".into(), FindValue::Scalar(serde_json::json!(3000))),
            ("query.enabled".into(), FindValue::Scalar(serde_json::json!(true))),
            ("query.port".into(), FindValue::Text("{{server.allocations.default.port}}".into())),
        ],
    };
    let ctx = ctx().with_environment([("MAX_PLAYERS", "64")]);
    let original = crlf(VELOCITY_TOML);
    let out = apply(&file, &original, &ctx).unwrap();
    let expected = original
        .edited("bind = \"0.0.0.0:25577\"", "bind = \"0.0.0.0:25600\"")
        .edited("show-max-players = 500", "show-max-players = 64")
        .edited("lobby = \"127.0.0.1:30066\"", "lobby = \"172.18.0.1:30066\"")
        .edited("factions = \"localhost\"", "factions = \"172.18.0.1\"")
        .edited(
            "compression-threshold = 256 # bytes\r\n",
            "compression-threshold = 512 # bytes\r\nlogin-ratelimit = 3000\r\n",
        )
        .edited("enabled = false", "enabled = true")
        .edited("port = 25577", "port = 25600");
    assert_eq!(out, expected);
    assert_eq!(apply(&file, &out, &ctx).unwrap(), out, "idempotent");
}

// ----- errors -----

fn text_file(path: &str, parser: ConfigParser, key: &str, value: &str) -> ConfigFile {
    ConfigFile { path: path.to_owned(), parser, find: vec![(key.to_owned(), FindValue::Text(value.to_owned()))] }
}

#[test]
fn malformed_originals_name_the_file_and_write_nothing() {
    let cases = [
        (ConfigParser::Json, "{\"a\": }"),
        (ConfigParser::Yaml, "a: [1, 2\nb: 1\n"),
        (ConfigParser::Xml, "<a><b></a>"),
        (ConfigParser::Toml, "a = = 1\n"),
        (ConfigParser::Ini, "[Server\nPorts=1\n"),
        (ConfigParser::Properties, "a=\\u12\n"),
    ];
    for (parser, original) in cases {
        let file = text_file("cfg/server.conf", parser, "a", "1");
        match apply(&file, original, &ctx()) {
            Err(ConfigError::Malformed { path, parser: name, .. }) => {
                assert_eq!(path, "cfg/server.conf");
                assert_eq!(name, parser.as_str());
            }
            other => panic!("{parser:?}: expected Malformed, got {other:?}"),
        }
    }
}

#[test]
fn unknown_placeholders_never_fail_the_file() {
    // Found on a real egg: `{{server.build.nope}}` failed the whole start; the panel writes
    // empty text for unknown `server.` names and leaves other names as written.
    let file = ConfigFile {
        path: "server.properties".into(),
        parser: ConfigParser::Properties,
        find: vec![
            ("server-port".into(), FindValue::Text("{{server.build.nope}}".into())),
            ("motd".into(), FindValue::Text("{{MOTD}} on {{server.build.default.port}}".into())),
        ],
    };
    let out = apply(
        &file,
        "server-port=1
motd=x
",
        &ctx(),
    )
    .unwrap();
    assert_eq!(out, "server-port=\nmotd={{MOTD}} on 25600\n");
}

#[test]
fn bad_regex_in_a_match_key_is_an_error() {
    let file = ConfigFile {
        path: "config.yml".into(),
        parser: ConfigParser::Yaml,
        find: vec![("servers.*.address".into(), FindValue::Match(vec![("regex:(127\\.0".into(), "x".into())]))],
    };
    let error = apply(&file, "servers: {}\n", &ctx()).unwrap_err();
    assert!(
        matches!(&error, ConfigError::InvalidRegex { path, key, pattern, .. }
            if path == "config.yml" && key == "servers.*.address" && pattern == "(127\\.0"),
        "{error:?}"
    );
}

#[test]
fn unlocatable_keys_are_errors() {
    let flow = text_file("config.yml", ConfigParser::Yaml, "servers.lobby", "x");
    assert!(matches!(apply(&flow, "servers: {lobby: a}\n", &ctx()), Err(ConfigError::CannotPatch { .. })));
    let bad_key = text_file("config.json", ConfigParser::Json, "a[x]", "1");
    assert!(matches!(apply(&bad_key, "{}", &ctx()), Err(ConfigError::InvalidKey { .. })));
}

// ----- hostile input -----

fn parser_files() -> [(ConfigParser, &'static str); 7] {
    [
        (ConfigParser::Json, "a"),
        (ConfigParser::Yaml, "a"),
        (ConfigParser::Toml, "a"),
        (ConfigParser::Xml, "r.a"),
        (ConfigParser::Ini, "s.a"),
        (ConfigParser::Properties, "a"),
        (ConfigParser::File, "a"),
    ]
}

/// 100,000 levels: the YAML cases (200 KB) took over 40 seconds in libyaml before its depth
/// was measured; the others overflowed the stack or were refused as malformed.
#[test]
fn deeply_nested_files_are_refused_without_recursion() {
    const DEEP: usize = 100_000;
    let cases = [
        (ConfigParser::Json, "[".repeat(DEEP)),
        (ConfigParser::Json, format!("{}1{}", "{\"a\": ".repeat(DEEP), "}".repeat(DEEP))),
        (ConfigParser::Yaml, format!("a: {}{}\n", "[".repeat(DEEP), "]".repeat(DEEP))),
        (ConfigParser::Yaml, "{\"\":[".repeat(DEEP / 2)),
        (ConfigParser::Yaml, format!("{}x\n", "- ".repeat(DEEP))),
        (ConfigParser::Yaml, format!("{}x\n", "- a: ".repeat(DEEP))),
        (ConfigParser::Toml, format!("a = {}{}\n", "[".repeat(DEEP), "]".repeat(DEEP))),
        (ConfigParser::Toml, format!("a = {}1{}\n", "{b = ".repeat(DEEP), "}".repeat(DEEP))),
        (ConfigParser::Xml, format!("{}{}", "<a>".repeat(DEEP), "</a>".repeat(DEEP))),
        (ConfigParser::Xml, format!("<r>{}</r>", "<a>".repeat(DEEP))),
    ];
    for (parser, original) in cases {
        let result = on_stack(SMALL_STACK, move || {
            let file = text_file("cfg/deep", parser, "a", "1");
            apply(&file, &original, &ctx())
        });
        match result {
            Err(ConfigError::TooDeep { path, parser: name, limit, .. }) => {
                assert_eq!((path.as_str(), name, limit), ("cfg/deep", parser.as_str(), MAX_DEPTH));
            }
            other => panic!("{parser:?}: expected TooDeep, got {other:?}"),
        }
    }
}

#[test]
fn nesting_up_to_the_limit_is_accepted_within_the_daemon_s_stack() {
    let depth = MAX_DEPTH;
    let cases = move |depth: usize| {
        [
            (ConfigParser::Json, format!("{{\"a\": 1, \"b\": {}{}}}", "[".repeat(depth - 1), "]".repeat(depth - 1))),
            (ConfigParser::Yaml, format!("a: 1\nb: {}{}\n", "[".repeat(depth - 1), "]".repeat(depth - 1))),
            (ConfigParser::Yaml, format!("a: 1\nb:\n  {}x\n", "- ".repeat(depth - 1))),
            (ConfigParser::Toml, format!("a = 1\nb = {}{}\n", "[".repeat(depth), "]".repeat(depth))),
            (ConfigParser::Xml, format!("<a>1</a>{}{}", "<b>".repeat(depth - 1), "</b>".repeat(depth - 1))),
        ]
    };
    for ((parser, at_limit), (_, over)) in cases(depth).into_iter().zip(cases(depth + 1)) {
        let (at_limit, over) = on_stack(DAEMON_STACK, move || {
            let file = text_file("cfg", parser, "a", "2");
            let xml = |text: String| if parser == ConfigParser::Xml { format!("<r>{text}</r>") } else { text };
            let key = if parser == ConfigParser::Xml { "r.a" } else { "a" };
            let file = ConfigFile { find: vec![(key.to_owned(), FindValue::Text("2".into()))], ..file };
            (apply(&file, &xml(at_limit), &ctx()), apply(&file, &xml(over), &ctx()))
        });
        assert!(at_limit.is_ok(), "{parser:?}: {at_limit:?}");
        assert!(matches!(over, Err(ConfigError::TooDeep { .. })), "{parser:?}: {over:?}");
    }
}

#[test]
fn oversized_files_are_refused_before_parsing() {
    let original = "#".repeat(MAX_CONFIG_BYTES + 1);
    for (parser, key) in parser_files() {
        let file = text_file("big.cfg", parser, key, "1");
        assert_eq!(
            apply(&file, &original, &ctx()),
            Err(ConfigError::TooLarge { path: "big.cfg".into(), size: MAX_CONFIG_BYTES + 1, limit: MAX_CONFIG_BYTES })
        );
    }
}

#[test]
fn eggs_with_too_many_keys_for_a_file_are_refused() {
    let find = (0..=MAX_FIND_ENTRIES).map(|i| (format!("k{i}"), FindValue::Text("v".into()))).collect();
    let file = ConfigFile { path: "server.properties".into(), parser: ConfigParser::Properties, find };
    assert_eq!(
        apply(&file, "", &ctx()),
        Err(ConfigError::TooManyEntries {
            path: "server.properties".into(),
            count: MAX_FIND_ENTRIES + 1,
            limit: MAX_FIND_ENTRIES
        })
    );
    let file = text_file("config.json", ConfigParser::Json, &vec!["a"; MAX_DEPTH + 1].join("."), "1");
    assert!(matches!(apply(&file, "{}", &ctx()), Err(ConfigError::InvalidKey { .. })));
}

/// One-line files where creating a key looks for the file's indentation at many nodes, whose
/// line starts at the beginning of the file: finding that by scanning back made these take
/// minutes (over 3 minutes each, debug build). The suite's running time proves them linear.
#[test]
fn large_one_line_files_patch_in_linear_time() {
    let json = format!("{{{}}}", (0..300_000).map(|i| format!("\"k{i}\":{{\"a\":[1]}}")).collect::<Vec<_>>().join(","));
    let xml = format!("<r>{}</r>", "<a><b/></a>".repeat(300_000));
    for (parser, key, original) in [(ConfigParser::Json, "zz", json), (ConfigParser::Xml, "r.a.b.c", xml)] {
        assert!(original.len() < MAX_CONFIG_BYTES, "{parser:?}");
        let out = on_stack(SMALL_STACK, move || apply(&text_file("cfg", parser, key, "1"), &original, &ctx()));
        assert!(out.is_ok(), "{parser:?}: {out:?}");
    }
}

// ----- properties of patching -----

/// Values that exercise quoting and escaping; no `{{`, which would be a placeholder.
fn tricky_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 ._:/#=!'\"\\\\,\\[\\]&*|>%@`?-]{0,12}",
        Just(String::new()),
        Just("true".to_owned()),
        Just("123".to_owned()),
        Just("0x1F".to_owned()),
        Just("- x".to_owned()),
        Just(" padded ".to_owned()),
        Just("a: b # c".to_owned()),
        Just("tab\there".to_owned()),
        Just("line\nbreak".to_owned()),
        Just("é ünï".to_owned()),
    ]
}

fn key_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,6}"
}

/// Original entries (unique keys, plain safe values) and the keys to set with new values:
/// some existing, some new.
/// Original entries, edits, CRLF line endings, final newline.
type Scenario = (Vec<(String, String)>, Vec<(String, String)>, bool, bool);

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        proptest::collection::btree_map(key_name(), "[a-zA-Z][a-zA-Z0-9 ]{0,8}[a-zA-Z0-9]", 1..8),
        proptest::collection::btree_map(key_name(), tricky_text(), 1..6),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(original, edits, windows, final_newline)| {
            (original.into_iter().collect(), edits.into_iter().collect(), windows, final_newline)
        })
}

fn render(lines: &[String], windows: bool, final_newline: bool) -> String {
    let eol = if windows { "\r\n" } else { "\n" };
    let mut text = lines.join(eol);
    if final_newline {
        text.push_str(eol);
    }
    text
}

fn text_edits(path: &str, parser: ConfigParser, edits: &[(String, String)]) -> ConfigFile {
    ConfigFile {
        path: path.to_owned(),
        parser,
        find: edits.iter().map(|(key, value)| (key.clone(), FindValue::Text(value.clone()))).collect(),
    }
}

/// Lines of `original` whose key is not edited appear unchanged, in order, at the same index.
fn untouched_lines_survive(original: &str, out: &str, edited: impl Fn(&str) -> bool) {
    let out_lines: Vec<&str> = out.split('\n').collect();
    let original_lines: Vec<&str> = original.strip_suffix('\n').unwrap_or(original).split('\n').collect();
    for (index, line) in original_lines.into_iter().enumerate() {
        if !edited(line) {
            // The last line gains a terminator when a key is appended after it.
            let unterminated = |line: &str| line.strip_suffix('\r').unwrap_or(line).to_owned();
            assert_eq!(out_lines.get(index).map(|l| unterminated(l)), Some(unterminated(line)), "line {index} changed");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn properties_patch_is_idempotent_and_local((original, edits, windows, final_newline) in scenario()) {
        let mut lines = vec!["# comment".to_owned()];
        lines.extend(original.iter().map(|(key, value)| format!("{key}={value}")));
        let text = render(&lines, windows, final_newline);
        let file = text_edits("server.properties", ConfigParser::Properties, &edits);
        let out = apply(&file, &text, &ctx()).unwrap();
        prop_assert_eq!(&apply(&file, &out, &ctx()).unwrap(), &out);
        untouched_lines_survive(&text, &out, |line| edits.iter().any(|(key, _)| line.starts_with(&format!("{key}="))));
        let values = properties::read(&out);
        for (key, value) in &edits {
            prop_assert!(values.contains(&(key.clone(), value.clone())), "{key} = {value:?} not read back from {out:?}");
        }
    }

    #[test]
    fn ini_patch_is_idempotent_and_local((original, edits, windows, final_newline) in scenario()) {
        let mut lines = vec!["; comment".to_owned(), "[main]".to_owned()];
        lines.extend(original.iter().map(|(key, value)| format!("{key} = {value}")));
        lines.push("[other]".to_owned());
        lines.push("x = 1".to_owned());
        let text = render(&lines, windows, final_newline);
        // A value the egg wraps in double quotes is written as it is (see `ini::encode`), so
        // it reads back without them; one that also holds a quote inside cannot be written.
        let wrapped = |v: &str| v.len() >= 2 && v.starts_with('"') && v.ends_with('"');
        let unwritable = |v: &str| v.contains('\n') || (wrapped(v) && v[1..v.len() - 1].contains('"'));
        let edits: Vec<_> = edits.into_iter().filter(|(_, value)| !unwritable(value)).collect();
        let keyed: Vec<_> = edits.iter().map(|(key, value)| (format!("main.{key}"), value.clone())).collect();
        let file = text_edits("settings.ini", ConfigParser::Ini, &keyed);
        let out = apply(&file, &text, &ctx()).unwrap();
        prop_assert_eq!(&apply(&file, &out, &ctx()).unwrap(), &out);
        let values = ini::read(&out);
        for (key, value) in &edits {
            let value = if wrapped(value) { value[1..value.len() - 1].to_owned() } else { value.clone() };
            prop_assert!(
                values.contains(&("main".to_owned(), key.clone(), value.clone())),
                "{key} = {value:?} not read back from {out:?}"
            );
        }
        prop_assert!(out.contains("[other]") && values.contains(&("other".to_owned(), "x".to_owned(), "1".to_owned())));
    }

    #[test]
    fn yaml_patch_is_idempotent_local_and_keeps_strings((original, edits, windows, final_newline) in scenario()) {
        let mut lines = vec!["# comment".to_owned(), "root:".to_owned()];
        lines.extend(original.iter().map(|(key, value)| format!("  {key}: '{value}'")));
        lines.push("after: 1".to_owned());
        let text = render(&lines, windows, final_newline);
        let keyed: Vec<_> = edits.iter().map(|(key, value)| (format!("root.{key}"), value.clone())).collect();
        let file = text_edits("config.yml", ConfigParser::Yaml, &keyed);
        let out = apply(&file, &text, &ctx()).unwrap();
        prop_assert_eq!(&apply(&file, &out, &ctx()).unwrap(), &out);
        let parsed: yaml_serde::Value = yaml_serde::from_str(&out).unwrap();
        for (key, value) in &edits {
            let existed = original.iter().any(|(k, _)| k == key);
            let expected = if !existed && replacement::is_integer(value) {
                yaml_serde::from_str::<yaml_serde::Value>(value).unwrap()
            } else {
                yaml_serde::Value::String(value.clone())
            };
            prop_assert_eq!(&parsed["root"][key.as_str()], &expected, "{} in {:?}", key, out);
        }
        prop_assert_eq!(&parsed["after"], &yaml_serde::Value::from(1));
        if edits.iter().all(|(key, _)| original.iter().any(|(k, _)| k == key)) {
            untouched_lines_survive(&text, &out, |line| edits.iter().any(|(key, _)| line.starts_with(&format!("  {key}:"))));
        }
    }

    #[test]
    fn json_patch_is_idempotent_and_keeps_strings((original, edits, windows, final_newline) in scenario()) {
        let members: Vec<String> = original.iter().map(|(key, value)| format!("    \"{key}\": \"{value}\"")).collect();
        let lines = vec!["{".to_owned(), "  \"root\": {".to_owned(), members.join(",\n"), "  }".to_owned(), "}".to_owned()];
        let text = render(&lines, false, final_newline);
        let text = if windows { crlf(&text) } else { text };
        let keyed: Vec<_> = edits.iter().map(|(key, value)| (format!("root.{key}"), value.clone())).collect();
        let file = text_edits("config.json", ConfigParser::Json, &keyed);
        let out = apply(&file, &text, &ctx()).unwrap();
        prop_assert_eq!(&apply(&file, &out, &ctx()).unwrap(), &out);
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        for (key, value) in &edits {
            let existed = original.iter().any(|(k, _)| k == key);
            let expected = match value.parse::<i64>() {
                Ok(number) if !existed && serde_json::from_str::<serde_json::Value>(value).is_ok() => serde_json::json!(number),
                _ => serde_json::Value::String(value.clone()),
            };
            prop_assert_eq!(&parsed["root"][key.as_str()], &expected, "{} in {:?}", key, out);
        }
    }

    #[test]
    fn toml_patch_is_idempotent_and_keeps_strings((original, edits, windows, final_newline) in scenario()) {
        let mut lines = vec!["# comment".to_owned(), "[root]".to_owned()];
        lines.extend(original.iter().map(|(key, value)| format!("{key} = \"{value}\"")));
        lines.push("[other]".to_owned());
        lines.push("x = 1".to_owned());
        let text = render(&lines, windows, final_newline);
        let keyed: Vec<_> = edits.iter().map(|(key, value)| (format!("root.{key}"), value.clone())).collect();
        let file = text_edits("velocity.toml", ConfigParser::Toml, &keyed);
        let out = apply(&file, &text, &ctx()).unwrap();
        prop_assert_eq!(&apply(&file, &out, &ctx()).unwrap(), &out);
        let parsed: toml_edit::DocumentMut = out.parse().unwrap();
        for (key, value) in &edits {
            let existed = original.iter().any(|(k, _)| k == key);
            let item = &parsed["root"][key.as_str()];
            if !existed && matches!(value.parse::<toml_edit::Value>(), Ok(toml_edit::Value::Integer(_))) && replacement::is_integer(value) {
                prop_assert_eq!(item.as_integer(), value.parse::<i64>().ok());
            } else {
                prop_assert_eq!(item.as_str(), Some(value.as_str()), "{} in {:?}", key, out);
            }
        }
        prop_assert_eq!(parsed["other"]["x"].as_integer(), Some(1));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the original holds, patching returns a result: it never panics.
    #[test]
    fn arbitrary_originals_never_panic(
        original in "[a-z0-9 \t\r\n:=#;!\\[\\]{}<>/\"'&*|.,?%@`~é-]{0,80}",
        key in prop_oneof![Just("a"), Just("a.b"), Just("a[0]"), Just("a.*.b"), Just("x.y.z"), Just("[s].k")],
        value in tricky_text(),
    ) {
        for parser in [
            ConfigParser::Properties,
            ConfigParser::Ini,
            ConfigParser::Yaml,
            ConfigParser::Json,
            ConfigParser::Xml,
            ConfigParser::File,
            ConfigParser::Toml,
        ] {
            let file = text_edits("cfg", parser, &[(key.to_owned(), value.clone())]);
            let _ = apply(&file, &original, &ctx());
            let matcher = ConfigFile {
                find: vec![(key.to_owned(), FindValue::Match(vec![("regex:(.*)".into(), "<$1>".into())]))],
                ..file
            };
            let _ = apply(&matcher, &original, &ctx());
        }
    }
}

/// A YAML/JSON-like tree whose map keys are path-safe.
fn tree() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        "[a-zA-Z0-9 :#'\"\\n-]{0,10}".prop_map(serde_json::Value::from),
        any::<i32>().prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 1..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-z]{1,4}", inner, 1..4)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Every scalar in `value` with its key path.
fn scalar_paths(value: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                scalar_paths(child, &path, out);
            }
        }
        serde_json::Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                scalar_paths(child, &format!("{prefix}[{index}]"), out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

fn set_at(value: &mut serde_json::Value, path: &str, new: serde_json::Value) {
    let mut current = value;
    for part in path.split('.') {
        let (name, indices) = part.split_at(part.find('[').unwrap_or(part.len()));
        current = &mut current[name];
        for index in indices.split(['[', ']']).filter(|s| !s.is_empty()) {
            current = &mut current[index.parse::<usize>().unwrap()];
        }
    }
    *current = new;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Serializer-written YAML and JSON (any nesting, block scalars, quoting): setting one
    /// scalar changes exactly that scalar, as a parser sees the result.
    #[test]
    fn generated_documents_change_only_the_target(
        root in proptest::collection::btree_map("[a-z]{1,4}", tree(), 1..5),
        pick in any::<proptest::sample::Index>(),
        new in "v[a-z0-9 ]{0,6}[a-z0-9]",
    ) {
        let root = serde_json::Value::Object(root.into_iter().collect());
        let mut paths = Vec::new();
        scalar_paths(&root, "", &mut paths);
        let path = pick.get(&paths).clone();
        let mut expected = root.clone();
        set_at(&mut expected, &path, serde_json::Value::String(new.clone()));

        let yaml = yaml_serde::to_string(&root).unwrap();
        let file = text_edits("config.yml", ConfigParser::Yaml, &[(path.clone(), new.clone())]);
        let out = apply(&file, &yaml, &ctx()).unwrap();
        let reread: serde_json::Value = yaml_serde::from_str(&out).unwrap();
        prop_assert_eq!(&reread, &expected, "{} in\n{}\n=>\n{}", path, yaml, out);

        let json = serde_json::to_string_pretty(&root).unwrap();
        let file = text_edits("config.json", ConfigParser::Json, &[(path.clone(), new.clone())]);
        let out = apply(&file, &json, &ctx()).unwrap();
        let reread: serde_json::Value = serde_json::from_str(&out).unwrap();
        prop_assert_eq!(&reread, &expected, "{} in\n{}\n=>\n{}", path, json, out);
    }
}

/// Ten lines of YAML whose aliases expand to ten billion nodes: refused at once with a typed
/// error, where building the tree would exhaust memory. Aliases used sparingly still patch.
#[test]
fn yaml_alias_bombs_are_refused() {
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (previous, name) in ('a'..='j').zip('b'..='k') {
        bomb.push_str(&format!("{name}: &{name} [{}]\n", vec![format!("*{previous}"); 10].join(", ")));
    }
    let file = text_file("plugins/bomb.yml", ConfigParser::Yaml, "a", "1");
    let started = std::time::Instant::now();
    match apply(&file, &bomb, &ctx()) {
        Err(ConfigError::ExpandsTooMuch { path, .. }) => assert_eq!(path, "plugins/bomb.yml"),
        other => panic!("expected ExpandsTooMuch, got {other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "took {:?}", started.elapsed());

    let long = format!("port: 1\nmotd: &m {}\nb: [{}]\n", "x".repeat(100_000), vec!["*m"; 1000].join(", "));
    let file = text_file("long.yml", ConfigParser::Yaml, "port", "2");
    assert!(matches!(apply(&file, &long, &ctx()), Err(ConfigError::ExpandsTooMuch { .. })));

    let sparing = "defaults: &d {motd: hi, slots: 10}\nlobby: *d\nport: 1\n";
    let file = text_file("ok.yml", ConfigParser::Yaml, "port", "2");
    assert_eq!(apply(&file, sparing, &ctx()).unwrap(), "defaults: &d {motd: hi, slots: 10}\nlobby: *d\nport: 2\n");
}

/// Found on a real egg: `servers.0.name` addresses an array element in JSON and YAML, as in
/// Wings' path library; `[0]` still works; on an object a numeric segment is a key.
#[test]
fn numeric_segments_address_array_items() {
    let json = text_file("c.json", ConfigParser::Json, "servers.1.name", "b2");
    assert_eq!(
        apply(&json, r#"{"servers": [{"name": "a"}, {"name": "b"}]}"#, &ctx()).unwrap(),
        r#"{"servers": [{"name": "a"}, {"name": "b2"}]}"#
    );
    let yaml = text_file("c.yml", ConfigParser::Yaml, "servers.0.port", "{{server.build.default.port}}");
    assert_eq!(
        apply(&yaml, "servers:\n  - port: 1\n  - port: 2\n", &ctx()).unwrap(),
        "servers:\n  - port: 25600\n  - port: 2\n"
    );
    let object = text_file("c.json", ConfigParser::Json, "ports.0", "7");
    assert_eq!(apply(&object, r#"{"ports": {"0": 1}}"#, &ctx()).unwrap(), r#"{"ports": {"0": 7}}"#);
    let beyond = text_file("c.json", ConfigParser::Json, "servers.5.name", "x");
    assert_eq!(apply(&beyond, r#"{"servers": []}"#, &ctx()).unwrap(), r#"{"servers": []}"#);
}

/// A long value written at every match of a huge file (every line of a `file` egg with an
/// empty key, every item of an array through `*`) used to grow the output without end: now
/// refused once the patched text would pass the bound, in bounded memory.
#[test]
fn patches_cannot_grow_a_file_without_end() {
    let long = "x".repeat(4096);
    let every_line = text_file("token.txt", ConfigParser::File, "", &long);
    let original = "\n".repeat(8192);
    match apply(&every_line, &original, &ctx()) {
        Err(ConfigError::TooLarge { path, .. }) => assert_eq!(path, "token.txt"),
        other => panic!("expected TooLarge, got {:?}", other.map(|t| t.len())),
    }
    let longer = "x".repeat(64 << 10);
    let every_item = text_file("c.json", ConfigParser::Json, "a.*", &longer);
    let original = format!("{{\"a\": [{}1]}}", "1,".repeat(300));
    assert!(matches!(apply(&every_item, &original, &ctx()), Err(ConfigError::TooLarge { .. })));
    // Growth within the bound is fine.
    assert_eq!(apply(&every_line, "old\n", &ctx()).unwrap(), format!("{long}\n"));
}

/// As Wings: an XML value written `[name='value']` sets an attribute of the element (replacing
/// its value, adding it, or creating the element with it) instead of its text.
#[test]
fn xml_attribute_values_as_wings() {
    let port = text_file("c.xml", ConfigParser::Xml, "Settings.Server", "[port='{{server.build.default.port}}']");
    assert_eq!(
        apply(&port, "<Settings>\n  <Server port=\"1\" name='x'/>\n</Settings>\n", &ctx()).unwrap(),
        "<Settings>\n  <Server port=\"25600\" name='x'/>\n</Settings>\n"
    );
    assert_eq!(
        apply(&port, "<Settings>\n  <Server>text</Server>\n</Settings>\n", &ctx()).unwrap(),
        "<Settings>\n  <Server port=\"25600\">text</Server>\n</Settings>\n"
    );
    assert_eq!(
        apply(&port, "<Settings>\n  <Other/>\n</Settings>\n", &ctx()).unwrap(),
        "<Settings>\n  <Other/>\n  <Server port=\"25600\"/>\n</Settings>\n"
    );
    let quoted = text_file("c.xml", ConfigParser::Xml, "Settings.Server", "[motd='say \"hi\" & <b>']");
    assert_eq!(
        apply(&quoted, "<Settings><Server/></Settings>", &ctx()).unwrap(),
        "<Settings><Server motd=\"say &quot;hi&quot; &amp; &lt;b&gt;\"/></Settings>"
    );
    // Already set: nothing changes.
    let same = "<Settings><Server port=\"25600\"/></Settings>";
    assert_eq!(apply(&port, same, &ctx()).unwrap(), same);
}
