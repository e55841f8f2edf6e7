//! XML files (Space Engineers' `SpaceEngineers-Dedicated.cfg`), located with `quick-xml` by
//! byte offsets and edited in place.
//!
//! Keys are element paths whose first segment is the root element
//! (`MyConfigDedicated.SessionSettings.MaxPlayers`); a segment without an index addresses every
//! child of that name, `Name[N]` the N-th (0-based) and `*` every child element. The value is
//! an element's text: elements with child elements cannot be given text. A value of the form
//! `[name='value']` sets attribute `name` of the element instead (as Wings does), whatever the
//! element holds. Missing elements are created (as Wings does), as the last children of the
//! deepest existing element.

use super::key_path::{self, Segment};
use super::lines::{Splices, line_ending, position};
use super::{Edit, MAX_DEPTH, PatchError};
use quick_xml::events::Event;
use std::ops::Range;

#[derive(Debug)]
struct Element {
    name: String,
    /// From `<` to past `>` (or `/>`).
    start_tag: Range<usize>,
    /// Between the tags; `None` for `<Name/>`.
    content: Option<Range<usize>>,
    children: Vec<Element>,
    /// Length of `</name>`; 0 for `<Name/>`.
    end_tag_len: usize,
}

/// Applies the edits one after the other.
pub(super) fn patch(text: &str, edits: &[Edit<'_>]) -> Result<String, PatchError> {
    let eol = line_ending(text);
    let mut text = text.to_owned();
    parse(&text)?;
    for edit in edits {
        let path = edit.path()?;
        let Some((Segment::Key(root_name), below_root)) = path.split_first() else {
            return Err(PatchError::invalid_key(edit.key, "the first segment must name the root element"));
        };
        let root = parse(&text)?;
        let mut splices = Splices::default();
        match &root {
            Some(root) if &root.name == root_name => {
                let mut found = Vec::new();
                collect(root, below_root, &mut found);
                for element in &found {
                    rewrite(&text, element, edit, &mut splices)?;
                }
                if found.is_empty() && key_path::creatable(below_root) {
                    if let Some(value) = edit.replacement.value_for_missing() {
                        create(&text, root, below_root, &value.text(), eol, edit.key, &mut splices)?;
                    }
                }
            }
            Some(root) => {
                return Err(PatchError::cannot_patch(
                    edit.key,
                    format!("the root element is `{}`, not `{root_name}`", root.name),
                ));
            }
            None => {
                if let Some(value) = edit.replacement.value_for_missing().filter(|_| key_path::creatable(&path)) {
                    let names = key_path::key_names(&path);
                    splices.append_lines(&text, &chain(&names, &escape(&value.text())), eol);
                }
            }
        }
        if !splices.is_empty() {
            text = splices.apply(&text)?;
        }
    }
    Ok(text)
}

fn collect<'e>(element: &'e Element, path: &[Segment], out: &mut Vec<&'e Element>) {
    let Some((segment, rest)) = path.split_first() else {
        out.push(element);
        return;
    };
    match segment {
        Segment::Key(name) => {
            let (index, rest) = match rest.split_first() {
                Some((Segment::Index(index), rest)) => (Some(*index), rest),
                _ => (None, rest),
            };
            let named = element.children.iter().filter(|child| &child.name == name);
            match index {
                Some(index) => named.skip(index).take(1).for_each(|child| collect(child, rest, out)),
                None => named.for_each(|child| collect(child, rest, out)),
            }
        }
        Segment::Wildcard => element.children.iter().for_each(|child| collect(child, rest, out)),
        // An index must follow a name; a stray one addresses nothing.
        Segment::Index(_) => {}
    }
}

/// `(name, value)` of a value written `[name='value']`: an attribute to set, in Wings' syntax.
fn attribute_value(value: &str) -> Option<(&str, &str)> {
    let inner = value.strip_prefix('[')?.strip_suffix("']")?;
    let (name, value) = inner.split_once("='")?;
    let word = |c: char| c.is_alphanumeric() || c == '_';
    (!name.is_empty() && name.chars().all(word)).then_some((name, value))
}

/// Sets attribute `name` of `element` to `value`: its value replaced where it has one, else
/// added at the end of the start tag.
fn set_attribute(text: &str, element: &Element, name: &str, value: &str, splices: &mut Splices) {
    let tag = &text[element.start_tag.clone()];
    let quoted = format!("\"{}\"", escape(value).replace('"', "&quot;"));
    let pattern = format!(r#"\s{}\s*=\s*("[^"]*"|'[^']*')"#, regex::escape(name));
    let existing = regex::Regex::new(&pattern).ok().and_then(|re| re.captures(tag)).and_then(|c| c.get(1));
    match existing {
        Some(current) if decode(&current.as_str()[1..current.as_str().len() - 1]) == value => {}
        Some(current) => {
            let at = element.start_tag.start;
            splices.replace(at + current.start()..at + current.end(), quoted);
        }
        None => {
            let open = tag.trim_end_matches('>').trim_end_matches('/').trim_end();
            splices.insert(element.start_tag.start + open.len(), format!(" {name}={quoted}"));
        }
    }
}

fn rewrite(text: &str, element: &Element, edit: &Edit<'_>, splices: &mut Splices) -> Result<(), PatchError> {
    if let Some(value) = edit.replacement.value_for_missing() {
        let value = value.text();
        if let Some((name, value)) = attribute_value(&value) {
            set_attribute(text, element, name, value, splices);
            return Ok(());
        }
    }
    if !element.children.is_empty() {
        if edit.replacement.creates_missing() {
            return Err(PatchError::cannot_patch(
                edit.key,
                format!("`{}` has child elements; only text-only elements can be set", element.name),
            ));
        }
        return Ok(());
    }
    let raw = element.content.clone().map_or("", |content| &text[content]);
    let current = decode(raw);
    let Some(value) = edit.replacement.next_value(&current) else { return Ok(()) };
    let value = value.text();
    if value == current {
        return Ok(());
    }
    let encoded = match cdata_inner(raw) {
        Some(_) if !value.contains("]]>") => format!("<![CDATA[{value}]]>"),
        _ => escape(&value),
    };
    match &element.content {
        Some(content) => splices.replace(content.clone(), encoded),
        None => {
            // `<Name attr="x"/>` becomes `<Name attr="x">value</Name>`.
            let tag = &text[element.start_tag.clone()];
            let open = tag.trim_end_matches('>').trim_end_matches('/').trim_end();
            splices.replace(element.start_tag.clone(), format!("{open}>{encoded}</{}>", element.name));
        }
    }
    Ok(())
}

fn create(
    text: &str,
    root: &Element,
    path: &[Segment],
    value: &str,
    eol: &str,
    key: &str,
    splices: &mut Splices,
) -> Result<(), PatchError> {
    let names = key_path::key_names(path);
    // The deepest existing element along the path (first of each name).
    let mut parent = root;
    let mut depth = 0;
    while let Some(child) = names.get(depth).and_then(|name| parent.children.iter().find(|c| &c.name == name)) {
        parent = child;
        depth += 1;
    }
    if depth == names.len() {
        // The path exists, just not with an index the caller asked for; nothing to create.
        return Ok(());
    }
    let new_elements = match attribute_value(value) {
        // The innermost new element carries the attribute, as Wings creates it then sets it.
        Some((name, value)) => {
            let names = &names[depth..];
            let (last, outer) = names.split_last().unwrap_or((&"", &[]));
            let quoted = escape(value).replace('"', "&quot;");
            chain(outer, &format!("<{last} {name}=\"{quoted}\"/>"))
        }
        None => chain(&names[depth..], &escape(value)),
    };
    let parent_indent = line_indent(text, parent.start_tag.start);
    match (&parent.content, parent.children.last()) {
        (Some(_), Some(last)) => {
            let indent = line_indent(text, last.start_tag.start);
            splices.insert(element_end(last), format!("{eol}{indent}{new_elements}"));
        }
        (Some(content), None) => {
            if !text[content.clone()].trim().is_empty() {
                return Err(PatchError::cannot_patch(
                    key,
                    format!("`{}` holds text; cannot add child elements to it", parent.name),
                ));
            }
            let indent = format!("{parent_indent}{}", indent_unit(text, root).unwrap_or_else(|| "  ".to_owned()));
            splices.replace(content.clone(), format!("{eol}{indent}{new_elements}{eol}{parent_indent}"));
        }
        (None, _) => {
            let indent = format!("{parent_indent}{}", indent_unit(text, root).unwrap_or_else(|| "  ".to_owned()));
            let tag = &text[parent.start_tag.clone()];
            let open = tag.trim_end_matches('>').trim_end_matches('/').trim_end();
            splices.replace(
                parent.start_tag.clone(),
                format!("{open}>{eol}{indent}{new_elements}{eol}{parent_indent}</{}>", parent.name),
            );
        }
    }
    Ok(())
}

/// `<a><b>value</b></a>` for names `[a, b]`.
fn chain(names: &[&str], escaped_value: &str) -> String {
    let opening: String = names.iter().map(|name| format!("<{name}>")).collect();
    let closing: String = names.iter().rev().map(|name| format!("</{name}>")).collect();
    format!("{opening}{escaped_value}{closing}")
}

/// The offset past an element's end tag.
fn element_end(element: &Element) -> usize {
    match &element.content {
        // The end tag is `</name>` possibly with spaces before `>`; content.end is its `<`.
        Some(content) => content.end + element.end_tag_len,
        None => element.start_tag.end,
    }
}

/// The whitespace between the start of the line and `offset`, or nothing if the line has
/// other text before `offset`. Looks back only over that whitespace: scanning back to the
/// previous newline would make a one-line file with many elements quadratic.
fn line_indent(text: &str, offset: usize) -> &str {
    let before = &text[..offset];
    let start = before
        .char_indices()
        .rev()
        .find(|&(_, c)| c == '\n' || !c.is_whitespace())
        .map_or(Some(0), |(at, c)| (c == '\n').then_some(at + 1));
    start.map_or("", |start| &before[start..])
}

fn indent_unit(text: &str, element: &Element) -> Option<String> {
    let outer = line_indent(text, element.start_tag.start);
    element.children.iter().find_map(|child| {
        let inner = line_indent(text, child.start_tag.start);
        (inner.len() > outer.len() && inner.starts_with(outer) && text[..child.start_tag.start].ends_with(inner))
            .then(|| inner[outer.len()..].to_owned())
            .or_else(|| indent_unit(text, child))
    })
}

fn cdata_inner(raw: &str) -> Option<&str> {
    raw.strip_prefix("<![CDATA[")?.strip_suffix("]]>").filter(|inner| !inner.contains("]]>"))
}

/// An element's text: entities decoded, CDATA sections unwrapped, comments dropped.
fn decode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("<![CDATA[") {
            let end = after.find("]]>").unwrap_or(after.len());
            out.push_str(&after[..end]);
            rest = after.get(end + 3..).unwrap_or("");
        } else if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
        } else {
            let end = rest.find('<').unwrap_or(rest.len()).max(1);
            let piece = &rest[..end];
            match quick_xml::escape::unescape(piece) {
                Ok(unescaped) => out.push_str(&unescaped),
                Err(_) => out.push_str(piece),
            }
            rest = &rest[end..];
        }
    }
    out
}

fn escape(value: &str) -> String {
    value.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The element tree. Elements nest at most [`MAX_DEPTH`] deep: the tree is walked and dropped
/// recursively.
fn parse(text: &str) -> Result<Option<Element>, PatchError> {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let malformed = |what: &str, at: usize| PatchError::Malformed(format!("{what} ({})", position(text, at)));
    loop {
        let before = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX).min(text.len());
        let event = reader.read_event().map_err(|error| {
            let at = usize::try_from(reader.error_position()).unwrap_or(0);
            malformed(&error.to_string(), at)
        })?;
        let after = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX).min(text.len());
        let mut finished = None;
        if matches!(event, Event::Start(_) | Event::Empty(_)) && stack.len() >= MAX_DEPTH {
            return Err(PatchError::too_deep(text, before));
        }
        match event {
            Event::Start(start) => {
                if root.is_some() && stack.is_empty() {
                    return Err(malformed("a second root element", before));
                }
                let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
                stack.push(Element {
                    name,
                    start_tag: before..after,
                    content: Some(after..after),
                    children: Vec::new(),
                    end_tag_len: 0,
                });
            }
            Event::Empty(empty) => {
                let name = String::from_utf8_lossy(empty.name().as_ref()).into_owned();
                finished = Some(Element {
                    name,
                    start_tag: before..after,
                    content: None,
                    children: Vec::new(),
                    end_tag_len: 0,
                });
            }
            Event::End(_) => {
                let mut element = stack.pop().ok_or_else(|| malformed("unexpected end tag", before))?;
                if let Some(content) = element.content.as_mut() {
                    content.end = before;
                }
                element.end_tag_len = after - before;
                finished = Some(element);
            }
            Event::Text(text_event) if stack.is_empty() && !String::from_utf8_lossy(&text_event).trim().is_empty() => {
                return Err(malformed("text outside the root element", before));
            }
            Event::CData(_) if stack.is_empty() => return Err(malformed("text outside the root element", before)),
            Event::Eof => break,
            _ => {}
        }
        if let Some(element) = finished {
            match stack.last_mut() {
                Some(parent) => parent.children.push(element),
                None if root.is_none() => root = Some(element),
                None => return Err(malformed("a second root element", before)),
            }
        }
    }
    if let Some(open) = stack.last() {
        return Err(malformed(&format!("`<{}>` is never closed", open.name), open.start_tag.start));
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_files::test_support::set;

    #[test]
    fn sets_text_in_place() {
        let text = "<?xml version=\"1.0\"?>\r\n<Root a=\"1\">\r\n  <!-- c -->\r\n  <Name>old &amp; gold</Name>\r\n  <Empty/>\r\n  <Data><![CDATA[x]]></Data>\r\n</Root>";
        let out =
            patch(text, &[set("Root.Name", "<new> & co"), set("Root.Empty", "v"), set("Root.Data", "y<")]).unwrap();
        assert_eq!(
            out,
            "<?xml version=\"1.0\"?>\r\n<Root a=\"1\">\r\n  <!-- c -->\r\n  <Name>&lt;new&gt; &amp; co</Name>\r\n  <Empty>v</Empty>\r\n  <Data><![CDATA[y<]]></Data>\r\n</Root>"
        );
        assert_eq!(patch(&out, &[set("Root.Name", "<new> & co")]).unwrap(), out);
    }

    #[test]
    fn indices_wildcards_and_creation() {
        let text = "<R>\n    <S><P>1</P></S>\n    <S><P>2</P></S>\n</R>\n";
        let out = patch(text, &[set("R.S[1].P", "5"), set("R.*.P", "7"), set("R.T.U", "new")]).unwrap();
        assert_eq!(out, "<R>\n    <S><P>7</P></S>\n    <S><P>7</P></S>\n    <T><U>new</U></T>\n</R>\n");
        assert_eq!(patch("<R/>", &[set("R.A", "1")]).unwrap(), "<R>\n  <A>1</A>\n</R>");
    }

    #[test]
    fn line_indent_is_the_blank_start_of_a_line_only() {
        let text = "<a>\n  \t<b/><c/>\n<d/>";
        let offset = |needle: &str| text.find(needle).unwrap();
        assert_eq!(line_indent(text, offset("<b/>")), "  \t");
        assert_eq!(line_indent(text, offset("<c/>")), "");
        assert_eq!(line_indent(text, offset("<d/>")), "");
        assert_eq!(line_indent(text, 0), "");
        assert_eq!(line_indent("  <a/>", 2), "  ");
    }

    #[test]
    fn errors() {
        for bad in ["<a>", "<a></b>", "<a/><b/>", "<a>&</a", "text<a/>"] {
            assert!(matches!(patch(bad, &[]), Err(PatchError::Malformed(_))), "{bad:?}");
        }
        assert!(matches!(patch("<a><b/></a>", &[set("x.b", "1")]), Err(PatchError::CannotPatch { .. })));
        assert!(matches!(patch("<a><b/></a>", &[set("a", "1")]), Err(PatchError::CannotPatch { .. })));
    }
}
