//! The `--json` contract as docs/cli.md writes it: the ```` ```shape ````
//! blocks of that file, parsed, and a checker that holds a JSON value to a
//! shape field by field (exact key sets, types, RFC 3339 UTC times).

use serde_json::Value;
use std::collections::BTreeMap;

/// A type in the docs' notation.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Type {
    /// `null` (only as one side of `|`).
    Null,
    /// A primitive (`string`, `digest`, `time`, …) or a shape defined by
    /// name.
    Name(String),
    /// `[type]`.
    Array(Box<Type>),
    /// `{ "key": type, … }`, keys in the order written.
    Object(Vec<(String, Type)>),
    /// `a | b`.
    Either(Vec<Type>),
}

/// The primitives the docs' table of types lists.
pub(crate) const PRIMITIVES: [&str; 10] = [
    "string",
    "reference",
    "digest",
    "platform",
    "path",
    "time",
    "bytes",
    "count",
    "bool",
    "labels",
];

/// Every `name = type` of the ```` ```shape ```` blocks of `markdown`.
pub(crate) fn parse_docs(markdown: &str) -> Result<BTreeMap<String, Type>, String> {
    let mut text = String::new();
    let mut inside = false;
    for line in markdown.lines() {
        if inside && line.trim_start().starts_with("```") {
            inside = false;
        } else if inside {
            text.push_str(line);
            text.push('\n');
        } else if line.trim() == "```shape" {
            inside = true;
        }
    }
    if inside {
        return Err("a ```shape block is not closed".into());
    }
    let tokens = tokenize(&text)?;
    let mut parser = Parser { tokens, at: 0 };
    let mut shapes = BTreeMap::new();
    while parser.at < parser.tokens.len() {
        let name = parser.word()?;
        parser.expect("=")?;
        let shape = parser.either()?;
        if shapes.insert(name.clone(), shape).is_some() {
            return Err(format!("shape {name} is defined twice"));
        }
    }
    for (name, shape) in &shapes {
        for used in names_in(shape) {
            if !PRIMITIVES.contains(&used.as_str()) && !shapes.contains_key(&used) {
                return Err(format!("shape {name} uses {used}, which is not defined"));
            }
        }
    }
    Ok(shapes)
}

/// The names a type refers to.
pub(crate) fn names_in(shape: &Type) -> Vec<String> {
    match shape {
        Type::Null => Vec::new(),
        Type::Name(name) => vec![name.clone()],
        Type::Array(inner) => names_in(inner),
        Type::Object(fields) => fields.iter().flat_map(|(_, t)| names_in(t)).collect(),
        Type::Either(types) => types.iter().flat_map(names_in).collect(),
    }
}

/// Every way `value` departs from `shape`, one line each with its JSON
/// path; empty when it matches.
pub(crate) fn check(
    value: &Value,
    shape: &Type,
    shapes: &BTreeMap<String, Type>,
    path: &str,
) -> Vec<String> {
    match shape {
        Type::Null if value.is_null() => Vec::new(),
        Type::Null => vec![format!("{path}: expected null, got {value}")],
        Type::Either(types) => {
            let mut all = Vec::new();
            for t in types {
                let problems = check(value, t, shapes, path);
                if problems.is_empty() {
                    return Vec::new();
                }
                all.extend(problems);
            }
            all
        }
        Type::Array(inner) => match value.as_array() {
            Some(items) => items
                .iter()
                .enumerate()
                .flat_map(|(i, item)| check(item, inner, shapes, &format!("{path}[{i}]")))
                .collect(),
            None => vec![format!("{path}: expected an array, got {value}")],
        },
        Type::Object(fields) => {
            let Some(object) = value.as_object() else {
                return vec![format!("{path}: expected an object, got {value}")];
            };
            let mut problems = Vec::new();
            for key in object.keys() {
                if !fields.iter().any(|(k, _)| k == key) {
                    problems.push(format!("{path}.{key}: in the output, not in docs/cli.md"));
                }
            }
            for (key, t) in fields {
                match object.get(key) {
                    Some(v) => problems.extend(check(v, t, shapes, &format!("{path}.{key}"))),
                    None => {
                        problems.push(format!("{path}.{key}: in docs/cli.md, not in the output"))
                    }
                }
            }
            problems
        }
        Type::Name(name) => match shapes.get(name) {
            Some(defined) => check(value, defined, shapes, path),
            None if primitive(value, name) => Vec::new(),
            None => vec![format!("{path}: expected {name}, got {value}")],
        },
    }
}

/// Whether `value` is of the primitive type `name`.
fn primitive(value: &Value, name: &str) -> bool {
    let text = value.as_str();
    match name {
        "string" => text.is_some(),
        "reference" | "path" => {
            text.is_some_and(|t| !t.is_empty() && !t.contains(char::is_whitespace))
        }
        "digest" => text.is_some_and(|t| {
            t.strip_prefix("sha256:").is_some_and(|hex| {
                hex.len() == 64
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
        }),
        "platform" => text.is_some_and(|t| {
            let parts: Vec<&str> = t.split('/').collect();
            (2..=3).contains(&parts.len()) && parts.iter().all(|p| !p.is_empty())
        }),
        "time" => text.is_some_and(is_rfc3339_utc),
        "bytes" | "count" => value.is_u64(),
        "bool" => value.is_boolean(),
        "labels" => value
            .as_object()
            .is_some_and(|o| o.values().all(Value::is_string)),
        _ => false,
    }
}

/// `2026-12-06T15:04:05Z` or `2026-12-06T15:04:05.123Z`.
pub(crate) fn is_rfc3339_utc(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range.clone())
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let number = |range: std::ops::Range<usize>| text[range].parse::<u32>().unwrap_or(99);
    if bytes.len() < 20
        || !(digits(0..4) && digits(5..7) && digits(8..10))
        || !(digits(11..13) && digits(14..16) && digits(17..19))
        || (bytes[4], bytes[7], bytes[10], bytes[13], bytes[16]) != (b'-', b'-', b'T', b':', b':')
    {
        return false;
    }
    let in_range = (1..=12).contains(&number(5..7))
        && (1..=31).contains(&number(8..10))
        && number(11..13) < 24
        && number(14..16) < 60
        && number(17..19) < 61;
    let rest = &text[19..];
    let fraction_ok = match rest.strip_suffix('Z') {
        Some("") => true,
        Some(fraction) => fraction
            .strip_prefix('.')
            .is_some_and(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    };
    in_range && fraction_ok
}

fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '{' | '}' | '[' | ']' | ':' | ',' | '|' | '=' => tokens.push(c.to_string()),
            '"' => {
                let mut key = String::from('"');
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) => key.push(c),
                        None => return Err("a key's quote is not closed".into()),
                    }
                }
                tokens.push(key);
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut word = c.to_string();
                while let Some(&next) = chars.peek() {
                    if !(next.is_ascii_alphanumeric() || next == '_') {
                        break;
                    }
                    word.push(next);
                    chars.next();
                }
                tokens.push(word);
            }
            other => return Err(format!("unexpected {other:?} in a shape block")),
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<String>,
    at: usize,
}

impl Parser {
    fn next(&mut self) -> Result<String, String> {
        let token = self
            .tokens
            .get(self.at)
            .cloned()
            .ok_or("a shape block ends too early")?;
        self.at += 1;
        Ok(token)
    }

    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.at).map(String::as_str)
    }

    fn expect(&mut self, token: &str) -> Result<(), String> {
        let got = self.next()?;
        if got == token {
            Ok(())
        } else {
            Err(format!(
                "expected {token:?}, got {got:?} (token {})",
                self.at
            ))
        }
    }

    fn word(&mut self) -> Result<String, String> {
        let got = self.next()?;
        if got.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            Ok(got)
        } else {
            Err(format!("expected a name, got {got:?} (token {})", self.at))
        }
    }

    fn either(&mut self) -> Result<Type, String> {
        let mut types = vec![self.single()?];
        while self.peek() == Some("|") {
            self.at += 1;
            types.push(self.single()?);
        }
        Ok(if types.len() == 1 {
            types.remove(0)
        } else {
            Type::Either(types)
        })
    }

    fn single(&mut self) -> Result<Type, String> {
        match self.next()?.as_str() {
            "[" => {
                let inner = self.either()?;
                self.expect("]")?;
                Ok(Type::Array(Box::new(inner)))
            }
            "{" => {
                let mut fields: Vec<(String, Type)> = Vec::new();
                while self.peek() != Some("}") {
                    let key = self.next()?;
                    let Some(key) = key.strip_prefix('"') else {
                        return Err(format!("expected a quoted key, got {key:?}"));
                    };
                    self.expect(":")?;
                    let t = self.either()?;
                    if fields.iter().any(|(k, _)| k == key) {
                        return Err(format!("key {key:?} appears twice in one object"));
                    }
                    fields.push((key.to_owned(), t));
                    if self.peek() == Some(",") {
                        self.at += 1;
                    }
                }
                self.at += 1;
                Ok(Type::Object(fields))
            }
            "null" => Ok(Type::Null),
            word if word.starts_with(|c: char| c.is_ascii_alphabetic()) => {
                Ok(Type::Name(word.to_owned()))
            }
            other => Err(format!("unexpected {other:?} (token {})", self.at)),
        }
    }
}
