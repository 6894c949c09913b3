//! The part of UCL (libucl's syntax, which FreeBSD's iovctl.conf(5) files
//! are written in) that such files use, parsed into a tree that keeps each
//! key's and value's line and column for error messages.
//!
//! Accepted: `key : value;`, `key = value`, `key value` and `key { ... }`;
//! `;` or `,` after a value (optional); several pairs per line; an optional
//! `{ ... }` around the whole document; values that are objects, arrays,
//! double-quoted strings (with `\" \\ \/ \n \t \r \b \f \uXXXX`),
//! single-quoted strings (only `\'` escaped) or bare atoms (`true`, `4`,
//! `ix0`, `02:56:48:7e:d9:f7`); comments `#` and `//` to the end of the
//! line and `/* */` (nested, as in libucl). Not accepted: macros
//! (`.include`), heredocs, variables. This file has no dependency but std
//! so the fuzz target (`fuzz/`) can build it alone.

use std::fmt;

/// Deepest nesting of objects and arrays (iovctl.conf needs 2).
const MAX_DEPTH: usize = 16;

/// A position in the text: 1-based line and column (in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A syntax error: where, what was found there, what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where the offending token starts.
    pub pos: Pos,
    /// The token as shown to the user (`'}'`, `"abc"`, `end of file`).
    pub found: String,
    /// What would have been accepted there.
    pub expected: &'static str,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: found {}, expected {}",
            self.pos, self.found, self.expected
        )
    }
}

impl std::error::Error for SyntaxError {}

/// A value and where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    /// Where the value starts.
    pub pos: Pos,
    /// What it is.
    pub kind: Kind,
}

/// The kinds of values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A string; `quoted` tells `"true"` (a string) from `true` (a boolean).
    Scalar { text: String, quoted: bool },
    /// `{ key value ... }`, in file order, repeated keys kept.
    Object(Vec<Pair>),
    /// `[ value, ... ]`.
    Array(Vec<Value>),
}

/// One `key value` of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    /// The key's text.
    pub key: String,
    /// Where the key starts.
    pub pos: Pos,
    /// Its value.
    pub value: Value,
}

impl Value {
    /// The value as shown in messages: a scalar as written, `{...}`, `[...]`.
    pub fn shown(&self) -> String {
        match &self.kind {
            Kind::Scalar { text, quoted: true } => format!("{text:?}"),
            Kind::Scalar { text, .. } => format!("'{text}'"),
            Kind::Object(_) => "a section { ... }".to_string(),
            Kind::Array(_) => "a list [ ... ]".to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    OpenList,
    CloseList,
    Separator,  // ':' or '='
    Terminator, // ';' or ','
    Atom(String),
    Quoted(String),
    End,
}

impl Token {
    fn shown(&self) -> String {
        match self {
            Token::Open => "'{'".into(),
            Token::Close => "'}'".into(),
            Token::OpenList => "'['".into(),
            Token::CloseList => "']'".into(),
            Token::Separator => "':'".into(),
            Token::Terminator => "';'".into(),
            Token::Atom(a) => format!("'{a}'"),
            Token::Quoted(s) => format!("{s:?}"),
            Token::End => "end of file".into(),
        }
    }
}

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    pos: Pos,
    /// A token read ahead, with its position.
    peeked: Option<(Token, Pos)>,
}

/// Whether a key atom ends at `c`. Values may contain ':' (MACs) and '='.
fn ends_key(c: char) -> bool {
    ends_value(c) || c == ':' || c == '='
}

fn ends_value(c: char) -> bool {
    c.is_whitespace() || "{}[];,\"'#".contains(c)
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Lexer {
            chars: text.chars().peekable(),
            pos: Pos { line: 1, column: 1 },
            peeked: None,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.pos.line = self.pos.line.saturating_add(1);
            self.pos.column = 1;
        } else {
            self.pos.column = self.pos.column.saturating_add(1);
        }
        Some(c)
    }

    fn peek_second(&self) -> Option<char> {
        let mut it = self.chars.clone();
        it.next();
        it.next()
    }

    fn error(&self, pos: Pos, found: String, expected: &'static str) -> SyntaxError {
        SyntaxError {
            pos,
            found,
            expected,
        }
    }

    /// Skips blanks and comments.
    fn skip(&mut self) -> Result<(), SyntaxError> {
        loop {
            match self.chars.peek().copied() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some('#') => self.skip_line(),
                Some('/') if self.peek_second() == Some('/') => self.skip_line(),
                Some('/') if self.peek_second() == Some('*') => {
                    let start = self.pos;
                    self.bump();
                    self.bump();
                    let mut depth = 1usize;
                    while depth > 0 {
                        match self.bump() {
                            None => {
                                return Err(self.error(
                                    start,
                                    "'/*' without '*/'".into(),
                                    "the comment to be closed with '*/'",
                                ))
                            }
                            Some('*') if self.chars.peek() == Some(&'/') => {
                                self.bump();
                                depth -= 1;
                            }
                            Some('/') if self.chars.peek() == Some(&'*') => {
                                self.bump();
                                depth += 1;
                            }
                            Some(_) => {}
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn skip_line(&mut self) {
        while let Some(c) = self.bump() {
            if c == '\n' {
                break;
            }
        }
    }

    fn peek(&mut self, in_value: bool) -> Result<&(Token, Pos), SyntaxError> {
        if self.peeked.is_none() {
            let t = self.read(in_value)?;
            self.peeked = Some(t);
        }
        Ok(self.peeked.as_ref().expect("just filled"))
    }

    fn next(&mut self, in_value: bool) -> Result<(Token, Pos), SyntaxError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.read(in_value),
        }
    }

    fn read(&mut self, in_value: bool) -> Result<(Token, Pos), SyntaxError> {
        self.skip()?;
        let pos = self.pos;
        let Some(&c) = self.chars.peek() else {
            return Ok((Token::End, pos));
        };
        let single = match c {
            '{' => Some(Token::Open),
            '}' => Some(Token::Close),
            '[' => Some(Token::OpenList),
            ']' => Some(Token::CloseList),
            ':' | '=' => Some(Token::Separator),
            ';' | ',' => Some(Token::Terminator),
            _ => None,
        };
        if let Some(t) = single {
            self.bump();
            return Ok((t, pos));
        }
        if c == '"' || c == '\'' {
            return self.quoted(c, pos).map(|s| (Token::Quoted(s), pos));
        }
        let ends = if in_value { ends_value } else { ends_key };
        let mut atom = String::new();
        while let Some(&c) = self.chars.peek() {
            if ends(c) || (c == '/' && matches!(self.peek_second(), Some('/' | '*'))) {
                break;
            }
            atom.push(c);
            self.bump();
        }
        Ok((Token::Atom(atom), pos))
    }

    fn quoted(&mut self, quote: char, start: Pos) -> Result<String, SyntaxError> {
        self.bump();
        let mut s = String::new();
        loop {
            let at = self.pos;
            match self.bump() {
                None => {
                    return Err(self.error(
                        start,
                        "a string without its closing quote".into(),
                        "the string to end with a quote",
                    ))
                }
                Some(c) if c == quote => return Ok(s),
                Some('\\') if quote == '\'' => match self.chars.peek() {
                    Some('\'') => {
                        self.bump();
                        s.push('\'');
                    }
                    _ => s.push('\\'),
                },
                Some('\\') => {
                    let c = self.bump();
                    s.push(match c {
                        Some('"') => '"',
                        Some('\\') => '\\',
                        Some('/') => '/',
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some('b') => '\u{8}',
                        Some('f') => '\u{c}',
                        Some('u') => self.unicode(at)?,
                        other => {
                            return Err(self.error(
                                at,
                                format!("'\\{}'", other.map(String::from).unwrap_or_default()),
                                "an escape: \\\" \\\\ \\/ \\n \\t \\r \\b \\f or \\uXXXX",
                            ))
                        }
                    });
                }
                Some(c) => s.push(c),
            }
        }
    }

    fn unicode(&mut self, at: Pos) -> Result<char, SyntaxError> {
        let mut hex = String::new();
        for _ in 0..4 {
            match self.chars.peek() {
                Some(c) if c.is_ascii_hexdigit() => {
                    hex.push(*c);
                    self.bump();
                }
                _ => break,
            }
        }
        u32::from_str_radix(&hex, 16)
            .ok()
            .filter(|_| hex.len() == 4)
            .and_then(char::from_u32)
            .ok_or_else(|| {
                self.error(
                    at,
                    format!("'\\u{hex}'"),
                    "\\u and four hex digits of a character",
                )
            })
    }
}

/// Parses a document; the result is its top-level pairs.
pub fn parse(text: &str) -> Result<Vec<Pair>, SyntaxError> {
    let mut lx = Lexer::new(text);
    let braced = matches!(lx.peek(false)?, (Token::Open, _));
    if braced {
        lx.next(false)?;
    }
    let end = if braced { Token::Close } else { Token::End };
    let pairs = object_body(&mut lx, &end, 1)?;
    if braced {
        let (t, pos) = lx.next(false)?;
        if t != Token::End {
            return Err(lx.error(pos, t.shown(), "end of file after the closing '}'"));
        }
    }
    Ok(pairs)
}

fn object_body(lx: &mut Lexer, end: &Token, depth: usize) -> Result<Vec<Pair>, SyntaxError> {
    let mut pairs = Vec::new();
    loop {
        let (t, pos) = lx.next(false)?;
        let key = match t {
            t if t == *end => return Ok(pairs),
            Token::Terminator => continue,
            Token::Atom(a) if !a.is_empty() => a,
            Token::Quoted(q) => q,
            other => {
                let expected = if *end == Token::Close {
                    "a key or '}'"
                } else {
                    "a key or end of file"
                };
                return Err(lx.error(pos, other.shown(), expected));
            }
        };
        if matches!(lx.peek(true)?, (Token::Separator, _)) {
            lx.next(true)?;
        }
        let value = value(lx, depth)?;
        if matches!(lx.peek(false)?, (Token::Terminator, _)) {
            lx.next(false)?;
        }
        pairs.push(Pair { key, pos, value });
    }
}

fn value(lx: &mut Lexer, depth: usize) -> Result<Value, SyntaxError> {
    let (t, pos) = lx.next(true)?;
    let nested = |lx: &Lexer| {
        if depth >= MAX_DEPTH {
            Err(lx.error(pos, t.shown(), "fewer nested sections (at most 16)"))
        } else {
            Ok(())
        }
    };
    let kind = match &t {
        Token::Open => {
            nested(lx)?;
            Kind::Object(object_body(lx, &Token::Close, depth + 1)?)
        }
        Token::OpenList => {
            nested(lx)?;
            let mut items = Vec::new();
            loop {
                if matches!(lx.peek(true)?, (Token::CloseList, _)) {
                    lx.next(true)?;
                    break;
                }
                items.push(value(lx, depth + 1)?);
                match lx.next(true)? {
                    (Token::Terminator, _) => {}
                    (Token::CloseList, _) => break,
                    (other, p) => return Err(lx.error(p, other.shown(), "',' or ']'")),
                }
            }
            Kind::Array(items)
        }
        Token::Atom(a) if !a.is_empty() => Kind::Scalar {
            text: a.clone(),
            quoted: false,
        },
        Token::Quoted(q) => Kind::Scalar {
            text: q.clone(),
            quoted: true,
        },
        other => return Err(lx.error(pos, other.shown(), "a value")),
    };
    Ok(Value { pos, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(text: &str, quoted: bool) -> Kind {
        Kind::Scalar {
            text: text.into(),
            quoted,
        }
    }

    /// (key, line, column, value as shown) of each pair, recursively.
    fn flat(pairs: &[Pair]) -> Vec<String> {
        let mut out = Vec::new();
        for p in pairs {
            out.push(format!(
                "{}@{} {}@{}",
                p.key,
                p.pos,
                p.value.shown(),
                p.value.pos
            ));
            if let Kind::Object(inner) = &p.value.kind {
                out.extend(flat(inner).into_iter().map(|s| format!("  {s}")));
            }
        }
        out
    }

    #[test]
    fn parses_freebsd_example() {
        // iovctl.conf(5)'s example, as FreeBSD ships it.
        let text = "PF {\n\tdevice : \"ix0\";\n\tnum_vfs : 4;\n}\n\nDEFAULT {\n\tpassthrough : true;\n}\n\n\
                    VF-0 {\n\tmac-addr : \"02:56:48:7e:d9:f7\";\n\tpassthrough : false;\n}\n";
        let doc = parse(text).unwrap();
        assert_eq!(
            flat(&doc),
            [
                "PF@1:1 a section { ... }@1:4",
                "  device@2:2 \"ix0\"@2:11",
                "  num_vfs@3:2 '4'@3:12",
                "DEFAULT@6:1 a section { ... }@6:9",
                "  passthrough@7:2 'true'@7:16",
                "VF-0@10:1 a section { ... }@10:6",
                "  mac-addr@11:2 \"02:56:48:7e:d9:f7\"@11:13",
                "  passthrough@12:2 'false'@12:16",
            ]
        );
    }

    #[test]
    fn accepts_every_separator_comment_and_layout() {
        let text = "{ PF { device = eth0, num_vfs 2 } # trailing\n\
                    // a line comment\n\
                    /* a /* nested */ block */ VF-1:{mac-addr:02:00:00:00:00:01;passthrough:yes;} }";
        let doc = parse(text).unwrap();
        assert_eq!(
            flat(&doc),
            [
                "PF@1:3 a section { ... }@1:6",
                "  device@1:8 'eth0'@1:17",
                "  num_vfs@1:23 '2'@1:31",
                "VF-1@3:28 a section { ... }@3:33",
                "  mac-addr@3:34 '02:00:00:00:00:01'@3:43",
                "  passthrough@3:61 'yes'@3:73",
            ]
        );
        assert_eq!(parse("").unwrap(), []);
        assert_eq!(parse("  # only a comment").unwrap(), []);
        assert_eq!(parse("{}").unwrap(), []);
    }

    #[test]
    fn strings_escapes_and_lists() {
        let doc =
            parse(r#"a "x\"\\\/\n\t\u00e9"; b 'it\'s \n'; c [1, "two", [3]]; "quoted key" 1"#)
                .unwrap();
        assert_eq!(doc[0].value.kind, scalar("x\"\\/\n\té", true));
        assert_eq!(doc[1].value.kind, scalar("it's \\n", true));
        let Kind::Array(items) = &doc[2].value.kind else {
            panic!("{:?}", doc[2]);
        };
        assert_eq!(items.len(), 3);
        assert_eq!(items[1].kind, scalar("two", true));
        assert_eq!(doc[3].key, "quoted key");
        assert_eq!(doc[3].value.kind, scalar("1", false));
    }

    #[test]
    fn errors_name_line_column_token_and_expectation() {
        let cases: &[(&str, &str)] = &[
            ("PF {\n  device : ;\n}", "2:12: found ';', expected a value"),
            ("PF {\n  device : \"eth0\";\n", "3:1: found end of file, expected a key or '}'"),
            ("PF }", "1:4: found '}', expected a value"),
            ("}", "1:1: found '}', expected a key or end of file"),
            ("{ a 1 } b", "1:9: found 'b', expected end of file after the closing '}'"),
            ("a \"open", "1:3: found a string without its closing quote, expected the string to end with a quote"),
            ("a \"\\q\"", "1:4: found '\\q', expected an escape: \\\" \\\\ \\/ \\n \\t \\r \\b \\f or \\uXXXX"),
            ("a \"\\u12\"", "1:4: found '\\u12', expected \\u and four hex digits of a character"),
            ("a \"\\ud800\"", "1:4: found '\\ud800', expected \\u and four hex digits of a character"),
            ("/* never closed", "1:1: found '/*' without '*/', expected the comment to be closed with '*/'"),
            ("a [1 2]", "1:6: found '2', expected ',' or ']'"),
            ("a : : 1", "1:5: found ':', expected a value"),
            ("a\n\n\n\n\n\n\n", "8:1: found end of file, expected a value"),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse(text).map_err(|e| e.to_string()),
                Err(want.to_string()),
                "{text:?}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = "a {".repeat(10_000);
        let e = parse(&deep).unwrap_err();
        assert_eq!(e.expected, "fewer nested sections (at most 16)");
        let list = "a ".to_string() + &"[".repeat(10_000);
        assert!(parse(&list).is_err());
    }
}
