//! containerd's filter language.
//!
//! ```text
//! filter    = selector { "," selector }        all must hold
//! selector  = fieldpath [ op value ]           no op: the field is present
//! fieldpath = field { "." field }
//! field     = [A-Za-z0-9_-]+ | quoted
//! op        = "==" | "!=" | "~="               "~=" takes a regular expression
//! value     = quoted | anything up to "," (trimmed)
//! quoted    = "..." | '...' | /.../            with backslash escapes
//! ```
//! Several filters match when any of them does; none matches everything.
//! Like containerd, `!=` holds when the field is absent.

use regex_lite::Regex;

use crate::bindings::exports::kist::content::types::Label;
use crate::shared::error::{Result, invalid};

/// Something filters can look at: returns a field's value if present.
pub trait Fields {
    /// The value at `path` (for example `["labels", "a.b"]`).
    fn field(&self, path: &[String]) -> Option<String>;
}

/// A parsed list of filters (OR of ANDs).
pub struct Filters(Vec<Vec<Selector>>);

/// One condition on one field.
struct Selector {
    path: Vec<String>,
    op: Op,
}

enum Op {
    Present,
    Equal(String),
    NotEqual(String),
    Matches(Regex),
}

impl Filters {
    /// Parses every filter, failing on the first malformed one.
    pub fn parse(filters: &[String]) -> Result<Self> {
        filters
            .iter()
            .map(|f| {
                Parser { src: f, pos: 0 }
                    .filter()
                    .map_err(|why| invalid(format!("filter {f:?}: {why}")))
            })
            .collect::<Result<_>>()
            .map(Filters)
    }

    /// Whether `item` matches any filter (or there are none).
    pub fn matches(&self, item: &dyn Fields) -> bool {
        self.0.is_empty() || self.0.iter().any(|all| all.iter().all(|s| s.matches(item)))
    }
}

impl Selector {
    fn matches(&self, item: &dyn Fields) -> bool {
        let value = item.field(&self.path);
        match &self.op {
            Op::Present => value.is_some(),
            Op::Equal(v) => value.as_deref() == Some(v),
            Op::NotEqual(v) => value.as_deref() != Some(v),
            Op::Matches(re) => re.is_match(value.as_deref().unwrap_or("")),
        }
    }
}

/// Joins `path[1..]` with dots: `labels.a.b` names the label `a.b`, as in
/// containerd.
pub fn rest_key(path: &[String]) -> Option<String> {
    (path.len() > 1).then(|| path[1..].join("."))
}

/// The value of the label `path` names (`labels.<key>`, `metadata.<key>`)
/// among `labels`.
pub fn label_field(labels: &[Label], path: &[String]) -> Option<String> {
    let key = rest_key(path)?;
    labels
        .iter()
        .find(|l| l.key == key)
        .map(|l| l.value.clone())
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn filter(&mut self) -> std::result::Result<Vec<Selector>, String> {
        let mut selectors = vec![self.selector()?];
        while self.eat(",") {
            selectors.push(self.selector()?);
        }
        self.skip_space();
        match self.peek() {
            None => Ok(selectors),
            Some(c) => Err(format!("unexpected {c:?} at {}", self.pos)),
        }
    }

    fn selector(&mut self) -> std::result::Result<Selector, String> {
        let mut path = vec![self.field()?];
        while self.eat(".") {
            path.push(self.field()?);
        }
        self.skip_space();
        let op = if self.eat("==") {
            Op::Equal(self.value()?)
        } else if self.eat("!=") {
            Op::NotEqual(self.value()?)
        } else if self.eat("~=") {
            let re = self.value()?;
            Op::Matches(Regex::new(&re).map_err(|e| format!("bad regular expression {re:?}: {e}"))?)
        } else {
            Op::Present
        };
        Ok(Selector { path, op })
    }

    fn field(&mut self) -> std::result::Result<String, String> {
        self.skip_space();
        if let Some(q) = self.peek().filter(|c| matches!(c, '"' | '\'' | '/')) {
            return self.quoted(q);
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(format!("expected a field name at {start}"));
        }
        Ok(self.src[start..self.pos].to_owned())
    }

    fn value(&mut self) -> std::result::Result<String, String> {
        self.skip_space();
        if let Some(q) = self.peek().filter(|c| matches!(c, '"' | '\'' | '/')) {
            return self.quoted(q);
        }
        let rest = &self.src[self.pos..];
        let len = rest.find(',').unwrap_or(rest.len());
        self.pos += len;
        let value = rest[..len].trim();
        if value.is_empty() {
            return Err(format!("expected a value at {}", self.pos));
        }
        Ok(value.to_owned())
    }

    fn quoted(&mut self, quote: char) -> std::result::Result<String, String> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.src[self.pos..].chars();
        while let Some(c) = chars.next() {
            self.pos += c.len_utf8();
            match c {
                c if c == quote => return Ok(out),
                '\\' => {
                    let e = chars.next().ok_or("unterminated escape")?;
                    self.pos += e.len_utf8();
                    // In a /regex/, escapes other than \/ belong to the regex.
                    if quote == '/' && e != '/' {
                        out.push('\\');
                        out.push(e);
                        continue;
                    }
                    out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        e => e,
                    });
                }
                c => out.push(c),
            }
        }
        Err(format!("unterminated quote starting at {start}"))
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        let hit = self.src[self.pos..].starts_with(token);
        if hit {
            self.pos += token.len();
        }
        hit
    }

    fn skip_space(&mut self) {
        while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
            self.pos += c.len_utf8();
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }
}
