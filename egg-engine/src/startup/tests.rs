use super::*;
use crate::rules::test_corpus;
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

fn facts() -> ServerFacts {
    ServerFacts {
        memory_mib: 2048,
        ip: "10.0.0.2".into(),
        port: 25565,
        uuid: "7a3f9c1e-0b6d-4e52-9d1a-5c2e8f4b7a10".into(),
        timezone: Some("Europe/Berlin".into()),
        location: Some("fra".into()),
        allocation_limit: Some(3),
    }
}

fn render(template: &str, values: &[(&str, &str)]) -> RenderedStartup {
    render_startup(template, values.iter().copied(), &facts()).unwrap_or_else(|e| panic!("{template}: {e}"))
}

fn cmd(template: &str, values: &[(&str, &str)]) -> String {
    render(template, values).command
}

// ---- quoting contexts (command text)

#[test]
fn unquoted_and_double_quoted_become_references() {
    assert_eq!(cmd("java -jar {{JAR}}", &[("JAR", "x")]), "java -jar ${JAR}");
    assert_eq!(cmd(r#"run "--motd={{M}}!""#, &[("M", "x")]), r#"run "--motd=${M}!""#);
    assert_eq!(cmd("-Xmx{{SERVER_MEMORY}}M", &[]), "-Xmx${SERVER_MEMORY}M");
    assert_eq!(cmd("{{A}}{{B}}", &[("A", "1"), ("B", "2")]), "${A}${B}");
}

#[test]
fn single_quotes_are_closed_and_reopened() {
    assert_eq!(cmd("redis --requirepass '{{P}}'", &[("P", "x")]), r#"redis --requirepass ''"${P}"''"#);
    assert_eq!(cmd("echo 'a {{P}} b'", &[("P", "x")]), r#"echo 'a '"${P}"' b'"#);
}

#[test]
fn ansi_c_quotes_are_closed_and_reopened() {
    assert_eq!(cmd("echo $'a\\t{{P}}b'", &[("P", "x")]), r#"echo $'a\t'"${P}"$'b'"#);
    // An escaped quote inside `$'...'` does not end it.
    assert_eq!(cmd(r"echo $'it\'s {{P}}'", &[("P", "x")]), r#"echo $'it\'s '"${P}"$''"#);
}

#[test]
fn placeholders_tolerate_blanks() {
    assert_eq!(cmd("a {{ JAR }} {{\tJAR}}", &[("JAR", "x")]), "a ${JAR} ${JAR}");
    assert_eq!(render("a {{ JAR }}", &[("JAR", "x")]).display, "a x");
}

#[test]
fn non_placeholders_stay_text() {
    for t in ["{{a-b}}", "{{1A}}", "{{}}", "{{ }}", "{A}", "{{A}", "{{A B}}", "awk '{{print}}'"] {
        let r = render(t, &[("A", "x")]);
        assert!(r.unresolved.is_empty() || t.contains("print"), "{t}");
    }
    assert_eq!(cmd("{{a-b}}", &[]), "{{a-b}}");
    assert_eq!(cmd("{{{A}}}", &[("A", "x")]), "{${A}}");
}

#[test]
fn author_references_pass_through() {
    let t = r#"mongod --port ${SERVER_PORT} $A "$B" '${C}' {{A}}"#;
    assert_eq!(cmd(t, &[("A", "1")]), r#"mongod --port ${SERVER_PORT} $A "$B" '${C}' ${A}"#);
}

#[test]
fn escapes_and_nested_quote_kinds() {
    // Escaped double quotes outside quotes (the Rust egg).
    assert_eq!(cmd(r#"+server.hostname \"{{H}}\""#, &[("H", "x")]), r#"+server.hostname \"${H}\""#);
    // An escaped single quote outside quotes opens nothing.
    assert_eq!(cmd(r"echo \'{{H}}", &[("H", "x")]), r"echo \'${H}");
    // An apostrophe inside double quotes is literal.
    assert_eq!(cmd(r#"echo "it's {{H}}""#, &[("H", "x")]), r#"echo "it's ${H}""#);
    // Double quotes inside single quotes are literal.
    assert_eq!(cmd(r#"echo 'say "{{H}}"'"#, &[("H", "x")]), r#"echo 'say "'"${H}"'"'"#);
    // An escaped double quote inside double quotes does not end them.
    assert_eq!(cmd(r#"echo "a \" '{{H}}' b""#, &[("H", "x")]), r#"echo "a \" '${H}' b""#);
    // Command substitution restarts quoting, even inside double quotes.
    assert_eq!(cmd(r#"echo "$(printf %s '{{H}}')""#, &[("H", "x")]), r#"echo "$(printf %s ''"${H}"'')""#);
    assert_eq!(cmd(r#"echo "`printf %s '{{H}}'`""#, &[("H", "x")]), r#"echo "`printf %s ''"${H}"''`""#);
    assert_eq!(
        cmd(r#"x $( [ "$V" == "1" ] || printf %s ' -a {{H}}' ) '{{H}}'"#, &[("H", "x")]).matches("'\"${H}\"'").count(),
        2
    );
    // Nested parentheses inside a command substitution.
    assert_eq!(cmd("$( (echo a) ) '{{H}}'", &[("H", "x")]), r#"$( (echo a) ) ''"${H}"''"#);
    assert_eq!(cmd("$((1+(2))) '{{H}}'", &[("H", "x")]), r#"$((1+(2))) ''"${H}"''"#);
    // Process substitution (bash).
    assert_eq!(cmd(r#"x > >(sed -uE "{{F}}") '{{F}}'"#, &[("F", "x")]), r#"x > >(sed -uE "${F}") ''"${F}"''"#);
    // Parameter expansion containing a placeholder.
    assert_eq!(cmd("${R:+-p 0.0.0.0:{{R}}} '{{R}}'", &[("R", "1")]), r#"${R:+-p 0.0.0.0:${R}} ''"${R}"''"#);
    // A comment may contain an apostrophe.
    assert_eq!(
        cmd("echo '{{H}}' # don't\necho '{{H}}'", &[("H", "x")]),
        "echo ''\"${H}\"'' # don't\necho ''\"${H}\"''"
    );
    // `#` inside a word is not a comment.
    assert_eq!(cmd("echo a#'{{H}}'", &[("H", "x")]), r#"echo a#''"${H}"''"#);
}

#[test]
fn backslash_right_before_a_placeholder() {
    let r = render(r#"a \{{H}} "\{{H}}" '\{{H}}' $'\{{H}}'"#, &[("H", "v")]);
    assert_eq!(r.command, r#"a ${H} "\\${H}" '\'"${H}"'' $'\\'"${H}"$''"#);
    assert_eq!(r.display, r#"a \v "\v" '\v' $'\v'"#);
}

#[test]
fn unterminated_constructs_are_errors() {
    for (t, what) in [
        ("echo 'abc", "single quote"),
        ("echo \"abc", "double quote"),
        ("echo $(abc", "command substitution"),
        ("echo `abc", "backtick"),
        ("echo ${abc", "parameter expansion"),
        ("echo $'abc", "`$'` quote"),
        ("echo \"$(echo ')\"", "single quote"),
    ] {
        match render_startup(t, std::iter::empty::<(&str, &str)>(), &facts()) {
            Err(StartupError::Unterminated { construct, .. }) => assert!(construct.contains(what), "{t}: {construct}"),
            other => panic!("{t}: {other:?}"),
        }
    }
    // A comment may run to the end.
    assert!(render_startup("echo # it's", std::iter::empty::<(&str, &str)>(), &facts()).is_ok());
}

// ---- placeholders, display, environment

#[test]
fn builtins_and_display() {
    let r = render(
        "java -Xmx{{SERVER_MEMORY}}M --ip {{SERVER_IP}} --port {{SERVER_PORT}} -jar {{JAR}}",
        &[("JAR", "paper.jar")],
    );
    assert_eq!(r.command, "java -Xmx${SERVER_MEMORY}M --ip ${SERVER_IP} --port ${SERVER_PORT} -jar ${JAR}");
    assert_eq!(r.display, "java -Xmx2048M --ip 10.0.0.2 --port 25565 -jar paper.jar");
    assert!(r.unresolved.is_empty());
    let r = render("echo {{P_SERVER_UUID}} {{HOME}} {{TZ}}", &[]);
    assert_eq!(r.display, "echo 7a3f9c1e-0b6d-4e52-9d1a-5c2e8f4b7a10 /home/container Europe/Berlin");
}

/// Found on a real egg: `-mod={{CLIENT_MODS}}` became `-mod=`, where Wings passes the
/// placeholder on and the image's entrypoint, which computes `CLIENT_MODS`, expands it.
#[test]
fn unknown_placeholders_stay_references_and_are_reported() {
    let t = r#"./{{SERVER_BINARY}} -mod=\"{{CLIENT_MODS}}\" '{{NOPE}}' {{CLIENT_MODS}}"#;
    let r = render(t, &[("SERVER_BINARY", "arma3server")]);
    assert_eq!(r.command, r#"./${SERVER_BINARY} -mod=\"${CLIENT_MODS}\" ''"${NOPE}"'' ${CLIENT_MODS}"#);
    assert_eq!(r.display, r#"./arma3server -mod=\"${CLIENT_MODS}\" ''"${NOPE}"'' ${CLIENT_MODS}"#);
    assert_eq!(r.unresolved, ["CLIENT_MODS", "NOPE"]);
    assert_eq!(placeholders(t).unwrap(), ["SERVER_BINARY", "CLIENT_MODS", "NOPE"]);
}

#[test]
fn environment_is_complete() {
    let r = render("run {{A}}", &[("A", "1"), ("B", "two words")]);
    let keys: Vec<&str> = r.env.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "SERVER_MEMORY",
            "SERVER_IP",
            "SERVER_PORT",
            "P_SERVER_UUID",
            "P_SERVER_LOCATION",
            "P_SERVER_ALLOCATION_LIMIT",
            "TZ",
            "HOME",
            "USER",
            "A",
            "B",
            "STARTUP"
        ]
    );
    assert_eq!((r.env["P_SERVER_LOCATION"].as_str(), r.env["P_SERVER_ALLOCATION_LIMIT"].as_str()), ("fra", "3"));
    let unset = render_startup("run", [("A", "1")], &ServerFacts { location: None, allocation_limit: None, ..facts() })
        .unwrap();
    assert!(!unset.env.contains_key("P_SERVER_LOCATION"));
    assert_eq!(unset.env["P_SERVER_ALLOCATION_LIMIT"], "0", "Pterodactyl sends 0 when no limit is set");
    assert_eq!(r.env["SERVER_MEMORY"], "2048");
    assert_eq!(r.env["SERVER_IP"], "10.0.0.2");
    assert_eq!(r.env["SERVER_PORT"], "25565");
    assert_eq!(r.env["HOME"], "/home/container");
    assert_eq!(r.env["USER"], "container");
    assert_eq!(r.env["B"], "two words");
    assert_eq!(r.env["STARTUP"], r.command);
    assert_eq!(r.env["STARTUP"], "run ${A}");
}

#[test]
fn timezone_rules() {
    let no_tz = ServerFacts { timezone: None, ..facts() };
    let r = render_startup("x", [("A", "1")], &no_tz).unwrap();
    assert!(!r.env.contains_key("TZ"));
    // A non-empty egg TZ wins; an empty one keeps the platform's.
    assert_eq!(render("x", &[("TZ", "Asia/Tokyo")]).env["TZ"], "Asia/Tokyo");
    assert_eq!(render("x", &[("TZ", "")]).env["TZ"], "Europe/Berlin");
    assert_eq!(render_startup("x", [("TZ", "")], &no_tz).unwrap().env["TZ"], "");
}

#[test]
fn bad_names_and_values_are_errors() {
    let f = facts();
    let err = |vals: Vec<(&str, &str)>| render_startup("x", vals, &f).unwrap_err();
    assert_eq!(err(vec![("SERVER_PORT", "1")]), StartupError::ReservedVariable { name: "SERVER_PORT".into() });
    assert_eq!(err(vec![("P_SERVER_FOO", "1")]), StartupError::ReservedVariable { name: "P_SERVER_FOO".into() });
    assert_eq!(err(vec![("IFS", "x")]), StartupError::ReservedVariable { name: "IFS".into() });
    assert_eq!(err(vec![("A-B", "1")]), StartupError::InvalidVariableName { name: "A-B".into() });
    assert_eq!(err(vec![("", "1")]), StartupError::InvalidVariableName { name: String::new() });
    assert_eq!(err(vec![("A", "a\0b")]), StartupError::NulByte { name: "A".into() });
    let bad_facts = ServerFacts { ip: "1\0".into(), ..facts() };
    assert_eq!(
        render_startup("x", std::iter::empty::<(&str, &str)>(), &bad_facts).unwrap_err(),
        StartupError::NulByte { name: "SERVER_IP".into() }
    );
}

#[test]
fn reserved_and_valid_names() {
    for name in ["SERVER_MEMORY", "SERVER_IP", "SERVER_PORT", "STARTUP", "HOME", "USER", "P_SERVER_UUID", "P_SERVER_X"]
    {
        assert!(is_reserved(name), "{name}");
    }
    for name in ["TZ", "SERVER_JARFILE", "HOSTNAME", "USERNAME", "LD_LIBRARY_PATH", "home", "srv_name", "STOP"] {
        assert!(!is_reserved(name), "{name}");
    }
    for name in ["A", "_", "a_1", "SERVER_JARFILE", "srv_name"] {
        assert!(is_valid_variable_name(name), "{name}");
    }
    for name in ["", "1A", "A-B", "A B", "Ä", "A=B", "A$"] {
        assert!(!is_valid_variable_name(name), "{name}");
    }
}

// ---- running the command for real

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty directory, so globs in unquoted values match nothing.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let n = DIRS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("nexus-startup-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn is_empty(&self) -> bool {
        std::fs::read_dir(&self.0).unwrap().next().is_none()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the rendered command with `shell -c` in `dir` and returns the NUL-separated output.
fn run(shell: &str, r: &RenderedStartup, dir: &Path) -> Vec<String> {
    let out = Command::new(shell)
        .arg("-c")
        .arg(&r.command)
        .env_clear()
        .envs(&r.env)
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shell}: {e}"));
    assert!(out.status.success(), "{shell} failed: {}\ncommand: {}", String::from_utf8_lossy(&out.stderr), r.command);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut fields: Vec<String> = text.split('\0').map(String::from).collect();
    assert_eq!(fields.pop().as_deref(), Some(""), "output must end with NUL: {text:?}");
    fields
}

fn shells() -> Vec<&'static str> {
    ["/bin/sh", "/bin/bash", "/usr/bin/bash"].into_iter().filter(|s| Path::new(s).exists()).take(2).collect()
}

/// How the shell splits an unquoted expansion with the default IFS.
fn ifs_split(value: &str) -> Vec<String> {
    value.split([' ', '\t', '\n']).filter(|s| !s.is_empty()).map(String::from).collect()
}

#[test]
fn hostile_values_never_execute() {
    let dir = TempDir::new();
    let pwned = std::env::temp_dir().join(format!("nexus-pwned-{}", std::process::id()));
    let p = pwned.display().to_string();
    let hostile = [
        format!("; touch {p}"),
        format!("$(touch {p})"),
        format!("`touch {p}`"),
        format!("&& touch {p}"),
        format!("|| touch {p}"),
        format!("| touch {p}"),
        format!("> {p}"),
        format!("< /etc/passwd > {p}"),
        format!("'; touch {p}; '"),
        format!("\"; touch {p}; \""),
        format!("'\"$(touch {p})\"'"),
        format!("\ntouch {p}\n"),
        format!("$'\\n'touch {p}"),
        format!("${{IFS}}touch${{IFS}}{p}"),
        format!("x & touch {p} &"),
        "\"".into(),
        "'".into(),
        "\\".into(),
        "\\'".into(),
        "a\\nb".into(),
        "line1\nline2".into(),
        "*".into(),
        "?".into(),
        "[a-z]*".into(),
        "{a,b}".into(),
        "~".into(),
        "$HOME ${PATH} $0 $$".into(),
        "".into(),
        "  spaced   out  ".into(),
        "ünï cödé ✓".into(),
        "-n".into(),
    ];
    let template = r#"printf '%s\0' {{A}} "{{B}}" '{{C}}'"#;
    for shell in shells() {
        for value in &hostile {
            let r = render(template, &[("A", value), ("B", value), ("C", value)]);
            assert_eq!(r.command, r#"printf '%s\0' ${A} "${B}" ''"${C}"''"#);
            let mut expected = ifs_split(value);
            expected.push(value.clone());
            expected.push(value.clone());
            assert_eq!(run(shell, &r, &dir.0), expected, "{shell}, value {value:?}");
            assert!(!pwned.exists(), "{shell}: value {value:?} executed a command");
            assert!(dir.is_empty(), "{shell}: value {value:?} wrote a file");
        }
    }
}

#[test]
fn every_quoting_context_yields_the_exact_value() {
    let dir = TempDir::new();
    let value = r#"it's "q" $x `id` $(id) \ ; | & > * ${HOME}"#;
    let posix = r#"printf '%s\0' "a{{V}}b" 'c{{V}}d' "$(printf %s '{{V}}')" "`printf %s '{{V}}'`" e\"{{V}}\"f"#;
    for shell in shells() {
        let r = render(posix, &[("V", value)]);
        let got = run(shell, &r, &dir.0);
        let expected_last = format!("e\"{}\"f", ifs_split(value).join(" "));
        assert_eq!(
            got[..4],
            [format!("a{value}b"), format!("c{value}d"), value.to_string(), value.to_string()],
            "{shell}"
        );
        // The last argument is unquoted: word splitting applies.
        assert_eq!(got[4..].join(" "), expected_last, "{shell}");
    }
    if Path::new("/bin/bash").exists() {
        let r = render(r#"printf '%s\0' $'x\t{{V}}y' "${UNSET:-{{V}}}""#, &[("V", value)]);
        assert_eq!(run("/bin/bash", &r, &dir.0), [format!("x\t{value}y"), value.to_string()]);
    }
    assert!(dir.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_values_round_trip_through_the_shell(
        quoted in "[^\\x00]{0,24}",
        bare in "[^\\x00*?\\[]{0,24}",
    ) {
        let dir = TempDir::new();
        let r = render(r#"printf '%s\0' "{{B}}" '{{C}}' {{A}}"#, &[("A", &bare), ("B", &quoted), ("C", &quoted)]);
        let mut expected = vec![quoted.clone(), quoted.clone()];
        expected.extend(ifs_split(&bare));
        prop_assert_eq!(run("/bin/sh", &r, &dir.0), expected);
        prop_assert!(dir.is_empty());
    }
}

// ---- corpus

#[test]
fn corpus_startup_commands_render_with_defaults() {
    let mut rendered = 0;
    let mut unresolved = Vec::new();
    let mut failures = Vec::new();
    let bash = Path::new("/bin/bash").exists();
    for egg in test_corpus::eggs() {
        let vars = egg.variables();
        let values: Vec<(String, String)> =
            vars.iter().map(|v| (v.env_variable.clone(), v.default_value.clone())).collect();
        for template in egg.startup_commands() {
            let r = match render_startup(&template, values.iter().map(|(k, v)| (k, v)), &facts()) {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{}: {e}", egg.file));
                    continue;
                }
            };
            rendered += 1;
            for name in &r.unresolved {
                unresolved.push(format!("{}: {{{{{name}}}}}", egg.file));
            }
            // The command is still valid shell wherever the template was.
            if bash {
                let neutral = scan::scan(&template, |_| false)
                    .unwrap()
                    .pieces
                    .iter()
                    .map(|p| match p {
                        Piece::Text { command, .. } => command.to_string(),
                        Piece::Placeholder { .. } => "x".into(),
                    })
                    .collect::<String>();
                let ok = |c: &str| Command::new("/bin/bash").args(["-n", "-c", c]).output().unwrap().status.success();
                if ok(&neutral) && !ok(&r.command) {
                    failures.push(format!("{}: rendered command is not valid shell: {}", egg.file, r.command));
                }
            }
        }
    }
    println!("rendered {rendered} corpus startup commands; unresolved placeholders:\n  {}", unresolved.join("\n  "));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(rendered >= 77, "only {rendered} startup commands found");
}

#[test]
fn corpus_variable_names_are_valid_and_not_reserved() {
    for egg in test_corpus::eggs() {
        for v in egg.variables() {
            assert!(is_valid_variable_name(&v.env_variable), "{}: {}", egg.file, v.env_variable);
            assert!(!is_reserved(&v.env_variable), "{}: {}", egg.file, v.env_variable);
        }
    }
}

#[test]
fn non_integer_values_are_refused_where_bash_evaluates_arithmetic() {
    // The Valheim egg's pattern: bash evaluates the operands of `-eq` as arithmetic, and
    // `a[$(cmd)]` in an arithmetic expression runs `cmd`, quoted or not.
    let template = "./server $( [[ {{ENABLE_CROSSPLAY}} -eq 1 ]] && printf %s -crossplay ) -name \"{{NAME}}\"";
    let hostile = [("ENABLE_CROSSPLAY", "a[$(touch /tmp/pwned)]"), ("NAME", "x")];
    match render_startup(template, hostile, &facts()) {
        Err(StartupError::NotAnInteger { name }) => assert_eq!(name, "ENABLE_CROSSPLAY"),
        other => panic!("expected NotAnInteger, got {other:?}"),
    }
    // Integers pass, and the same name elsewhere (outside arithmetic) may hold any text.
    let fine = [("ENABLE_CROSSPLAY", "1"), ("NAME", "a[$(touch /tmp/pwned)]")];
    assert!(render_startup(template, fine, &facts()).is_ok());
}

/// What `render_startup` makes of `template` when `X` holds `value` (and `O` holds text).
fn render_x(template: &str, value: &str) -> Result<RenderedStartup, StartupError> {
    render_startup(template, [("X", value), ("O", "some text")], &facts())
}

const INJECTION: &str = "a[$(touch /tmp/pwned)]";

#[test]
fn every_arithmetic_context_refuses_non_integers() {
    // Each template evaluates the value of X as arithmetic or as a variable name (checked
    // against bash 5.2: with the injection each runs `touch`).
    let templates = [
        // Arithmetic expansion and commands.
        "echo $(( {{X}} + 1 ))",
        "(( {{X}} > 1 )) && echo big",
        "for (( i={{X}}; i<1; i++ )); do :; done",
        "echo $(( $(echo {{X}}) ))",
        "echo $[{{X}} + 1]",
        "echo \"$(( {{X}} ))\"",
        // `[[ ]]` numeric tests and `-v`.
        "[[ {{X}} -eq 1 ]] && echo one",
        "[[ 1 -lt \"{{X}}\" ]]",
        "[[ -v {{X}} ]]",
        "[[ -v \"{{X}}\" ]]",
        "[ -v {{X}} ]",
        "test -v \"{{X}}\"",
        // Substring offsets and lengths.
        "s=abc; echo ${s:{{X}}}",
        "s=abc; echo ${s:1:{{X}}}",
        "s=abc; echo ${s: -{{X}}}",
        "s=abc; echo \"${s:{{X}}}\"",
        // Array subscripts, in any quoting.
        "arr[{{X}}]=1",
        "arr[ {{X}} ]=1",
        "arr[\"{{X}}\"]=1",
        "echo ${arr[{{X}}]}",
        "echo \"${arr[\"{{X}}\"]}\"",
        "echo ${#arr[{{X}}]}",
        "echo ${!arr[{{X}}]}",
        "unset 'arr[{{X}}]'",
        "unset arr['{{X}}']",
        "arr=({{X}})",
        // Values used as variable names.
        "echo ${!{{X}}}",
        "echo ${{{X}}}",
        "unset {{X}}",
        "read {{X}} <<< hi",
        "mapfile {{X}} < /dev/null",
        "getopts a {{X}}",
        "printf -v {{X}} %s hi",
        "wait -p {{X}}",
        "declare {{X}}",
        "export {{X}}=1",
        "f() { local -n r={{X}}; }; f",
        // `let` and integer variables.
        "let v={{X}}",
        "let \"v = {{X}}\"",
        "builtin let v={{X}}",
        "declare -i v={{X}}",
        "f() { local -i v={{X}}; }; f",
        "typeset -i v={{X}}",
        "export -i v={{X}}",
        "declare -i v; v={{X}}",
        "v={{X}}; declare -i w=1",
        "function f { let v={{X}}; }; f",
        "if true; then let v={{X}}; fi",
        "true && let v={{X}} >/dev/null 2>&1",
        // `${...}` operators the renderer does not know.
        "s=x; echo ${s@{{X}}}",
    ];
    for template in templates {
        match render_x(template, INJECTION) {
            Err(StartupError::NotAnInteger { name }) => assert_eq!(name, "X", "{template}"),
            other => panic!("{template}: expected NotAnInteger, got {other:?}"),
        }
        for integer in ["1", "-2", " 3 ", ""] {
            assert!(render_x(template, integer).is_ok(), "{template} with {integer:?}");
        }
    }
}

#[test]
fn text_contexts_accept_any_value() {
    // Here bash expands the value as text (or as a pattern) and never evaluates it.
    let templates = [
        "echo {{X}} \"{{X}}\" '{{X}}' $'{{X}}'",
        "echo ${s:-{{X}}} ${s:={{X}}} ${s:+{{X}}} ${s-{{X}}} \"${s:-{{X}}}\"",
        "s=abc; echo ${s/b/{{X}}} ${s#{{X}}} ${s%%{{X}}} ${s^^{{X}}}",
        "case {{X}} in a) echo a ;; esac",
        "[ \"{{X}}\" = 1 ] || [ \"{{X}}\" -eq 1 ] 2>/dev/null || test {{X}} = 2",
        "[[ \"{{X}}\" == \"yes\" ]] && [[ -n {{X}} ]]",
        "export FOO={{X}} BAR=\"{{X}}\"; declare BAZ='{{X}}'; local_var={{X}}",
        "printf %s \"{{X}}\"; printf -- '-v %s' \"{{X}}\"",
        "echo $(( 1 + 1 )) {{X}}",
        "echo arr {{X}} [ok]",
        "# (( {{X}} )) in a comment\necho {{X}}",
        "echo \"(( {{X}} ))\"",
    ];
    for template in templates {
        assert!(render_x(template, INJECTION).is_ok(), "{template}");
    }
}

#[test]
fn the_author_s_own_references_are_checked_too() {
    for template in [
        "(( X > 1 ))",
        "(( $X > 1 ))",
        "echo $(( ${X} + 1 ))",
        "[[ $X -eq 1 ]]",
        "[[ X -eq 1 ]]",
        "s=abc; echo ${s:$X}",
        "echo ${arr[X]}",
        "echo ${!X}",
        "let v=X+1",
        "unset \"$X\"",
    ] {
        assert!(matches!(render_x(template, INJECTION), Err(StartupError::NotAnInteger { .. })), "{template}");
        assert!(render_x(template, "4").is_ok(), "{template}");
    }
    // A bare name where bash only takes it as a name is not its value.
    for template in ["export X=\"./lib:$O\"", "unset X", "[[ -v X ]]", "read X <<< hi", "echo X $O"] {
        assert!(render_x(template, INJECTION).is_ok(), "{template}");
    }
    // The platform's values are not checked: they are not a tenant's to choose.
    assert!(render_x("[[ -v SERVER_IP ]] && (( SERVER_IP ))", "1").is_ok());
}

#[test]
fn nul_bytes_in_templates_are_refused() {
    let f = facts();
    assert_eq!(
        render_startup("echo a\0b {{X}}", [("X", "1")], &f).unwrap_err(),
        StartupError::NulInTemplate { offset: 6 }
    );
    assert_eq!(placeholders("\0").unwrap_err(), StartupError::NulInTemplate { offset: 0 });
    assert!(render_startup("echo 'a\0'", std::iter::empty::<(&str, &str)>(), &f).is_err());
}

#[test]
fn arithmetic_constructs_must_be_closed() {
    for (t, what) in [("echo $(( 1 + 2", "arithmetic"), ("echo $[1", "arithmetic"), ("a=(1 2", "array")] {
        match render_startup(t, std::iter::empty::<(&str, &str)>(), &facts()) {
            Err(StartupError::Unterminated { construct, .. }) => assert!(construct.contains(what), "{t}: {construct}"),
            other => panic!("{t}: {other:?}"),
        }
    }
}

#[test]
fn hostile_templates_scan_in_linear_time() {
    // Many distinct placeholders, deep nesting and unclosed constructs: each byte is looked at
    // a bounded number of times (quadratic work here would take minutes).
    let names: String = (0..100_000).map(|i| format!("{{{{V{i}}}}} ")).collect();
    assert_eq!(placeholders(&names).unwrap().len(), 100_000);
    let deep = format!("{}{}", "$(".repeat(50_000), ")".repeat(50_000));
    assert!(placeholders(&deep).is_ok());
    let subscripts = format!("echo {}{{{{X}}}}", "a[".repeat(200_000));
    assert!(matches!(render_x(&subscripts, INJECTION), Err(StartupError::NotAnInteger { .. })));
    // An unclosed `[[` leaves the rest unclassified: evaluated, as far as the renderer knows.
    let tests = "[[ {{X}} ".repeat(100_000);
    assert!(matches!(render_x(&tests, INJECTION), Err(StartupError::NotAnInteger { .. })));
    assert!(render_x(&tests, "7").is_ok());
}
