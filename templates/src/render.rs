//! Variable replacement in the files a layer marks `render`, with tera, on hostile input.
//!
//! The context has two values: `server` (whatever the caller gives: id, memory, disk, cpu,
//! swap, io, ...) and `env` (the server's environment: `SERVER_PORT`, egg variables), so
//! `{{ server.memory }}` and `{{ env.SERVER_PORT }}` work.
//!
//! # Templates are hostile
//! Template authors are strangers, so a template can neither reach the host nor stall or
//! starve the node:
//!
//! - **No host access**: `get_env`, `now` and `get_random` fail; `range` fails past
//!   10,000 items and with `step_by=0`; autoescaping is off (files are configs, not HTML).
//! - **A subset of tera**: `include`, `extends`, `import`, macros, blocks and filter sections
//!   are refused before rendering; so are unknown filters and functions, array literals of
//!   more than 4,096 items and concatenations of more than 64 parts. Statements and
//!   expressions may nest [`RenderLimits::max_nesting`] deep, and a tag (`{{ … }}`,
//!   `{% … %}`) is at most 16 KiB with at most 256 operators. These are checked on the text
//!   before tera parses it, reading comments, strings and raw blocks as tera does (an
//!   unterminated one is an error), so no template can exhaust the parser's or the
//!   renderer's stack; parsing and rendering run on a thread of their own with a stack
//!   sized for what the checks allow, and a panic inside tera is a render error.
//! - **A budget**: the parsed template is instrumented: every expression passes through a
//!   guard and every loop iteration ticks. Each guard or tick is a step, and the values it
//!   sees count as work; rendering fails past [`RenderLimits::max_steps`],
//!   [`RenderLimits::max_work_bytes`] or [`RenderLimits::timeout`], and no single value
//!   (a filter's result, a `set`) may exceed [`RenderLimits::max_value_bytes`]. Filters that
//!   can multiply their input (`replace`, `indent`, `join`, `split`) have their result's
//!   size computed before they run.
//! - **Bounded input and output**: at most [`RenderLimits::max_input_bytes`] of template;
//!   the output is written through `render_to` (which streams node by node) into a writer
//!   that fails past [`RenderLimits::max_output_bytes`]. Error messages are cut to 1 KiB.
//!
//! A file marked `render` that is not UTF-8 is copied unchanged. A bad template fails with
//! [`Error::Render`] naming the file and, when it can be found, the line: from the parser's
//! `line:col` for syntax errors, from where the failing variable or filter is used for
//! render errors.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tera::ast::{Expr, ExprVal, FunctionCall, Node, WS};

use crate::error::{Error, Result};

const GUARD: &str = "__nexus_guard";
const TICK: &str = "__nexus_tick";
const MAX_ARRAY_LITERAL: usize = 4096;
const MAX_CONCAT_PARTS: usize = 64;
const MAX_RANGE: usize = 10_000;
const MAX_SPLIT_PARTS: usize = 100_000;

/// Filters a template may use (tera's own, each wrapped in the budget); `default` and
/// `safe` are handled by tera itself.
const FILTERS: &[&str] = &[
    "upper",
    "lower",
    "trim",
    "trim_start",
    "trim_end",
    "trim_start_matches",
    "trim_end_matches",
    "truncate",
    "wordcount",
    "replace",
    "capitalize",
    "title",
    "linebreaksbr",
    "indent",
    "striptags",
    "spaceless",
    "escape",
    "escape_xml",
    "addslashes",
    "split",
    "int",
    "float",
    "first",
    "last",
    "nth",
    "join",
    "sort",
    "unique",
    "slice",
    "group_by",
    "filter",
    "map",
    "concat",
    "abs",
    "pluralize",
    "round",
    "length",
    "reverse",
    "json_encode",
    "as_str",
    "get",
];
/// Functions a template may call.
const FUNCTIONS: &[&str] = &["range", "throw"];
/// Functions that would reach the host: replaced by ones that fail.
const HOST_FUNCTIONS: &[&str] = &["get_env", "now", "get_random"];

/// Bounds on rendering one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RenderLimits {
    /// Largest template (1 MiB).
    pub max_input_bytes: usize,
    /// Largest output (4 MiB).
    pub max_output_bytes: usize,
    /// Largest single value an expression, a filter or a `set` may produce (1 MiB).
    pub max_value_bytes: usize,
    /// Most steps: guarded expressions plus loop iterations (1,000,000).
    pub max_steps: u64,
    /// Most bytes of values seen by guards and filters, all together (32 MiB).
    pub max_work_bytes: u64,
    /// Deepest nesting of statements, and of brackets in an expression (32).
    pub max_nesting: usize,
    /// Longest rendering of one file (2 s).
    #[serde(with = "millis")]
    pub timeout: Duration,
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

impl Default for RenderLimits {
    fn default() -> Self {
        Self {
            max_input_bytes: 1 << 20,
            max_output_bytes: 4 << 20,
            max_value_bytes: 1 << 20,
            max_steps: 1_000_000,
            max_work_bytes: 32 << 20,
            max_nesting: 32,
            timeout: Duration::from_secs(2),
        }
    }
}

/// What templates see: `server` and `env`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RenderContext {
    /// The server (`{{ server.memory }}`): any JSON value the caller builds.
    pub server: Value,
    /// The environment (`{{ env.SERVER_PORT }}`).
    pub env: BTreeMap<String, String>,
    /// Bounds on each file's rendering.
    #[serde(default)]
    pub limits: RenderLimits,
}

impl RenderContext {
    /// A context with the default limits.
    pub fn new(server: Value, env: BTreeMap<String, String>) -> Self {
        Self { server, env, limits: RenderLimits::default() }
    }
}

/// The outcome of [`render`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rendered {
    /// The rendered text.
    Text(Vec<u8>),
    /// Not UTF-8: the file is copied unchanged.
    Binary,
}

/// The budget of one rendering, shared by the guards, the ticks and the filters.
struct Budget {
    steps: AtomicU64,
    work: AtomicU64,
    deadline: Instant,
    limits: RenderLimits,
}

impl Budget {
    fn charge(&self, bytes: u64) -> tera::Result<()> {
        let steps = self.steps.fetch_add(1, Ordering::Relaxed) + 1;
        if steps > self.limits.max_steps {
            return Err(tera::Error::msg(format!(
                "template budget exceeded: more than {} steps",
                self.limits.max_steps
            )));
        }
        let work = self.work.fetch_add(bytes, Ordering::Relaxed).saturating_add(bytes);
        if work > self.limits.max_work_bytes {
            return Err(tera::Error::msg(format!(
                "template budget exceeded: more than {} bytes of values processed",
                self.limits.max_work_bytes
            )));
        }
        if Instant::now() > self.deadline {
            return Err(tera::Error::msg(format!(
                "template budget exceeded: rendering took over {:?}",
                self.limits.timeout
            )));
        }
        Ok(())
    }

    fn check_value(&self, what: &str, value: &Value) -> tera::Result<u64> {
        let size = value_size(value);
        if size > self.limits.max_value_bytes as u64 {
            return Err(tera::Error::msg(format!(
                "{what} produced a value of more than {} bytes",
                self.limits.max_value_bytes
            )));
        }
        self.charge(size)?;
        Ok(size)
    }
}

/// Approximate memory of a value: string bytes, plus 16 per item.
fn value_size(value: &Value) -> u64 {
    match value {
        Value::String(s) => s.len() as u64 + 16,
        Value::Array(items) => items.iter().map(value_size).sum::<u64>() + 16,
        Value::Object(map) => map.iter().map(|(k, v)| k.len() as u64 + value_size(v)).sum::<u64>() + 16,
        _ => 16,
    }
}

fn arg_str<'a>(args: &'a HashMap<String, Value>, name: &str) -> Option<&'a str> {
    args.get(name).and_then(Value::as_str)
}

/// The size of the result of a filter that can multiply its input, before running it.
fn predicted_size(name: &str, value: &Value, args: &HashMap<String, Value>) -> Option<u64> {
    match name {
        "replace" => {
            let s = value.as_str()?;
            let (from, to) = (arg_str(args, "from")?, arg_str(args, "to")?);
            let count = if from.is_empty() { s.chars().count() + 1 } else { s.matches(from).count() };
            Some(s.len() as u64 + (count as u64).saturating_mul(to.len() as u64))
        }
        "indent" => {
            let s = value.as_str()?;
            let prefix = arg_str(args, "prefix").map_or(4, str::len);
            Some(s.len() as u64 + (s.lines().count() as u64 + 1).saturating_mul(prefix as u64))
        }
        "join" => {
            let items = value.as_array()?;
            let sep = arg_str(args, "sep").map_or(0, str::len);
            Some(value_size(value) + (items.len() as u64).saturating_mul(sep as u64))
        }
        "split" => {
            let s = value.as_str()?;
            let pat = arg_str(args, "pat")?;
            let parts = if pat.is_empty() { s.len() + 2 } else { s.matches(pat).count() + 1 };
            if parts > MAX_SPLIT_PARTS {
                return Some(u64::MAX);
            }
            Some(s.len() as u64 + parts as u64 * 16)
        }
        _ => None,
    }
}

/// A writer that refuses to grow past its cap.
struct Capped {
    out: Vec<u8>,
    cap: usize,
    overflowed: bool,
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > self.cap {
            self.overflowed = true;
            return Err(std::io::Error::other("output limit reached"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A tera instance with only the allowed, budgeted filters and functions.
fn sandboxed_tera(budget: &Arc<Budget>) -> tera::Tera {
    let mut tera = tera::Tera::default();
    tera.autoescape_on(Vec::new());
    let builtins = std::mem::take(&mut tera.filters);
    for name in FILTERS {
        let Some(inner) = builtins.get(*name).cloned() else { continue };
        let budget = Arc::clone(budget);
        let name: &'static str = name;
        tera.register_filter(name, move |value: &Value, args: &HashMap<String, Value>| {
            budget.charge(value_size(value) + args.values().map(value_size).sum::<u64>())?;
            if let Some(size) = predicted_size(name, value, args) {
                if size > budget.limits.max_value_bytes as u64 {
                    return Err(tera::Error::msg(format!(
                        "filter `{name}` would produce more than {} bytes",
                        budget.limits.max_value_bytes
                    )));
                }
            }
            let out = inner.filter(value, args)?;
            budget.check_value(&format!("filter `{name}`"), &out)?;
            Ok(out)
        });
    }
    let guard = Arc::clone(budget);
    tera.register_filter(GUARD, move |value: &Value, _: &HashMap<String, Value>| {
        guard.check_value("an expression", value)?;
        Ok(value.clone())
    });
    let tick = Arc::clone(budget);
    tera.register_function(TICK, move |_: &HashMap<String, Value>| {
        tick.charge(0)?;
        Ok(Value::String(String::new()))
    });
    for name in HOST_FUNCTIONS {
        let name: &'static str = name;
        tera.register_function(name, move |_: &HashMap<String, Value>| -> tera::Result<Value> {
            Err(tera::Error::msg(format!("function `{name}` is not available in templates")))
        });
    }
    let ranged = Arc::clone(budget);
    tera.register_function("range", move |args: &HashMap<String, Value>| range(&ranged, args));
    tera
}

/// tera's `range` (`start`, `end`, `step_by`, read as tera reads them: `usize`), within
/// the budget: at most [`MAX_RANGE`] items, and a `step_by` of 0 refused (tera's own loops
/// forever on it).
fn range(budget: &Budget, args: &HashMap<String, Value>) -> tera::Result<Value> {
    let arg = |name: &str, default: Option<usize>| -> tera::Result<usize> {
        match args.get(name) {
            Some(value) => serde_json::from_value::<usize>(value.clone()).map_err(|_| {
                tera::Error::msg(format!("Function `range` received {name}={value} but `{name}` can only be a number"))
            }),
            None => default
                .ok_or_else(|| tera::Error::msg(format!("Function `range` was called without a `{name}` argument"))),
        }
    };
    let (start, end, step) = (arg("start", Some(0))?, arg("end", None)?, arg("step_by", Some(1))?);
    if step == 0 {
        return Err(tera::Error::msg("Function `range` was called with `step_by=0`"));
    }
    if start > end {
        return Err(tera::Error::msg("Function `range` was called with a `start` argument greater than the `end` one"));
    }
    if (end - start).div_ceil(step) > MAX_RANGE {
        return Err(tera::Error::msg(format!("`range` is limited to {MAX_RANGE} items")));
    }
    let items: Vec<Value> = (start..end).step_by(step).map(Value::from).collect();
    budget.charge(items.len() as u64 * 16)?;
    Ok(Value::Array(items))
}

/// Refuses what templates may not use, and instruments the rest (see the module docs).
struct Instrument {
    refused: Option<String>,
}

impl Instrument {
    fn refuse(&mut self, what: String) {
        if self.refused.is_none() {
            self.refused = Some(what);
        }
    }

    fn nodes(&mut self, nodes: &mut [Node]) {
        for node in nodes.iter_mut() {
            match node {
                Node::Text(_) | Node::Raw(..) | Node::Comment(..) | Node::Break(_) | Node::Continue(_) => {}
                Node::VariableBlock(_, expr) => self.expr(expr),
                Node::Set(_, set) => self.expr(&mut set.value),
                Node::If(branches, _) => {
                    for (_, condition, body) in &mut branches.conditions {
                        self.expr(condition);
                        self.nodes(body);
                    }
                    if let Some((_, body)) = &mut branches.otherwise {
                        self.nodes(body);
                    }
                }
                Node::Forloop(_, forloop, _) => {
                    self.expr(&mut forloop.container);
                    self.nodes(&mut forloop.body);
                    let call = FunctionCall { name: TICK.into(), args: HashMap::new() };
                    forloop.body.insert(0, Node::VariableBlock(WS::default(), Expr::new(ExprVal::FunctionCall(call))));
                    if let Some(body) = &mut forloop.empty_body {
                        self.nodes(body);
                    }
                }
                Node::Include(..) => self.refuse("`include` is not allowed in templates".into()),
                Node::Extends(..) => self.refuse("`extends` is not allowed in templates".into()),
                Node::ImportMacro(..) => self.refuse("`import` is not allowed in templates".into()),
                Node::MacroDefinition(..) => self.refuse("macros are not allowed in templates".into()),
                Node::Block(..) | Node::Super => self.refuse("blocks are not allowed in templates".into()),
                Node::FilterSection(..) => self.refuse("filter sections are not allowed in templates".into()),
            }
        }
    }

    fn call(&mut self, call: &mut FunctionCall, is_filter: bool) {
        let allowed = if is_filter {
            FILTERS.contains(&call.name.as_str()) || call.name == "default" || call.name == "safe"
        } else {
            FUNCTIONS.contains(&call.name.as_str()) || HOST_FUNCTIONS.contains(&call.name.as_str())
        };
        if !allowed {
            let kind = if is_filter { "filter" } else { "function" };
            self.refuse(format!("{kind} `{}` is not allowed in templates", call.name));
        }
        for arg in call.args.values_mut() {
            self.expr(arg);
        }
    }

    fn val(&mut self, val: &mut ExprVal) {
        match val {
            ExprVal::String(_) | ExprVal::Int(_) | ExprVal::Float(_) | ExprVal::Bool(_) | ExprVal::Ident(_) => {}
            ExprVal::Math(m) => {
                self.expr(&mut m.lhs);
                self.expr(&mut m.rhs);
            }
            ExprVal::Logic(l) => {
                self.expr(&mut l.lhs);
                self.expr(&mut l.rhs);
            }
            ExprVal::In(i) => {
                self.expr(&mut i.lhs);
                self.expr(&mut i.rhs);
            }
            ExprVal::Test(t) => t.args.iter_mut().for_each(|a| self.expr(a)),
            ExprVal::MacroCall(_) => self.refuse("macros are not allowed in templates".into()),
            ExprVal::FunctionCall(call) => self.call(call, false),
            ExprVal::Array(items) => {
                if items.len() > MAX_ARRAY_LITERAL {
                    self.refuse(format!("array literals are limited to {MAX_ARRAY_LITERAL} items"));
                }
                items.iter_mut().for_each(|e| self.expr(e));
            }
            ExprVal::StringConcat(concat) => {
                if concat.values.len() > MAX_CONCAT_PARTS {
                    self.refuse(format!("concatenations are limited to {MAX_CONCAT_PARTS} parts"));
                }
                concat.values.iter_mut().for_each(|v| self.val(v));
            }
        }
    }

    fn expr(&mut self, expr: &mut Expr) {
        self.val(&mut expr.val);
        for filter in &mut expr.filters {
            self.call(filter, true);
        }
        expr.filters.push(FunctionCall { name: GUARD.into(), args: HashMap::new() });
    }
}

/// Longest tag (`{{ … }}`, `{% … %}`), in bytes, checked before parsing.
const MAX_TAG_BYTES: usize = 16 << 10;
/// Most binary operators (`+ - * / % ~ == != < > <= >= and or in is not`) in one tag: each
/// one is a level of the expression tree tera builds, parses and renders recursively.
const MAX_TAG_OPERATORS: usize = 256;
/// Stack of the thread a template is parsed and rendered on: tera recurses once per
/// operator and per nested statement (about 15 KiB a level in a debug build), so
/// [`MAX_TAG_OPERATORS`] inside [`RenderLimits::max_nesting`] statements fits with room to
/// spare. Only the pages used are ever touched.
const RENDER_STACK_BYTES: usize = 32 << 20;

/// Whether `bytes[i..]` is tera's `endraw_tag`: `{%` or `{%-`, whitespace, `endraw`,
/// whitespace, `%}` or `-%}` (pest's implicit whitespace between the tokens).
fn endraw_at(bytes: &[u8], i: usize) -> bool {
    let Some(rest) = bytes.get(i..).and_then(|b| b.strip_prefix(b"{%")) else { return false };
    let rest = rest.strip_prefix(b"-").unwrap_or(rest);
    let Some(rest) = pest_trim_start(rest).strip_prefix(b"endraw") else { return false };
    let rest = pest_trim_start(rest);
    rest.starts_with(b"%}") || rest.starts_with(b"-%}")
}

/// Whether the inside of a `{% … %}` tag (between `{%` and `%}`) is tera's `raw_tag`.
fn is_raw_tag(inner: &[u8]) -> bool {
    let inner = inner.strip_prefix(b"-").unwrap_or(inner);
    let inner = inner.strip_suffix(b"-").unwrap_or(inner);
    pest_trim_end(pest_trim_start(inner)) == b"raw"
}

/// Whitespace as tera's grammar has it (`WHITESPACE`): space, tab, CR, LF (not form feed).
fn is_pest_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn pest_trim_start(bytes: &[u8]) -> &[u8] {
    let n = bytes.iter().take_while(|b| is_pest_space(**b)).count();
    &bytes[n..]
}

fn pest_trim_end(bytes: &[u8]) -> &[u8] {
    let n = bytes.iter().rev().take_while(|b| is_pest_space(**b)).count();
    &bytes[..bytes.len() - n]
}

/// Checks a template's shape on the text, before tera parses it, so that nothing in it can
/// exhaust the parser's or the renderer's stack: statements and brackets nest at most `max`
/// deep, a tag is at most [`MAX_TAG_BYTES`] long and holds at most [`MAX_TAG_OPERATORS`]
/// operators. It reads the text as tera's grammar does (text; `{{ … }}` and `{% … %}` tags
/// with their quoted strings; `{# … #}` comments; `{% raw %} … {% endraw %}`), and an
/// unterminated tag, string, comment or raw block is an error, never the end of the text.
/// `Err` has the line where the check failed.
fn check_nesting(text: &str, max: usize) -> std::result::Result<(), (u32, String)> {
    const OPEN: &[&[u8]] = &[b"if", b"for", b"block", b"macro", b"filter"];
    const CLOSE: &[&[u8]] = &[b"endif", b"endfor", b"endblock", b"endmacro", b"endfilter"];
    const WORD_OPERATORS: &[&[u8]] = &[b"and", b"or", b"in", b"is", b"not"];
    let bytes = text.as_bytes();
    let line_at = |pos: usize| bytes[..pos.min(bytes.len())].iter().filter(|b| **b == b'\n').count() as u32 + 1;
    let find = |from: usize, needle: &[u8]| -> Option<usize> {
        bytes.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| from + p)
    };
    let (mut blocks, mut i) = (0usize, 0usize);
    while i + 1 < bytes.len() {
        let opener = &bytes[i..i + 2];
        if opener == b"{#" {
            // A comment ends at the first `#}` (`-#}` included); quotes mean nothing in it.
            let Some(end) = find(i + 2, b"#}") else {
                return Err((line_at(i), "unterminated comment `{#`".into()));
            };
            i = end + 2;
            continue;
        }
        if opener != b"{{" && opener != b"{%" {
            i += 1;
            continue;
        }
        let start = i;
        let close: &[u8] = if opener == b"{{" { b"}}" } else { b"%}" };
        i += 2;
        let (mut brackets, mut quote, mut operators) = (0usize, None::<(u8, usize)>, 0usize);
        loop {
            if i - start > MAX_TAG_BYTES {
                return Err((line_at(start), format!("a tag is longer than {MAX_TAG_BYTES} bytes")));
            }
            let Some(&b) = bytes.get(i) else {
                return Err(match quote {
                    Some((q, at)) => (line_at(at), format!("unterminated string `{}`", q as char)),
                    None => (line_at(start), format!("unterminated tag `{}`", String::from_utf8_lossy(opener))),
                });
            };
            if quote.is_none() && bytes[i..].starts_with(close) {
                break;
            }
            match (quote, b) {
                (Some((q, _)), b) if b == q => quote = None,
                (Some(_), _) => {}
                (None, b'"' | b'\'' | b'`') => quote = Some((b, i)),
                (None, b'(' | b'[' | b'{') => {
                    brackets += 1;
                    if brackets > max {
                        return Err((line_at(i), format!("expressions nest deeper than {max} levels")));
                    }
                }
                (None, b')' | b']' | b'}') => brackets = brackets.saturating_sub(1),
                (None, b'+' | b'-' | b'*' | b'/' | b'%' | b'~' | b'<' | b'>' | b'!') => operators += 1,
                (None, b'=') if bytes.get(i + 1) == Some(&b'=') => {
                    operators += 1;
                    i += 1;
                }
                (None, b) if b.is_ascii_alphabetic() || b == b'_' => {
                    let len = bytes[i..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count();
                    if WORD_OPERATORS.contains(&&bytes[i..i + len]) {
                        operators += 1;
                    }
                    i += len - 1;
                }
                _ => {}
            }
            if operators > MAX_TAG_OPERATORS {
                return Err((line_at(i), format!("a tag holds more than {MAX_TAG_OPERATORS} operators")));
            }
            i += 1;
        }
        let inner = &bytes[start + 2..i];
        i += 2;
        if opener == b"{%" {
            if is_raw_tag(inner) {
                // Raw text runs to the first `endraw` tag, whatever it holds.
                let Some(end) = (i..bytes.len()).find(|&at| bytes[at] == b'{' && endraw_at(bytes, at)) else {
                    return Err((line_at(start), "`raw` without its `endraw`".into()));
                };
                let Some(close) = find(end, b"%}") else {
                    return Err((line_at(end), "unterminated tag `{%`".into()));
                };
                i = close + 2;
                continue;
            }
            let tag = pest_trim_start(inner.strip_prefix(b"-").unwrap_or(inner));
            let len = tag.iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count();
            let word = &tag[..len];
            if OPEN.contains(&word) {
                blocks += 1;
                if blocks > max {
                    return Err((line_at(start), format!("statements nest deeper than {max} levels")));
                }
            } else if CLOSE.contains(&word) {
                blocks = blocks.saturating_sub(1);
            }
        }
    }
    Ok(())
}

/// Every message of an error's chain, joined.
fn chain(e: &tera::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

/// The line of a parse error (`--> 3:5` in pest's message).
fn parse_error_line(message: &str) -> Option<u32> {
    let after = &message[message.find("--> ")? + 4..];
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Most names [`usage_line`] looks for, and their longest length.
const USAGE_NAMES: usize = 8;
const USAGE_NAME_BYTES: usize = 128;
/// Longest message of an [`Error::Render`], in bytes.
const MAX_MESSAGE_BYTES: usize = 1024;

/// The line where a name from a render error's message (`Variable `env.X` not found`,
/// `Filter call 'replace' failed`) is first used inside a tag. At most [`USAGE_NAMES`]
/// distinct names of at most [`USAGE_NAME_BYTES`] are looked for, each with a linear
/// search, so a hostile message costs little.
fn usage_line(source: &str, message: &str, file: &str) -> Option<u32> {
    let mut names: Vec<&str> = Vec::new();
    for delimiter in ['`', '\''] {
        let mut parts = message.split(delimiter);
        parts.next();
        while let Some(name) = parts.next() {
            if names.len() >= USAGE_NAMES {
                break;
            }
            if !name.is_empty()
                && name.len() <= USAGE_NAME_BYTES
                && name != file
                && !name.contains(char::is_whitespace)
                && !names.contains(&name)
            {
                names.push(name);
            }
            parts.next();
        }
    }
    if names.is_empty() {
        return None;
    }
    // Where tags are: [opener, closer) of each, in order.
    let bytes = source.as_bytes();
    let mut tags: Vec<(usize, usize)> = Vec::new();
    let mut open: Option<usize> = None;
    for i in 0..bytes.len() {
        let two = &bytes[i..(i + 2).min(bytes.len())];
        if two == b"{{" || two == b"{%" {
            open.get_or_insert(i);
        } else if two == b"}}" || two == b"%}" {
            if let Some(start) = open.take() {
                tags.push((start, i));
            }
        }
    }
    if let Some(start) = open {
        tags.push((start, bytes.len()));
    }
    let in_tag = |pos: usize| {
        let after = tags.partition_point(|(start, _)| *start <= pos);
        after > 0 && pos < tags[after - 1].1
    };
    let mut first: Option<usize> = None;
    for name in names {
        let mut from = 0;
        while let Some(found) = source.get(from..).and_then(|rest| rest.find(name)) {
            let pos = from + found;
            if first.is_some_and(|f| pos >= f) {
                break;
            }
            if in_tag(pos) {
                first = Some(pos);
                break;
            }
            from = pos + source[pos..].chars().next().map_or(1, char::len_utf8);
        }
    }
    first.map(|pos| bytes[..pos].iter().filter(|b| **b == b'\n').count() as u32 + 1)
}

/// `message`, cut to at most [`MAX_MESSAGE_BYTES`] (on a character boundary).
fn bounded_message(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_BYTES {
        let mut cut = MAX_MESSAGE_BYTES - 3;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str("...");
    }
    message
}

/// Renders one file (root-relative `file`, for messages) with `ctx`. Runs on the caller's
/// thread: CPU-bound, so callers put it on the blocking pool.
pub fn render(file: &str, source: &[u8], ctx: &RenderContext) -> Result<Rendered> {
    let limits = ctx.limits;
    let fail = |line: Option<u32>, message: String| Error::Render {
        file: file.to_owned(),
        line,
        message: bounded_message(message),
    };
    if source.len() > limits.max_input_bytes {
        return Err(fail(
            None,
            format!("template of {} bytes, more than {} allowed", source.len(), limits.max_input_bytes),
        ));
    }
    let Ok(text) = std::str::from_utf8(source) else { return Ok(Rendered::Binary) };
    check_nesting(text, limits.max_nesting).map_err(|(line, message)| fail(Some(line), message))?;
    // On a thread of its own: a stack sized for the deepest template the checks above let
    // through, whatever the caller's; and tera panics on some input (a float literal too
    // large for an f64): that is a bad template, not a crash.
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("nexus-render".into())
            .stack_size(RENDER_STACK_BYTES)
            .spawn_scoped(scope, || parse_and_render(file, text, ctx));
        match worker {
            Ok(handle) => handle.join().unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                Err(fail(None, format!("tera failed on this template: {what}")))
            }),
            Err(e) => Err(fail(None, format!("could not start a render thread: {e}"))),
        }
    })
}

/// The parse and the render of [`render`], after the checks on the text.
fn parse_and_render(file: &str, text: &str, ctx: &RenderContext) -> Result<Rendered> {
    let limits = ctx.limits;
    let fail = |line: Option<u32>, message: String| Error::Render {
        file: file.to_owned(),
        line,
        message: bounded_message(message),
    };
    let budget = Arc::new(Budget {
        steps: AtomicU64::new(0),
        work: AtomicU64::new(0),
        deadline: Instant::now() + limits.timeout,
        limits,
    });
    let mut tera = sandboxed_tera(&budget);
    if let Err(e) = tera.add_raw_template(file, text) {
        let message = chain(&e);
        return Err(fail(parse_error_line(&message), message));
    }
    let Some(template) = tera.templates.get_mut(file) else {
        return Err(fail(None, "the parsed template went missing".into()));
    };
    let mut instrument = Instrument { refused: None };
    instrument.nodes(&mut template.ast);
    if let Some(message) = instrument.refused {
        let line = usage_line(text, &message, file);
        return Err(fail(line, message));
    }
    let mut context = tera::Context::new();
    context.insert("server", &ctx.server);
    context.insert("env", &ctx.env);
    let mut out = Capped { out: Vec::with_capacity(text.len()), cap: limits.max_output_bytes, overflowed: false };
    match tera.render_to(file, &context, &mut out) {
        Ok(()) => Ok(Rendered::Text(out.out)),
        Err(_) if out.overflowed => Err(fail(None, format!("output larger than {} bytes", limits.max_output_bytes))),
        Err(e) => {
            let message = chain(&e);
            let line =
                if message.contains("template budget exceeded") { None } else { usage_line(text, &message, file) };
            Err(fail(line, message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> RenderContext {
        let env =
            BTreeMap::from([("SERVER_PORT".to_owned(), "25565".to_owned()), ("MOTD".to_owned(), "hi".to_owned())]);
        RenderContext::new(json!({ "id": "3f2a", "memory": 1024, "disk": 4096, "cpu": 200 }), env)
    }

    fn ok(template: &str) -> String {
        match render("t.cfg", template.as_bytes(), &ctx()).unwrap() {
            Rendered::Text(out) => String::from_utf8(out).unwrap(),
            Rendered::Binary => panic!("binary"),
        }
    }

    fn err(template: &str) -> (Option<u32>, String) {
        match render("t.cfg", template.as_bytes(), &ctx()) {
            Err(Error::Render { file, line, message }) => {
                assert_eq!(file, "t.cfg");
                (line, message)
            }
            other => panic!("{template}: not refused: {other:?}"),
        }
    }

    #[test]
    fn renders_server_and_env() {
        assert_eq!(ok("port={{ env.SERVER_PORT }}\nmem={{ server.memory }}M\n"), "port=25565\nmem=1024M\n");
        assert_eq!(ok("{% if server.cpu > 100 %}fast{% else %}slow{% endif %}"), "fast");
        assert_eq!(ok("{{ env.MOTD | upper }} {{ env.NOPE | default(value='x') }}"), "HI x");
        assert_eq!(ok("{% for i in [1, 2, 3] %}{{ i }},{% endfor %}"), "1,2,3,");
        assert_eq!(ok("{% set p = env.SERVER_PORT | int %}{{ p + 1 }}"), "25566");
        assert_eq!(ok("{% for k, v in env %}{{ k }}={{ v }};{% endfor %}"), "MOTD=hi;SERVER_PORT=25565;");
        assert_eq!(ok("<&>"), "<&>");
        assert_eq!(render("b", &[0xff, 0xfe, 0], &ctx()).unwrap(), Rendered::Binary);
        // Multi-byte text around and inside tags, and an unterminated tag ending in one.
        assert_eq!(ok("é{{ 'ü' }}ß"), "éüß");
        let _ = err("{{ env.é }}");
        let _ = err("x {% é");
        let _ = err("x {{ é");
    }

    #[test]
    fn bad_templates_name_the_line() {
        let (line, message) = err("a\nb\n{{ env.SERVER_PORT | }}\nd\n");
        assert_eq!(line, Some(3), "{message}");
        let (line, message) = err("ok\n\nport={{ env.MISSING }}\n");
        assert_eq!(line, Some(3), "{message}");
        assert!(message.contains("env.MISSING"), "{message}");
        let (line, message) = err("x\n{{ server.memory | nosuch }}");
        assert_eq!(line, Some(2), "{message}");
    }

    #[test]
    fn host_access_is_refused() {
        for t in ["{{ get_env(name='HOME') }}", "{{ now() }}", "{{ get_random(end=5) }}"] {
            let (_, message) = err(t);
            assert!(message.contains("not available"), "{t}: {message}");
        }
        let (_, message) = err("{% for i in range(end=100000000) %}{% endfor %}");
        assert!(message.contains("limited"), "{message}");
        assert_eq!(ok("{% for i in range(end=3) %}{{ i }}{% endfor %}"), "012");
        for t in [
            "{% include 'x' %}",
            "{% extends 'x' %}",
            "{% import 'x' as m %}",
            "{% macro m() %}{% endmacro %}",
            "{% block b %}{% endblock %}",
            "{% filter upper %}x{% endfilter %}",
        ] {
            let _ = err(t);
        }
    }

    #[test]
    fn amplification_is_bounded() {
        // Loops that write nothing still spend steps.
        let (line, message) = err(&format!(
            "{{% set a = [{}] %}}{{% for x in a %}}{{% for y in a %}}{{% for z in a %}}{{% endfor %}}{{% endfor %}}{{% endfor %}}",
            vec!["1"; 1000].join(",")
        ));
        assert!(message.contains("budget"), "{message}");
        assert_eq!(line, None);
        // Doubling a string.
        let (_, message) = err(
            "{% set_global s = 'xxxxxxxxxxxxxxxx' %}{% for i in range(end=64) %}{% set_global s = s ~ s %}{% endfor %}",
        );
        assert!(message.contains("more than"), "{message}");
        // One filter multiplying its input.
        let (_, message) = err(
            "{{ 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' | replace(from='a', to='bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb') | replace(from='b', to='cccccccccccccccccccccccccccccccccccccc') | replace(from='c', to='dddddddddddddddddddddddddd') }}",
        );
        assert!(message.contains("more than"), "{message}");
        // Output.
        let mut small = ctx();
        small.limits.max_output_bytes = 100;
        let out = render("t", "{% for i in range(end=1000) %}xxxxxxxx{% endfor %}".as_bytes(), &small);
        assert!(matches!(out, Err(Error::Render { ref message, .. }) if message.contains("output larger")), "{out:?}");
        // Input.
        let big = "x".repeat((1 << 20) + 1);
        assert!(matches!(render("t", big.as_bytes(), &ctx()), Err(Error::Render { .. })));
        // Nesting, refused before the parser sees it.
        let deep = format!("{}{}", "{% if true %}".repeat(10_000), "{% endif %}".repeat(10_000));
        let (_, message) = err(&deep);
        assert!(message.contains("nest"), "{message}");
        let deep = format!("{{{{ {}1{} }}}}", "(".repeat(100_000), ")".repeat(100_000));
        let (_, message) = err(&deep);
        assert!(message.contains("nest"), "{message}");
        // Big literal arrays and concatenations.
        let _ = err(&format!("{{{{ [{}] | length }}}}", vec!["1"; 5000].join(",")));
        let _ = err(&format!("{{{{ {} }}}}", vec!["env.MOTD"; 100].join(" ~ ")));
    }

    /// Renders on a thread with a small stack: a template that recursed deeply would
    /// overflow it and abort the test binary.
    fn err_small_stack(template: String) -> (Option<u32>, String) {
        std::thread::Builder::new().stack_size(1 << 20).spawn(move || err(&template)).unwrap().join().unwrap()
    }

    #[test]
    fn long_operator_chains_are_refused_before_parsing() {
        // ~50k terms: an expression tree 50k levels deep.
        let chain = format!("{{{{ {}1 }}}}", "1+".repeat(50_000));
        let (line, message) = err_small_stack(chain);
        assert_eq!(line, Some(1));
        assert!(message.contains("longer than") || message.contains("operators"), "{message}");
        // Under the length cap, over the operator cap.
        let (_, message) = err_small_stack(format!("x\n{{{{ {}1 }}}}", "1+".repeat(300)));
        assert!(message.contains("more than 256 operators"), "{message}");
        let (_, message) = err_small_stack(format!("{{% if {}true %}}{{% endif %}}", "true and ".repeat(300)));
        assert!(message.contains("operators"), "{message}");
        let (_, message) = err_small_stack(format!("{{{{ 'x{}' }}}}", "y".repeat(20_000)));
        assert!(message.contains("longer than"), "{message}");
        // Reasonable expressions still render.
        assert_eq!(ok(&format!("{{{{ {}1 }}}}", "1+".repeat(200))), "201");
        assert_eq!(ok("{{ 'a + b - c < d' }}"), "a + b - c < d");
    }

    #[test]
    fn comments_and_raw_blocks_are_read_as_tera_reads_them() {
        let deep = |n: usize| format!("{}{}", "{% if true %}".repeat(n), "{% endif %}".repeat(n));
        // A `{{` and a quote inside a comment hid the statements after it.
        let (_, message) = err_small_stack(format!("{{# {{{{ ' #}}{}", deep(40_000)));
        assert!(message.contains("nest"), "{message}");
        let (_, message) = err_small_stack(format!("{{#- ' -#}}{}", deep(40_000)));
        assert!(message.contains("nest"), "{message}");
        // The same through a raw block.
        let (_, message) = err_small_stack(format!("{{% raw %}}{{{{ ' {{% endraw %}}{}", deep(40_000)));
        assert!(message.contains("nest"), "{message}");
        // An endraw with a form feed is not one for tera: the raw text runs on.
        let (_, message) =
            err_small_stack(format!("{{% raw %}}{{%\u{c}endraw %}}{{# {{% endraw %}}{} #}}", deep(40_000)));
        assert!(message.contains("nest") || message.contains("comment"), "{message}");
        // Unterminated comments, strings, tags and raw blocks are errors.
        for bad in ["{# x", "{{ 'x }}", "{% if true", "{% raw %}x", "{{ x"] {
            let _ = err(bad);
        }
        // What is inside comments and raw blocks is not a tag.
        assert_eq!(ok("a{# {{ ' {% if #}b"), "ab");
        assert_eq!(ok("{% raw %}{{ ' {% if x %}{%- endraw -%} c"), "{{ ' {% if x %}c");
        assert_eq!(
            ok(&format!("{{% raw %}}{}{{% endraw %}}", "{% if true %}".repeat(100))),
            "{% if true %}".repeat(100)
        );
        assert_eq!(ok("{{ 'a %} b }}' }}"), "a %} b }}");
    }

    #[test]
    fn range_is_bounded_and_refuses_a_zero_step() {
        let (_, message) = err("{{ range(end=1, step_by=0) }}");
        assert!(message.contains("step_by=0"), "{message}");
        let (_, message) = err("{% for i in range(start=0, end=100, step_by=0) %}{% endfor %}");
        assert!(message.contains("step_by=0"), "{message}");
        for bad in
            ["{{ range(end=-1) }}", "{{ range(end=1.5) }}", "{{ range(end='3') }}", "{{ range(start=5, end=1) }}"]
        {
            let _ = err(bad);
        }
        let _ = err("{{ range(start=0, end=9223372036854775807, step_by=2) }}");
        assert_eq!(ok("{% for i in range(start=1, end=10, step_by=4) %}{{ i }},{% endfor %}"), "1,5,9,");
        assert_eq!(
            ok("{% for i in range(end=9223372036854775807, step_by=4611686018427387904) %}{{ i }},{% endfor %}"),
            "0,4611686018427387904,"
        );
    }

    #[test]
    fn a_panic_in_tera_is_a_render_error() {
        let (_, message) = err(&format!("{{{{ {}.0 }}}}", "9".repeat(400)));
        assert!(message.contains("tera failed"), "{message}");
    }

    #[test]
    fn failed_renders_have_bounded_messages() {
        // Many long names in a message: line lookup stays cheap, the message short.
        let name = "a".repeat(100_000);
        let template = format!("{{{{ {name} }}}}{}", "{{ x }}".repeat(10_000));
        let started = Instant::now();
        let (_, message) = err(&template);
        assert!(message.len() <= MAX_MESSAGE_BYTES, "{}", message.len());
        assert!(started.elapsed() < Duration::from_secs(2));
        let long_names: String = (0..1000).map(|i| format!("`{}{i}` ", "b".repeat(500))).collect();
        let source = format!("{}{{{{ x }}}}", "b".repeat(1 << 20));
        let started = Instant::now();
        assert_eq!(usage_line(&source, &long_names, "t"), None);
        assert_eq!(usage_line("a\n{{ env.X }}", "`env.X` `env.X`", "t"), Some(2));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_slow_template_times_out() {
        let mut slow = ctx();
        slow.limits.timeout = Duration::from_millis(50);
        slow.limits.max_steps = u64::MAX;
        slow.limits.max_work_bytes = u64::MAX;
        let t = format!(
            "{{% set a = [{}] %}}{{% for x in a %}}{{% for y in a %}}{{% for z in a %}}{{% endfor %}}{{% endfor %}}{{% endfor %}}",
            vec!["1"; 1000].join(",")
        );
        let started = Instant::now();
        let out = render("t", t.as_bytes(), &slow);
        assert!(matches!(out, Err(Error::Render { ref message, .. }) if message.contains("took over")), "{out:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
