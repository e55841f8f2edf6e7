use super::*;

fn set(s: &str) -> RuleSet {
    RuleSet::from_rule_string(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[track_caller]
fn pass(rules: &str, values: &[&str]) {
    let set = set(rules);
    for v in values {
        assert_eq!(set.check(Some(v)), Ok(()), "{rules} should accept {v:?}");
    }
}

#[track_caller]
fn fail(rules: &str, values: &[&str]) {
    let set = set(rules);
    for v in values {
        assert!(set.check(Some(v)).is_err(), "{rules} should reject {v:?}");
    }
}

fn var(env: &str, name: &str) -> EggVariable {
    EggVariable {
        name: name.into(),
        description: String::new(),
        env_variable: env.into(),
        default_value: String::new(),
        user_viewable: true,
        user_editable: true,
        rules: Vec::new(),
        field_type: None,
        sort: None,
    }
}

// ---- splitting and parsing

#[test]
fn split_plain() {
    assert_eq!(split_rule_string("required|string|max:20"), ["required", "string", "max:20"]);
    assert_eq!(split_rule_string("required|string|"), ["required", "string", ""]);
    assert_eq!(split_rule_string(""), [""]);
}

#[test]
fn split_keeps_pipe_inside_regex() {
    assert_eq!(split_rule_string("required|regex:/^(a|b)$/|max:5"), ["required", "regex:/^(a|b)$/", "max:5"]);
    assert_eq!(split_rule_string("regex:/^(a|b)$/i"), ["regex:/^(a|b)$/i"]);
    assert_eq!(split_rule_string("not_regex:#a|b#|string"), ["not_regex:#a|b#", "string"]);
    // Escaped delimiter and bracket delimiters that nest.
    assert_eq!(split_rule_string(r"regex:/a\/(b|c)/|min:1"), [r"regex:/a\/(b|c)/", "min:1"]);
    assert_eq!(split_rule_string("regex:{a{1}|b}|min:1"), ["regex:{a{1}|b}", "min:1"]);
    // An unclosed pattern falls back to Laravel's naive split.
    assert_eq!(split_rule_string("regex:/a|b"), ["regex:/a", "b"]);
    // `in:` values are not patterns.
    assert_eq!(split_rule_string("in:a|b"), ["in:a", "b"]);
}

#[test]
fn parse_rejoins_naively_split_regex() {
    let list: Vec<String> = ["required", "regex:/^(a", "b)$/", "max:5"].iter().map(|s| s.to_string()).collect();
    let set = parse_rules(&list).unwrap();
    assert_eq!(set.rules().len(), 3);
    assert_eq!(set.rules()[1].to_string(), "regex:/^(a|b)$/");
    assert!(set.check(Some("b")).is_ok());
    assert!(set.check(Some("c")).is_err());
}

#[test]
fn parse_ignores_empty_and_normalizes_names() {
    let set = set("required|| string |DIGITS_BETWEEN:1,3|digitsBetween:1,3|alpha-dash|int");
    let names: Vec<&str> = set.rules().iter().map(Rule::name).collect();
    assert_eq!(names, ["required", "string", "digits_between", "digits_between", "alpha_dash", "integer"]);
}

#[test]
fn unknown_rule_is_typed_error() {
    assert_eq!(
        RuleSet::from_rule_string("required|frobnicate:3"),
        Err(RuleError::Unknown { rule: "frobnicate:3".into() })
    );
    assert!(matches!(RuleSet::from_rule_string("bool"), Err(RuleError::Unknown { .. })));
}

#[test]
fn parameter_errors_are_typed() {
    assert!(matches!(RuleSet::from_rule_string("max"), Err(RuleError::MissingParameter { .. })));
    assert!(matches!(RuleSet::from_rule_string("max:"), Err(RuleError::MissingParameter { .. })));
    assert!(matches!(RuleSet::from_rule_string("max:abc"), Err(RuleError::InvalidParameter { .. })));
    assert!(matches!(RuleSet::from_rule_string("between:1"), Err(RuleError::MissingParameter { .. })));
    assert!(matches!(RuleSet::from_rule_string("between:1,2,3"), Err(RuleError::InvalidParameter { .. })));
    assert!(matches!(RuleSet::from_rule_string("digits_between:1,x"), Err(RuleError::InvalidParameter { .. })));
    assert!(matches!(RuleSet::from_rule_string("digits:-1"), Err(RuleError::InvalidParameter { .. })));
    assert!(matches!(RuleSet::from_rule_string("in"), Err(RuleError::MissingParameter { .. })));
    assert!(matches!(RuleSet::from_rule_string("regex:"), Err(RuleError::MissingParameter { .. })));
}

#[test]
fn regex_errors_are_typed() {
    let err = |s: &str| match RuleSet::from_rule_string(s) {
        Err(RuleError::Regex { source, .. }) => source,
        other => panic!("{s}: {other:?}"),
    };
    assert_eq!(err("regex:/abc"), PhpRegexError::NoEndingDelimiter('/'));
    assert_eq!(err("regex:abc"), PhpRegexError::BadDelimiter('a'));
    assert_eq!(err(r"regex:\abc\"), PhpRegexError::BadDelimiter('\\'));
    assert_eq!(err("regex:/abc/q"), PhpRegexError::UnknownModifier('q'));
    assert_eq!(err("regex:/abc/e"), PhpRegexError::UnknownModifier('e'));
    // PCRE features the regex crate lacks.
    assert!(matches!(err("regex:/(?=a)b/"), PhpRegexError::Compile(_)));
    assert!(matches!(err(r"regex:/(a)\1/"), PhpRegexError::Compile(_)));
    assert!(matches!(err("regex:/a++/"), PhpRegexError::Compile(_)));
    assert!(matches!(err("regex:/[a/"), PhpRegexError::Compile(_)));
    // Accepted by the crate with another meaning, so refused.
    assert!(matches!(err("regex:/a*+b/"), PhpRegexError::Compile(_)));
    assert!(matches!(err("regex:/a{2}+/"), PhpRegexError::Compile(_)));
    assert!(matches!(err("regex:/a?+/"), PhpRegexError::Compile(_)));
    assert!(matches!(err(r"regex:/\v/"), PhpRegexError::Compile(_)));
    let msg = RuleSet::from_rule_string("regex:/(?=a)b/").unwrap_err().to_string();
    assert!(msg.starts_with("validation rule `regex:/(?=a)b/`: cannot compile pattern"), "{msg}");
}

#[test]
fn display_round_trips() {
    for s in [
        "required|nullable|present|string|integer|numeric|boolean",
        "min:1025|max:65535|between:1,100|size:32|gt:0|gte:1|lt:5|lte:0.5",
        r#"in:,beta|not_in:a,"b,c",d|starts_with:x|ends_with:.jar,.zip"#,
        r"regex:/^([\w\d._-]+)(\.jar)$/|not_regex:#a|b#i",
        "digits:4|digits_between:17,18|alpha|alpha_dash|alpha_num|url",
    ] {
        let parsed = set(s);
        assert_eq!(parsed.to_string(), s);
        assert_eq!(set(&parsed.to_string()), parsed);
    }
}

// ---- rules, one by one

#[test]
fn required() {
    let s = set("required");
    assert!(s.check(Some("x")).is_ok());
    assert!(s.check(Some(" x ")).is_ok());
    assert!(s.check(None).is_err());
    assert!(s.check(Some("")).is_err());
    assert!(s.check(Some(" \t\n")).is_err());
}

#[test]
fn present() {
    let s = set("present");
    assert!(s.check(Some("")).is_ok());
    assert!(s.check(Some("x")).is_ok());
    assert!(s.check(None).is_err());
    let s = set("nullable|present");
    assert!(s.check(None).is_err());
}

#[test]
fn nullable_skips_other_rules_on_empty() {
    let s = set("nullable|string|max:5|regex:/^a+$/|integer|url");
    assert!(s.check(None).is_ok());
    assert!(s.check(Some("")).is_ok());
    assert!(s.check(Some("   ")).is_ok());
    assert!(s.check(Some("b")).is_err());
    // `required` still runs.
    assert!(set("nullable|required").check(Some("")).is_err());
}

#[test]
fn empty_without_nullable_behaves_like_laravel_null() {
    for failing in ["string", "integer", "int", "numeric", "boolean", "url", "alpha_dash", "alpha_num", "min:1"] {
        assert!(set(failing).check(Some("")).is_err(), "{failing}");
        assert!(set(failing).check(None).is_err(), "{failing}");
    }
    for failing in ["regex:/^a*$/", "not_regex:/b/", "gt:-1", "between:1,5", "size:1", "digits:1", "ends_with:x"] {
        assert!(set(failing).check(Some("")).is_err(), "{failing}");
    }
    for passing in ["max:20", "min:0", "in:,beta", "not_in:a,b", "digits_between:0,3", "size:0"] {
        assert!(set(passing).check(Some("")).is_ok(), "{passing}");
        assert!(set(passing).check(None).is_ok(), "{passing}");
    }
    assert!(set("in:a,b").check(Some("")).is_err());
    assert!(set("not_in:,b").check(Some("")).is_err());
}

#[test]
fn string() {
    pass("string", &["x", "0", " spaced ", "ünïcödé"]);
}

#[test]
fn integer_and_int() {
    for rules in ["integer", "int"] {
        pass(rules, &["0", "25565", "-3", "+7", " 12 ", "9223372036854775807"]);
        fail(rules, &["1.5", "05", "1e3", "abc", "12abc", "9223372036854775808"]);
    }
}

#[test]
fn numeric() {
    pass("numeric", &["0", "-1", "1.5", ".5", "1e3", " 7 "]);
    fail("numeric", &["abc", "0x1A", "1,5", "1e", "inf"]);
}

#[test]
fn boolean() {
    pass("boolean", &["true", "false", "1", "0"]);
    fail("boolean", &["yes", "no", "TRUE", "2", " 1", "on"]);
}

#[test]
fn min_max_size_between_on_strings() {
    pass("string|min:5|max:20", &["hello", "12345678901234567890"]);
    fail("string|min:5|max:20", &["four", "123456789012345678901"]);
    // Characters, not bytes.
    pass("max:3", &["äöü"]);
    pass("size:32", &["0123456789abcdef0123456789abcdef"]);
    fail("size:32", &["0123456789abcdef"]);
    pass("between:3,15", &["abc", "fifteen-chars-x"]);
    fail("between:3,15", &["ab", "sixteen-chars-xx"]);
    // Without a numeric rule, a number's size is its length.
    pass("max:3", &["999"]);
    fail("max:3", &["1000"]);
    fail("string|min:0|max:65535", &[&"x".repeat(65536)]);
}

#[test]
fn min_max_size_between_on_numbers() {
    pass("integer|min:1025|max:65535", &["1025", "65535", "25565"]);
    fail("integer|min:1025|max:65535", &["1024", "65536", "80"]);
    pass("numeric|between:1,24", &["1", "24", "12.5"]);
    fail("numeric|between:1,24", &["0.5", "25"]);
    pass("integer|size:5", &["5"]);
    fail("integer|size:5", &["55555"]);
    pass("required|numeric|min:0", &["0", "1000000"]);
    fail("required|numeric|min:0", &["-1"]);
    // A non-numeric value of a numeric field is measured by length (and fails `integer` first).
    let err = set("integer|max:5").check(Some("abc")).unwrap_err();
    assert_eq!(err.rule, Rule::Integer);
    assert_eq!(set("max:5|integer").check(Some("abc")).unwrap_err().rule, Rule::Integer);
}

#[test]
fn gt_gte_lt_lte() {
    pass("integer|gt:0", &["1", "99"]);
    fail("integer|gt:0", &["0", "-1"]);
    // Numbers only, even without a numeric rule.
    pass("gt:0", &["0.1"]);
    fail("gt:0", &["abc", "x"]);
    pass("gte:1", &["1", "2"]);
    fail("gte:1", &["0.99"]);
    pass("lt:10", &["9"]);
    fail("lt:10", &["10"]);
    pass("lte:10", &["10"]);
    fail("lte:10", &["10.5"]);
}

#[test]
fn in_and_not_in() {
    pass("in:vanilla,oxide,carbon", &["vanilla", "carbon"]);
    fail("in:vanilla,oxide,carbon", &["Vanilla", "paper", "vanilla,oxide"]);
    // PHP's loose comparison of numeric strings.
    pass("integer|in:0,1,2,3,-1,-2,-3", &["-3", "0"]);
    fail("integer|in:0,1,2,3,-1,-2,-3", &["4"]);
    pass("numeric|in:0,1,2,3", &["01", "3.0"]);
    pass("in:\"a,b\",c", &["a,b", "c"]);
    pass("not_in:root,admin", &["user"]);
    fail("not_in:root,admin", &["root"]);
}

#[test]
fn regex_rule() {
    let jar = r"regex:/^([\w\d._-]+)(\.jar)$/";
    pass(jar, &["server.jar", "paper-1.20.4.jar", "a_b.jar"]);
    fail(jar, &["server.zip", "../x.jar", "a b.jar", "server.jar\n", "sërver.jar"]);
    pass(r"regex:/^[\w.-]*$/|max:64", &["1.20.4", "latest"]);
    fail(r"regex:/^[\w.-]*$/", &["a/b", "$(id)"]);
    pass(r"regex:/^(\w{1,20})$/", &["abc_123"]);
    fail(r"regex:/^(\w{1,20})$/", &[&"a".repeat(21)]);
    // Search semantics and flags.
    pass("regex:/b/", &["abc"]);
    pass("regex:/^ABC$/i", &["abc"]);
    fail("regex:/^ABC$/", &["abc"]);
    pass("regex:/^a.c$/s", &["a\nc"]);
    pass("regex:/^b$/m", &["a\nb\nc"]);
    pass("regex:/^ a b c $/x", &["abc"]);
    pass(r"regex:/^\w+$/u", &["sërver"]);
    fail("regex:/b/A", &["abc"]);
    pass("regex:/a/A", &["abc"]);
    pass("regex:#^a/b$#", &["a/b"]);
    pass(r"regex:/^a\/b$/", &["a/b"]);
    pass("regex:(^[a-c]+$)", &["abc"]);
    pass(r"regex:/^\<x\>$/", &["<x>"]);
    pass("regex:/^(a|b)$/|max:1", &["a", "b"]);
    // Where PCRE and the crate read the same text differently.
    pass("regex:/^[a[]+$/", &["a[", "[["]);
    pass("regex:/^[a&&b]+$/", &["a&b"]);
    pass("regex:/^[a~~b]+$/", &["~"]);
    pass("regex:/^[ a]+$/x", &[" a"]);
    fail("regex:/^[ a]+$/x", &["b"]);
    pass("regex:/^a # comment [\n$/x", &["a"]);
    pass("regex:/^[[:alpha:]]+$/", &["abc"]);
    pass("regex:/^[]a]+$/", &["]a"]);
    pass("regex:/^[^]a]+$/", &["bc"]);
    pass("regex:/^a{2}$/", &["aa"]);
    pass("regex:/^a{1,}?$/", &["aaa"]);
    pass("regex:/^a{x}$/", &["a{x}"]);
    pass("regex:/^a+?$/", &["aa"]);
    pass("regex:/^(?:a|b)(?i)C$/", &["ac"]);
    pass(r"regex:/^\++$/", &["++"]);
    fail("regex:/^(a|b)$/|max:1", &["c"]);
}

#[test]
fn not_regex_rule() {
    pass("not_regex:/[;&|]/", &["safe"]);
    fail("not_regex:/[;&|]/", &["a;b", "a|b"]);
}

#[test]
fn digits_and_digits_between() {
    pass("required|digits_between:17,18", &["12345678901234567", "123456789012345678"]);
    fail("required|digits_between:17,18", &["1234567890123456", "1234567890123456789", "1234567890123456x"]);
    pass("required|numeric|digits_between:1,3", &["0", "255", "007"]);
    fail("required|numeric|digits_between:1,3", &["1000", "-1", "1.5"]);
    pass("digits:4", &["0042"]);
    fail("digits:4", &["42", "4.20"]);
}

#[test]
fn alpha_family() {
    pass("alpha", &["abc", "Äbc", "日本"]);
    fail("alpha", &["abc1", "a-b", "a b"]);
    pass("alpha_num", &["abc123", "Äb3", "٣"]);
    fail("alpha_num", &["a-b", "a_b", "a b", "a.b"]);
    pass("alpha_dash", &["my-world_1", "Wëlt", "-_-"]);
    fail("alpha_dash", &["a b", "a.b", "a/b", "a;b"]);
}

#[test]
fn url() {
    pass(
        "url",
        &[
            "https://example.com",
            "http://example.com:8080/path?q=1&r=2#frag",
            "https://user:pass@sub.example.co.uk/a/b",
            "http://127.0.0.1:25565",
            "http://[::1]:80/",
            "https://münchen.de/",
            "ftp://files.example.org/pub/file.zip",
            "http://localhost/x",
        ],
    );
    fail("url", &["example.com", "https://", "not a url", "https://exa mple.com", "javascript:alert(1)", "/relative"]);
}

#[test]
fn starts_with_and_ends_with() {
    pass("ends_with:.jar,.zip", &["server.jar", "pack.zip"]);
    fail("ends_with:.jar,.zip", &["server.txt", ".jarx"]);
    pass("starts_with:http,ftp", &["https://x"]);
    fail("starts_with:http,ftp", &["sftp://x"]);
}

#[test]
fn first_failure_is_reported_in_order() {
    let s = set("required|string|max:3");
    let e = s.check(Some("toolong")).unwrap_err();
    assert_eq!(e.rule, Rule::Max(3.0));
    assert_eq!(e.reason, "may not be longer than 3 characters");
    let e = set("required|integer|between:1025,65535").check(Some("80")).unwrap_err();
    assert_eq!(e.reason, "must be between 1025 and 65535");
}

#[test]
fn validation_error_names_variable_and_rule() {
    let v = var("SERVER_JARFILE", "Server Jar File");
    let rules = set(r"required|regex:/^([\w\d._-]+)(\.jar)$/");
    assert!(validate(&v, &rules, Some("server.jar")).is_ok());
    let err = validate(&v, &rules, Some("server.zip")).unwrap_err();
    assert_eq!(err.to_string(), r"SERVER_JARFILE (Server Jar File): must match regex:/^([\w\d._-]+)(\.jar)$/");
    assert_eq!(err.env_variable, "SERVER_JARFILE");
    assert_eq!(err.rule.name(), "regex");
    let err = validate(&v, &rules, None).unwrap_err();
    assert_eq!(err.to_string(), "SERVER_JARFILE (Server Jar File): is required");
}

#[test]
fn static_patterns_compile() {
    assert!(ALPHA.is_some() && ALPHA_DASH.is_some() && ALPHA_NUM.is_some() && URL.is_some());
}

#[test]
fn hostile_rule_strings_do_not_panic() {
    for s in [
        "regex:",
        "regex:/",
        "regex:(((",
        "regex:/\\",
        "between:,",
        "in:\"",
        "min:1e999",
        ":",
        "|||",
        "regex:/é/",
        "regex:/[é]/",
    ] {
        let _ = RuleSet::from_rule_string(s);
    }
}

// ---- corpus

#[test]
fn corpus_rules_all_parse() {
    let mut variables = 0;
    let mut failures = Vec::new();
    for egg in test_corpus::eggs() {
        for v in egg.variables() {
            variables += 1;
            if let Err(e) = parse_rules(&v.rules) {
                failures.push(format!("{}: {}: {e}", egg.file, v.env_variable));
            }
        }
    }
    assert!(variables > 300, "only {variables} variables found");
    assert!(failures.is_empty(), "rules that do not parse:\n{}", failures.join("\n"));
}

#[test]
fn corpus_defaults_against_their_rules() {
    let mut checked = 0;
    let mut failing = Vec::new();
    for egg in test_corpus::eggs() {
        for v in egg.variables() {
            let Ok(rules) = parse_rules(&v.rules) else { continue };
            checked += 1;
            if let Err(e) = validate(&v, &rules, Some(&v.default_value)) {
                failing.push(format!("  {}: {e} (default {:?}, rules {})", egg.file, v.default_value, rules));
            }
        }
    }
    println!("{} of {checked} corpus defaults fail their own rules:\n{}", failing.len(), failing.join("\n"));
}

/// Patterns that never close, in 200 KB rule strings and lists: every entry used to rescan the
/// rest of the string (or the joined list) for its delimiter or name, which took minutes
/// (debug build); each byte is now read a bounded number of times.
#[test]
fn unclosed_patterns_in_huge_rules_parse_in_linear_time() {
    let no_end = |result: Result<RuleSet, RuleError>, close: char| {
        assert!(
            matches!(result, Err(RuleError::Regex { source: PhpRegexError::NoEndingDelimiter(c), .. }) if c == close),
            "expected NoEndingDelimiter({close})"
        );
    };
    no_end(RuleSet::from_rule_string(&format!("required|regex:/a{}", "|b".repeat(100_000))), '/');
    no_end(RuleSet::from_rule_string(&"regex:(|".repeat(25_000)), ')');
    no_end(RuleSet::from_rule_string(&"not_regex:{a|".repeat(20_000)), '}');
    let list: Vec<String> =
        std::iter::once("regex:/a".to_owned()).chain((0..100_000).map(|i| format!("b{i}"))).collect();
    no_end(parse_rules(&list), '/');
    // A pattern that closes after many pieces is still joined, reading each piece once.
    let mut pieces: Vec<String> = vec!["regex:/^(a".to_owned()];
    pieces.extend((0..100_000).map(|_| "b".to_owned()));
    pieces.push("c)$/".to_owned());
    let set = parse_rules(&pieces).unwrap();
    assert!(matches!(&set.rules()[0], Rule::Regex(re) if re.is_match("b") && !re.is_match("d")));
    // Braces that start no repetition used to be looked up to the next `}` one by one.
    assert!(RuleSet::from_rule_string(&format!("regex:/^a{}$/", "{".repeat(100_000))).is_ok());
}

#[test]
fn after_a_pattern_that_never_closes_the_string_splits_naively() {
    assert_eq!(split_rule_string("regex:/a|regex:#b|c#|max:1"), ["regex:/a", "regex:#b", "c#", "max:1"]);
    // The set is refused at that first pattern either way.
    assert!(RuleSet::from_rule_string("regex:/a|regex:#b|c#").is_err());
}
