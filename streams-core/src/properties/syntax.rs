//! The `.properties` syntax, as `java.util.Properties.load` reads it: logical lines (comments,
//! blank lines and backslash continuations), the key/value split, and unescaping. What the
//! entries mean is [`super`]'s business.

use super::PropertiesError;

/// One `key=value` entry of a properties file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// The key, unescaped.
    pub key: String,
    /// The value, unescaped.
    pub value: String,
    /// The (first) line it is on, 1-based.
    pub line: usize,
}

/// Parses `.properties` text as `java.util.Properties.load` does, in file order (duplicates
/// kept). `origin` names the text in errors.
pub fn parse(origin: &str, text: &str) -> Result<Vec<Property>, PropertiesError> {
    let mut out = Vec::new();
    for (line, logical) in logical_lines(text) {
        let (raw_key, raw_value) = split_key_value(&logical);
        let syntax = |reason: String| PropertiesError::Syntax {
            origin: origin.to_owned(),
            line,
            reason,
        };
        let key = unescape(&raw_key).map_err(|r| syntax(format!("in the key: {r}")))?;
        let value = unescape(&raw_value).map_err(|r| syntax(format!("in the value: {r}")))?;
        out.push(Property { key, value, line });
    }
    Ok(out)
}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0c')
}

/// The logical lines (comments and blank lines dropped, continuations joined), each with the
/// number of its first natural line. Escapes are kept for `unescape`.
fn logical_lines(text: &str) -> Vec<(usize, Vec<char>)> {
    // Natural lines end at \n, \r or \r\n.
    let mut natural: Vec<&str> = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find(['\n', '\r']) {
            Some(i) => {
                natural.push(&rest[..i]);
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
            }
            None => {
                natural.push(rest);
                rest = "";
            }
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < natural.len() {
        let first = i + 1;
        let start: Vec<char> = natural[i].chars().skip_while(|c| is_blank(*c)).collect();
        i += 1;
        if start.is_empty() || start[0] == '#' || start[0] == '!' {
            continue;
        }
        let mut logical = start;
        while ends_in_continuation(&logical) {
            logical.pop();
            if i >= natural.len() {
                break;
            }
            logical.extend(natural[i].chars().skip_while(|c| is_blank(*c)));
            i += 1;
        }
        out.push((first, logical));
    }
    out
}

/// Whether the line ends in an odd number of backslashes.
fn ends_in_continuation(line: &[char]) -> bool {
    line.iter().rev().take_while(|c| **c == '\\').count() % 2 == 1
}

/// Splits a logical line at the first unescaped `=`, `:` or whitespace, as Java does.
fn split_key_value(line: &[char]) -> (Vec<char>, Vec<char>) {
    let mut key_len = 0;
    let mut value_start = line.len();
    let mut has_separator = false;
    let mut escaped = false;
    while key_len < line.len() {
        let c = line[key_len];
        if (c == '=' || c == ':') && !escaped {
            value_start = key_len + 1;
            has_separator = true;
            break;
        }
        if is_blank(c) && !escaped {
            value_start = key_len + 1;
            break;
        }
        escaped = c == '\\' && !escaped;
        key_len += 1;
    }
    while value_start < line.len() {
        let c = line[value_start];
        if !is_blank(c) {
            if !has_separator && (c == '=' || c == ':') {
                has_separator = true;
            } else {
                break;
            }
        }
        value_start += 1;
    }
    (
        line[..key_len].to_vec(),
        line[value_start.min(line.len())..].to_vec(),
    )
}

/// Resolves escapes: `\t \n \r \f`, `\uXXXX` (UTF-16, surrogate pairs joined), and `\x` for any
/// other `x`. A lone backslash at the end is dropped.
fn unescape(raw: &[char]) -> Result<String, String> {
    let mut units: Vec<u16> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        i += 1;
        if c != '\\' {
            let mut buf = [0u16; 2];
            units.extend_from_slice(c.encode_utf16(&mut buf));
            continue;
        }
        let Some(&next) = raw.get(i) else {
            break;
        };
        i += 1;
        let plain = match next {
            't' => '\t',
            'n' => '\n',
            'r' => '\r',
            'f' => '\x0c',
            'u' => {
                let digits: String = raw.iter().skip(i).take(4).collect();
                let unit = (digits.len() == 4 && digits.chars().all(|d| d.is_ascii_hexdigit()))
                    .then(|| u16::from_str_radix(&digits, 16).ok())
                    .flatten()
                    .ok_or_else(|| {
                        format!("malformed \\uXXXX escape `\\u{digits}`: \\u needs four hex digits")
                    })?;
                units.push(unit);
                i += 4;
                continue;
            }
            other => other,
        };
        let mut buf = [0u16; 2];
        units.extend_from_slice(plain.encode_utf16(&mut buf));
    }
    String::from_utf16(&units).map_err(|_| {
        "a \\uXXXX escape leaves an unpaired UTF-16 surrogate (\\uD800-\\uDFFF need a pair)"
            .to_owned()
    })
}
