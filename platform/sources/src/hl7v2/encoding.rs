//! Delimiters (MSH-1, MSH-2) and HL7 escape sequences.
//!
//! Delimiters are validated to be ASCII punctuation, so splitting a `&str` on them never
//! cuts a UTF-8 character.

use std::borrow::Cow;

use super::error::{ErrorKind, Location, ParseError};

/// The delimiters a message declares in MSH-1 and MSH-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    /// MSH-1, usually `|`.
    pub field: u8,
    /// MSH-2 first character, usually `^`.
    pub component: u8,
    /// MSH-2 second character, usually `~`.
    pub repetition: u8,
    /// MSH-2 third character, usually `\`.
    pub escape: u8,
    /// MSH-2 fourth character, usually `&`.
    pub subcomponent: u8,
    /// MSH-2 fifth character (HL7 2.7+), usually `#`; `None` when MSH-2 has four.
    pub truncation: Option<u8>,
}

impl Default for Delimiters {
    fn default() -> Self {
        Self {
            field: b'|',
            component: b'^',
            repetition: b'~',
            escape: b'\\',
            subcomponent: b'&',
            truncation: None,
        }
    }
}

fn is_delimiter_char(b: u8) -> bool {
    b.is_ascii_punctuation()
}

impl Delimiters {
    /// Reads MSH-1 and MSH-2 from the first segment (`line` starts with `MSH`).
    pub(crate) fn from_msh(line: &[u8], location: &Location) -> Result<Self, ParseError> {
        let err = |kind: ErrorKind, field: usize| {
            let mut loc = location.clone();
            loc.field = Some(field);
            ParseError::new(kind, loc)
        };
        let Some(&field) = line.get(3) else {
            return Err(err(ErrorKind::ShortMsh { fields: 0 }, 1));
        };
        if !is_delimiter_char(field) {
            return Err(err(
                ErrorKind::BadFieldSeparator {
                    found: String::from_utf8_lossy(&line[3..4]).into_owned(),
                    reason: "must be an ASCII punctuation character",
                },
                1,
            ));
        }
        let rest = &line[4..];
        let enc = &rest[..rest.iter().position(|&b| b == field).unwrap_or(rest.len())];
        let bad = |reason: &'static str| {
            err(
                ErrorKind::BadEncodingCharacters {
                    found: String::from_utf8_lossy(enc).into_owned(),
                    reason,
                },
                2,
            )
        };
        if enc.len() < 4 {
            return Err(bad("need 4 characters: component, repetition, escape, subcomponent"));
        }
        if enc.len() > 5 {
            return Err(bad("more than 5 characters"));
        }
        if !enc.iter().all(|&b| is_delimiter_char(b)) {
            return Err(bad("each must be an ASCII punctuation character"));
        }
        for (i, &b) in enc.iter().enumerate() {
            if b == field || enc[i + 1..].contains(&b) {
                return Err(bad("characters must differ from each other and from MSH-1"));
            }
        }
        Ok(Self {
            field,
            component: enc[0],
            repetition: enc[1],
            escape: enc[2],
            subcomponent: enc[3],
            truncation: enc.get(4).copied(),
        })
    }

    /// MSH-2 as it would be written.
    pub fn encoding_characters(&self) -> String {
        let mut s = String::with_capacity(5);
        for b in [self.component, self.repetition, self.escape, self.subcomponent] {
            s.push(char::from(b));
        }
        if let Some(t) = self.truncation {
            s.push(char::from(t));
        }
        s
    }

    /// Decodes escape sequences in one leaf value (a component or subcomponent that has
    /// already been split out). Borrows when there is nothing to decode.
    ///
    /// `\F\ \S\ \T\ \R\ \E\` become the delimiters, `\P\` the truncation character (2.7+),
    /// `\Xhh..\` the bytes it spells (UTF-8 if they form it, else ISO-8859-1), `\.br\` a
    /// line feed. Anything else (`\H\`, `\N\`, `\Cxxyy\`, malformed hex, an unterminated
    /// sequence) is left verbatim.
    pub fn unescape<'a>(&self, value: &'a str) -> Cow<'a, str> {
        let esc = char::from(self.escape);
        if !value.contains(esc) {
            return Cow::Borrowed(value);
        }
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(start) = rest.find(esc) {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let Some(len) = after.find(esc) else {
                // Unterminated: keep the remainder as sent.
                out.push_str(&rest[start..]);
                return Cow::Owned(out);
            };
            let body = &after[..len];
            if self.decode_sequence(body, &mut out) {
                rest = &after[len + 1..];
            } else {
                // Unknown or malformed: keep the whole sequence as sent.
                out.push(esc);
                out.push_str(body);
                out.push(esc);
                rest = &after[len + 1..];
            }
        }
        out.push_str(rest);
        Cow::Owned(out)
    }

    fn decode_sequence(&self, body: &str, out: &mut String) -> bool {
        let c = |b: u8| char::from(b);
        match body {
            "F" => out.push(c(self.field)),
            "S" => out.push(c(self.component)),
            "T" => out.push(c(self.subcomponent)),
            "R" => out.push(c(self.repetition)),
            "E" => out.push(c(self.escape)),
            "P" if self.truncation.is_some() => out.push(c(self.truncation.unwrap_or(b'#'))),
            ".br" => out.push('\n'),
            _ => {
                let Some(hex) = body.strip_prefix('X') else {
                    return false;
                };
                if hex.is_empty() || hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return false;
                }
                let bytes: Vec<u8> = hex
                    .as_bytes()
                    .chunks(2)
                    .filter_map(|p| std::str::from_utf8(p).ok().and_then(|s| u8::from_str_radix(s, 16).ok()))
                    .collect();
                match std::str::from_utf8(&bytes) {
                    Ok(s) => out.push_str(s),
                    Err(_) => out.extend(bytes.iter().map(|&b| char::from(b))),
                }
            }
        }
        true
    }

    /// Encodes text for one leaf value: delimiters become escape sequences and CR/LF
    /// become `\X0D\`/`\X0A\` so they cannot end a segment. Borrows when nothing to do.
    pub fn escape<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let special = |ch: char| {
            ch == '\r'
                || ch == '\n'
                || u8::try_from(ch).is_ok_and(|b| {
                    b == self.field
                        || b == self.component
                        || b == self.repetition
                        || b == self.escape
                        || b == self.subcomponent
                        || Some(b) == self.truncation
                })
        };
        if !text.contains(special) {
            return Cow::Borrowed(text);
        }
        let esc = char::from(self.escape);
        let mut out = String::with_capacity(text.len() + 8);
        for ch in text.chars() {
            if !special(ch) {
                out.push(ch);
                continue;
            }
            let code = match ch {
                '\r' => "X0D",
                '\n' => "X0A",
                _ => match u8::try_from(ch).unwrap_or(0) {
                    b if b == self.field => "F",
                    b if b == self.component => "S",
                    b if b == self.repetition => "R",
                    b if b == self.escape => "E",
                    b if b == self.subcomponent => "T",
                    _ => "P",
                },
            };
            out.push(esc);
            out.push_str(code);
            out.push(esc);
        }
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Delimiters {
        Delimiters::default()
    }

    fn loc() -> Location {
        Location::default()
    }

    #[test]
    fn reads_standard_and_custom_delimiters() {
        assert_eq!(Delimiters::from_msh(b"MSH|^~\\&|A", &loc()).unwrap(), d());
        let custom = Delimiters::from_msh(b"MSH#$*!@#A", &loc()).unwrap();
        assert_eq!(
            (
                custom.field,
                custom.component,
                custom.repetition,
                custom.escape,
                custom.subcomponent
            ),
            (b'#', b'$', b'*', b'!', b'@')
        );
        assert_eq!(custom.truncation, None);
        let v27 = Delimiters::from_msh(b"MSH|^~\\&#|A", &loc()).unwrap();
        assert_eq!(v27.truncation, Some(b'#'));
        assert_eq!(v27.encoding_characters(), "^~\\&#");
        // MSH-2 may be the last thing on the line.
        assert!(Delimiters::from_msh(b"MSH|^~\\&", &loc()).is_ok());
    }

    #[test]
    fn rejects_bad_encoding_characters() {
        for (line, field) in [
            (&b"MSH|^~\\|A"[..], 2), // three characters
            (b"MSH|^~\\&#!|A", 2),   // six
            (b"MSH|^^\\&|A", 2),     // duplicate
            (b"MSH|^~a&|A", 2),      // a letter
            (b"MSH|^~\\&", 2),       // fine, control
            (b"MSHA^~\\&A", 1),      // letter as field separator
            (b"MSH", 1),             // nothing after MSH
        ] {
            let r = Delimiters::from_msh(line, &loc());
            if line == b"MSH|^~\\&" {
                assert!(r.is_ok());
                continue;
            }
            let e = r.unwrap_err();
            assert_eq!(e.location().field, Some(field), "{e}");
        }
        let e = Delimiters::from_msh(b"MSH|^~\\|A", &loc()).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::BadEncodingCharacters { ref found, .. } if found == "^~\\"));
        let e = Delimiters::from_msh(b"MSH", &loc()).unwrap_err();
        assert_eq!(*e.kind(), ErrorKind::ShortMsh { fields: 0 });
    }

    #[test]
    fn unescapes_delimiter_sequences() {
        let d = d();
        assert_eq!(d.unescape(r"A\F\B\S\C\T\D\R\E\E\F"), r"A|B^C&D~E\F");
        assert!(matches!(d.unescape("plain"), Cow::Borrowed("plain")));
        assert_eq!(
            d.unescape(r"NHS Provider-General (inc.A\T\E-this Hosp)"),
            "NHS Provider-General (inc.A&E-this Hosp)"
        );
    }

    #[test]
    fn unescapes_hex_and_line_breaks() {
        let d = d();
        assert_eq!(d.unescape(r"line1\.br\line2"), "line1\nline2");
        assert_eq!(d.unescape(r"\X4142\"), "AB");
        assert_eq!(d.unescape(r"caf\XC3A9\"), "café"); // UTF-8 bytes
        assert_eq!(d.unescape(r"caf\XE9\"), "café"); // not UTF-8: ISO-8859-1
        assert_eq!(d.unescape(r"\X0D0A\"), "\r\n");
    }

    #[test]
    fn leaves_unknown_and_malformed_escapes_verbatim() {
        let d = d();
        for s in [
            r"\H\bold\N\",
            r"\Cxxyy\",
            r"\X4\",
            r"\XZZ\",
            r"\Q\",
            r"unterminated\F",
            r"a\\b",
            r"\P\",
        ] {
            assert_eq!(d.unescape(s), s, "{s}");
        }
        // A known sequence right after an unknown one is still decoded.
        assert_eq!(d.unescape(r"\H\x\F\"), r"\H\x|");
        // \P\ only means something when a truncation character is declared.
        let v27 = Delimiters {
            truncation: Some(b'#'),
            ..d
        };
        assert_eq!(v27.unescape(r"a\P\b"), "a#b");
    }

    #[test]
    fn unescape_uses_declared_escape_character() {
        let custom = Delimiters { escape: b'!', ..d() };
        assert_eq!(custom.unescape("a!F!b\\F\\"), "a|b\\F\\");
    }

    #[test]
    fn escape_round_trips() {
        let d = Delimiters {
            truncation: Some(b'#'),
            ..d()
        };
        for s in ["", "plain", r"a|b^c~d\e&f#g", "two\r\nlines", "ünïcödé | ok"] {
            let e = d.escape(s);
            assert!(!e.contains(['|', '^', '~', '&', '#', '\r', '\n']), "{e}");
            assert_eq!(d.unescape(&e), s);
        }
        assert!(matches!(d.escape("plain"), Cow::Borrowed(_)));
    }
}
