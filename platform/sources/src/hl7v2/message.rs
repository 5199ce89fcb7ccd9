//! One HL7 v2 message: its text, delimiters, segment index and header facts.
//!
//! A message owns one `String` (its text as received, line endings untouched) and one
//! `Vec` of segment spans; fields are found by splitting on demand, so reading a value
//! allocates only when it holds escape sequences.

use std::borrow::Cow;
use std::ops::Range;

use time::UtcOffset;

use super::dtm::{parse_dtm, Dtm};
use super::encoding::Delimiters;
use super::error::{ErrorKind, Location, ParseError};
use super::path::Path;

/// Options for reading messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// Offset assumed for date-times sent without one (HL7 allows that; the sender's
    /// local time is then meant). UTC unless configured. A fixed offset, so a sender
    /// whose local time has daylight saving needs the right offset per season.
    pub default_offset: UtcOffset,
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self {
            default_offset: UtcOffset::UTC,
        }
    }
}

/// How the message bytes were turned into text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// The bytes were valid UTF-8 (ASCII included), used as they were.
    Utf8,
    /// The bytes were not UTF-8 and MSH-18 did not declare UTF-8, so each byte was read
    /// as ISO-8859-1 (HL7's usual 8-bit default, `8859/1`). Lossless, never fails.
    Latin1,
}

#[derive(Debug, Clone)]
struct Span {
    range: Range<usize>,
    line: usize,
}

/// A parsed HL7 v2 message.
#[derive(Debug, Clone)]
pub struct Message {
    text: String,
    delimiters: Delimiters,
    spans: Vec<Span>,
    charset: Charset,
    timestamp: Option<Dtm>,
    options: ParseOptions,
}

/// Iterates the non-empty lines of `bytes` as (1-based line number, byte range).
/// CR, LF and CRLF each end a line.
pub(crate) fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, Range<usize>)> + '_ {
    let mut pos = 0;
    let mut line = 0;
    std::iter::from_fn(move || loop {
        if pos >= bytes.len() {
            return None;
        }
        line += 1;
        let start = pos;
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .map_or(bytes.len(), |i| start + i);
        pos = match bytes.get(end) {
            Some(b'\r') if bytes.get(end + 1) == Some(&b'\n') => end + 2,
            Some(_) => end + 1,
            None => end,
        };
        if end > start {
            return Some((line, start..end));
        }
    })
}

/// Segments that frame messages and never belong inside one.
pub(crate) fn is_envelope(id: &[u8]) -> bool {
    matches!(id, b"FHS" | b"BHS" | b"BTS" | b"FTS")
}

/// Segments whose field 1 is the field separator itself.
fn is_header(id: &[u8]) -> bool {
    matches!(id, b"MSH" | b"FHS" | b"BHS")
}

fn valid_segment_id(line: &[u8], field_sep: u8) -> bool {
    line.len() >= 3
        && line[0].is_ascii_uppercase()
        && line[1..3].iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && (line.len() == 3 || line[3] == field_sep)
}

fn truncated(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(20)];
    String::from_utf8_lossy(shown).into_owned()
}

/// MSH-18 (character set) read from raw bytes, if it names UTF-8.
fn declares_utf8(msh: &[u8]) -> bool {
    let Some(&sep) = msh.get(3) else { return false };
    msh.split(|&b| b == sep)
        .nth(17)
        .map(|f| String::from_utf8_lossy(f).to_ascii_uppercase())
        .is_some_and(|f| f.contains("UTF-8") || f.contains("UTF8"))
}

fn segment_location(text: &str, span: &Span, index: usize, field: Option<usize>) -> Location {
    let seg = &text.as_bytes()[span.range.clone()];
    Location {
        message: None,
        line: Some(span.line),
        segment_index: Some(index),
        segment: Some(truncated(&seg[..seg.len().min(3)])),
        field,
    }
}

impl Message {
    /// Builds a message from the bytes of exactly one message (MSH first). `first_line`
    /// is the line number of the MSH in the enclosing input, for error locations.
    pub(crate) fn build(bytes: &[u8], first_line: usize, options: ParseOptions) -> Result<Self, ParseError> {
        let (text, charset) = match std::str::from_utf8(bytes) {
            Ok(s) => (s.to_owned(), Charset::Utf8),
            Err(e) => {
                let first = lines(bytes).next().map_or(&bytes[..0], |(_, r)| &bytes[r]);
                if first.starts_with(b"MSH") && declares_utf8(first) {
                    let offset = e.valid_up_to();
                    let line = lines(&bytes[..offset]).last().map_or(1, |(l, _)| l);
                    let location = Location {
                        line: Some(first_line + line - 1),
                        ..Location::default()
                    };
                    return Err(ParseError::new(ErrorKind::InvalidUtf8 { offset }, location));
                }
                (bytes.iter().map(|&b| char::from(b)).collect(), Charset::Latin1)
            }
        };
        let spans: Vec<Span> = lines(text.as_bytes())
            .map(|(line, range)| Span {
                range,
                line: first_line + line - 1,
            })
            .collect();
        let Some(first) = spans.first() else {
            return Err(ParseError::new(ErrorKind::Empty, Location::default()));
        };
        let msh = &text.as_bytes()[first.range.clone()];
        let location = |span: &Span, index: usize, field: Option<usize>| segment_location(&text, span, index, field);
        if !msh.starts_with(b"MSH") {
            let count = spans.len();
            return Err(ParseError::new(
                ErrorKind::NoMsh {
                    first: truncated(&msh[..3.min(msh.len())]),
                    count,
                },
                location(first, 1, None),
            ));
        }
        let delimiters = Delimiters::from_msh(msh, &location(first, 1, None))?;
        for (i, span) in spans.iter().enumerate() {
            let seg = &text.as_bytes()[span.range.clone()];
            if !valid_segment_id(seg, delimiters.field) {
                return Err(ParseError::new(
                    ErrorKind::BadSegmentId { found: truncated(seg) },
                    Location {
                        segment: None,
                        ..location(span, i + 1, None)
                    },
                ));
            }
            let id = &seg[..3];
            if i > 0 && (id == b"MSH" || is_envelope(id)) {
                return Err(ParseError::new(
                    ErrorKind::UnexpectedSegment {
                        segment: truncated(id),
                        reason: "a single message cannot contain another message or a batch/file header or trailer",
                    },
                    location(span, i + 1, None),
                ));
            }
        }
        let fields = msh.split(|&b| b == delimiters.field).count();
        if fields < 12 {
            return Err(ParseError::new(
                ErrorKind::ShortMsh { fields },
                location(first, 1, None),
            ));
        }
        let mut message = Self {
            text,
            delimiters,
            spans,
            charset,
            timestamp: None,
            options,
        };
        for (path, field, name) in [
            ("MSH-9-1", 9, "MSH-9"),
            ("MSH-10", 10, "MSH-10"),
            ("MSH-12-1", 12, "MSH-12"),
        ] {
            if message.raw(path).is_none() {
                return Err(ParseError::new(
                    ErrorKind::MissingField { field: name },
                    segment_location(&message.text, &message.spans[0], 1, Some(field)),
                ));
            }
        }
        message.timestamp = message.get_dtm("MSH-7")?;
        Ok(message)
    }

    /// The message text as received (line endings untouched).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The message re-encoded with CR after every segment, as MLLP and the standard want.
    pub fn to_hl7_string(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 1);
        for s in self.all_segments() {
            out.push_str(s.as_str());
            out.push('\r');
        }
        out
    }

    /// The delimiters this message declared.
    pub fn delimiters(&self) -> &Delimiters {
        &self.delimiters
    }

    /// How the bytes were decoded.
    pub fn charset(&self) -> Charset {
        self.charset
    }

    /// All segments in order.
    pub fn all_segments(&self) -> impl Iterator<Item = Segment<'_>> + '_ {
        self.spans.iter().enumerate().map(move |(i, span)| Segment {
            text: &self.text[span.range.clone()],
            delimiters: self.delimiters,
            line: span.line,
            index: i + 1,
        })
    }

    /// Segments with the given id (e.g. `"OBX"`), in order.
    pub fn segments(&self, id: &str) -> impl Iterator<Item = Segment<'_>> + '_ {
        let id: Option<[u8; 3]> = id.as_bytes().try_into().ok();
        self.all_segments()
            .filter(move |s| id.is_some_and(|id| s.id().as_bytes() == id))
    }

    /// The first segment with the given id.
    pub fn segment(&self, id: &str) -> Option<Segment<'_>> {
        self.segments(id).next()
    }

    /// The decoded leaf value at `path` (e.g. `"PID-5-1"`, `"PID-3(2)-1"`, `"OBX(2)-5"`).
    ///
    /// Like HAPI's Terser, a path that stops above leaf level reads the first
    /// repetition, component and subcomponent. `None` when the path is invalid, the
    /// element is absent or it is empty. HL7's explicit null `""` is returned as is.
    pub fn get(&self, path: &str) -> Option<Cow<'_, str>> {
        self.get_at(&Path::parse(path).ok()?)
    }

    /// [`Message::get`] with a pre-parsed path.
    pub fn get_at(&self, path: &Path) -> Option<Cow<'_, str>> {
        self.segment_at(path)?.get_at(path)
    }

    /// The encoded text at `path`, delimiters and escapes intact, at exactly the level
    /// addressed (`"PID-3"` is the whole field with all repetitions).
    pub fn raw(&self, path: &str) -> Option<&str> {
        self.raw_at(&Path::parse(path).ok()?)
    }

    /// [`Message::raw`] with a pre-parsed path.
    pub fn raw_at(&self, path: &Path) -> Option<&str> {
        self.segment_at(path)?.raw_at(path)
    }

    fn segment_at(&self, path: &Path) -> Option<Segment<'_>> {
        let id = path.segment?;
        self.all_segments()
            .filter(|s| s.id().as_bytes() == id)
            .nth(path.occurrence - 1)
    }

    /// The date-time at `path`, read with the configured default offset. `Ok(None)` when
    /// the element is absent or empty.
    pub fn get_dtm(&self, path: &str) -> Result<Option<Dtm>, ParseError> {
        let Ok(parsed) = Path::parse(path) else { return Ok(None) };
        let Some(seg) = self.segment_at(&parsed) else {
            return Ok(None);
        };
        self.dtm_in(&seg, &parsed)
    }

    /// [`Message::get_dtm`] in a segment already at hand, at a segment-relative path
    /// (`"7"`, `"14"`): no search for the segment, so reading every OBR's date is linear.
    pub fn segment_dtm(&self, seg: &Segment<'_>, relative: &str) -> Result<Option<Dtm>, ParseError> {
        let Ok(parsed) = Path::parse_relative(relative) else {
            return Ok(None);
        };
        self.dtm_in(seg, &parsed)
    }

    fn dtm_in(&self, seg: &Segment<'_>, parsed: &Path) -> Result<Option<Dtm>, ParseError> {
        let leaf = Path {
            component: parsed.component.or(Some(1)),
            ..parsed.clone()
        };
        match seg.get_at(&leaf) {
            None => Ok(None),
            Some(v) => parse_dtm(&v, self.options.default_offset).map(Some).map_err(|reason| {
                ParseError::new(
                    ErrorKind::BadDate {
                        value: v.into_owned(),
                        reason,
                    },
                    Location {
                        message: None,
                        line: Some(seg.line),
                        segment_index: Some(seg.index),
                        segment: Some(seg.id().to_owned()),
                        field: Some(leaf.field),
                    },
                )
            }),
        }
    }

    fn msh_raw(&self, path: &str) -> Option<&str> {
        self.raw(path)
    }

    /// MSH-9.1, e.g. `ADT` (as sent).
    pub fn message_type(&self) -> &str {
        self.msh_raw("MSH-9-1").unwrap_or_default()
    }

    /// MSH-9.2, e.g. `A01`.
    pub fn trigger_event(&self) -> Option<&str> {
        self.msh_raw("MSH-9-2")
    }

    /// MSH-9.3, e.g. `ADT_A01` (from 2.3.1).
    pub fn message_structure(&self) -> Option<&str> {
        self.msh_raw("MSH-9-3")
    }

    /// MSH-10, the control id an ACK must echo in MSA-2 (as sent).
    pub fn control_id(&self) -> &str {
        self.msh_raw("MSH-10").unwrap_or_default()
    }

    /// MSH-12.1, e.g. `2.5.1`.
    pub fn version(&self) -> &str {
        self.msh_raw("MSH-12-1").unwrap_or_default()
    }

    /// MSH-12.1 as (major, minor), e.g. `(2, 5)` for `2.5.1`.
    pub fn version_number(&self) -> Option<(u8, u8)> {
        let mut parts = self.version().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
        Some((major, minor))
    }

    /// MSH-3 whole (HD: namespace^universal id^type), as sent.
    pub fn sending_application(&self) -> Option<&str> {
        self.msh_raw("MSH-3")
    }

    /// MSH-4 whole, as sent. With [`Message::control_id`] it identifies a message for
    /// de-duplication of resends.
    pub fn sending_facility(&self) -> Option<&str> {
        self.msh_raw("MSH-4")
    }

    /// MSH-5 whole, as sent.
    pub fn receiving_application(&self) -> Option<&str> {
        self.msh_raw("MSH-5")
    }

    /// MSH-6 whole, as sent.
    pub fn receiving_facility(&self) -> Option<&str> {
        self.msh_raw("MSH-6")
    }

    /// MSH-11.1 processing id: `P` production, `T` training, `D` debugging.
    pub fn processing_id(&self) -> Option<&str> {
        self.msh_raw("MSH-11-1")
    }

    /// MSH-7, the time the sender created the message, in UTC. `None` when empty.
    pub fn timestamp(&self) -> Option<Dtm> {
        self.timestamp
    }
}

/// One segment of a message, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    text: &'a str,
    delimiters: Delimiters,
    line: usize,
    index: usize,
}

impl<'a> Segment<'a> {
    /// The segment id, e.g. `PID`.
    pub fn id(&self) -> &'a str {
        self.text.get(..3).unwrap_or(self.text)
    }

    /// The segment text without its terminator.
    pub fn as_str(&self) -> &'a str {
        self.text
    }

    /// 1-based line number in the input.
    pub fn line(&self) -> usize {
        self.line
    }

    /// 1-based position in the message (MSH is 1).
    pub fn index(&self) -> usize {
        self.index
    }

    fn is_header(&self) -> bool {
        is_header(self.id().as_bytes())
    }

    /// Number of fields, HL7-counted (MSH counts MSH-1 as a field).
    pub fn field_count(&self) -> usize {
        let parts = self.text.split(char::from(self.delimiters.field)).count();
        if self.is_header() {
            parts
        } else {
            parts - 1
        }
    }

    /// The raw field `n` (HL7-counted), all repetitions.
    pub fn field(&self, n: usize) -> Option<&'a str> {
        let sep = char::from(self.delimiters.field);
        let value = match (self.is_header(), n) {
            (_, 0) => None,
            (true, 1) => self.text.get(3..4),
            (true, n) => self.text.split(sep).nth(n - 1),
            (false, n) => self.text.split(sep).nth(n),
        }?;
        (!value.is_empty()).then_some(value)
    }

    /// The raw repetitions of field `n`.
    pub fn repetitions(&self, n: usize) -> impl Iterator<Item = &'a str> + 'a {
        // MSH-1 and MSH-2 are never split.
        let rep = (!(self.is_header() && n <= 2)).then_some(char::from(self.delimiters.repetition));
        self.field(n)
            .into_iter()
            .flat_map(move |f| f.split(move |c| Some(c) == rep))
    }

    /// The decoded leaf value at a segment-relative path such as `"3(2)-1"`.
    pub fn get(&self, path: &str) -> Option<Cow<'a, str>> {
        self.get_at(&Path::parse_relative(path).ok()?)
    }

    /// The raw value at a segment-relative path such as `"3"`.
    pub fn raw(&self, path: &str) -> Option<&'a str> {
        self.raw_at(&Path::parse_relative(path).ok()?)
    }

    /// Decoded leaf value; the segment part of `path` is ignored.
    pub fn get_at(&self, path: &Path) -> Option<Cow<'a, str>> {
        let leaf = Path {
            repetition: path.repetition.or(Some(1)),
            component: path.component.or(Some(1)),
            subcomponent: path.subcomponent.or(Some(1)),
            ..path.clone()
        };
        let raw = self.raw_at(&leaf)?;
        if self.is_header() && path.field <= 2 {
            // MSH-1 and MSH-2 are the delimiters themselves, never escaped.
            return Some(Cow::Borrowed(raw));
        }
        Some(self.delimiters.unescape(raw))
    }

    /// Raw value at the level `path` addresses; the segment part is ignored.
    pub fn raw_at(&self, path: &Path) -> Option<&'a str> {
        let d = &self.delimiters;
        let field = self.field(path.field)?;
        if self.is_header() && path.field <= 2 {
            let first = |n: Option<usize>| n.is_none_or(|n| n == 1);
            return (first(path.repetition) && first(path.component) && first(path.subcomponent)).then_some(field);
        }
        let mut value = field;
        for (n, sep) in [
            (path.repetition, d.repetition),
            (path.component, d.component),
            (path.subcomponent, d.subcomponent),
        ] {
            if let Some(n) = n {
                value = value.split(char::from(sep)).nth(n - 1)?;
            }
        }
        (!value.is_empty()).then_some(value)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const ADT: &str = "MSH|^~\\&|ADT1|GOOD HEALTH HOSPITAL|GHH LAB, INC.|GOOD HEALTH HOSPITAL|198808181126||ADT^A01^ADT_A01|MSG00001|P|2.8||\r\
        EVN|A01|200708181123||\r\
        PID|1||PATID1234^^^GOOD HEALTH HOSPITAL^MR~123456789^^^USSSA^SS||EVERYMAN&Van&Dr^ADAM^A^III||19610615|M||2106-3|2222 HOME STREET^^GREENSBORO^NC^27401-1020\r\
        NK1|1|JONES^BARBARA^K|SPO^Spouse^HL70063\r\
        OBX|1|NM|8867-4^Heart rate^LN||72|/min\r\
        OBX|2|ST|8302-2^Height^LN||A\\T\\E \\F\\ dept\\.br\\next|cm\r";

    fn parse(text: &str) -> Result<Message, ParseError> {
        Message::build(text.as_bytes(), 1, ParseOptions::default())
    }

    #[test]
    fn reads_header_facts() {
        let m = parse(ADT).unwrap();
        assert_eq!(m.message_type(), "ADT");
        assert_eq!(m.trigger_event(), Some("A01"));
        assert_eq!(m.message_structure(), Some("ADT_A01"));
        assert_eq!(m.control_id(), "MSG00001");
        assert_eq!(m.version(), "2.8");
        assert_eq!(m.version_number(), Some((2, 8)));
        assert_eq!(m.sending_application(), Some("ADT1"));
        assert_eq!(m.sending_facility(), Some("GOOD HEALTH HOSPITAL"));
        assert_eq!(m.receiving_application(), Some("GHH LAB, INC."));
        assert_eq!(m.processing_id(), Some("P"));
        assert_eq!(m.timestamp().unwrap().utc, datetime!(1988-08-18 11:26 UTC));
        assert_eq!(m.charset(), Charset::Utf8);
    }

    #[test]
    fn msh_fields_count_the_separator_as_field_one() {
        let m = parse(ADT).unwrap();
        assert_eq!(m.get("MSH-1").as_deref(), Some("|"));
        assert_eq!(m.get("MSH-2").as_deref(), Some("^~\\&"));
        assert_eq!(m.get("MSH-3").as_deref(), Some("ADT1"));
        assert_eq!(m.get("MSH-9-2").as_deref(), Some("A01"));
        assert_eq!(m.get("MSH-2-2"), None);
        assert_eq!(m.segment("MSH").unwrap().field_count(), 14);
        // Other segments count from the first field after the id.
        assert_eq!(m.get("EVN-1").as_deref(), Some("A01"));
        assert_eq!(m.segment("EVN").unwrap().field_count(), 4);
    }

    #[test]
    fn reads_repetitions_components_subcomponents() {
        let m = parse(ADT).unwrap();
        assert_eq!(m.get("PID-3").as_deref(), Some("PATID1234"));
        assert_eq!(m.get("PID-3-1").as_deref(), Some("PATID1234"));
        assert_eq!(m.get("PID-3(2)-1").as_deref(), Some("123456789"));
        assert_eq!(m.get("PID-3(2)-4").as_deref(), Some("USSSA"));
        assert_eq!(m.get("PID-3(3)-1"), None);
        assert_eq!(m.get("PID-5-1-2").as_deref(), Some("Van"));
        assert_eq!(m.get("PID-5-1").as_deref(), Some("EVERYMAN"));
        assert_eq!(m.get("PID-5-2").as_deref(), Some("ADAM"));
        assert_eq!(
            m.raw("PID-3"),
            Some("PATID1234^^^GOOD HEALTH HOSPITAL^MR~123456789^^^USSSA^SS")
        );
        assert_eq!(m.raw("PID-5-1"), Some("EVERYMAN&Van&Dr"));
        assert_eq!(m.get("PID-2"), None); // empty
        assert_eq!(m.get("PID-99"), None); // absent
        assert_eq!(m.get("ZZZ-1"), None);
        assert_eq!(m.get("not a path"), None);
        let pid = m.segment("PID").unwrap();
        assert_eq!(pid.repetitions(3).count(), 2);
        assert_eq!(pid.get("11-3").as_deref(), Some("GREENSBORO"));
        assert_eq!((pid.line(), pid.index()), (3, 3));
    }

    #[test]
    fn iterates_repeated_segments() {
        let m = parse(ADT).unwrap();
        let obx: Vec<_> = m.segments("OBX").collect();
        assert_eq!(obx.len(), 2);
        assert_eq!(obx[0].get("5").as_deref(), Some("72"));
        assert_eq!(m.get("OBX(2)-3-2").as_deref(), Some("Height"));
        assert_eq!(m.all_segments().count(), 6);
    }

    #[test]
    fn unescapes_values_but_not_raw() {
        let m = parse(ADT).unwrap();
        assert_eq!(m.get("OBX(2)-5").as_deref(), Some("A&E | dept\nnext"));
        assert_eq!(m.raw("OBX(2)-5"), Some("A\\T\\E \\F\\ dept\\.br\\next"));
        assert!(matches!(m.get("PID-5-2"), Some(Cow::Borrowed(_))));
    }

    #[test]
    fn accepts_lf_and_crlf() {
        for sep in ["\n", "\r\n", "\r\r", "\n\n"] {
            let text = ADT.replace('\r', sep);
            let m = parse(&text).unwrap();
            assert_eq!(m.segments("OBX").count(), 2, "{sep:?}");
            assert_eq!(m.get("OBX(2)-5-1").as_deref(), Some("A&E | dept\nnext"));
            assert!(m.to_hl7_string().ends_with("|cm\r"));
            assert!(!m.to_hl7_string().contains('\n'));
        }
        let text = ADT.replace('\r', "\r\n");
        let m = parse(&text).unwrap();
        assert_eq!(m.segment("NK1").unwrap().line(), 4);
    }

    #[test]
    fn reads_declared_delimiters() {
        let text = ADT.replace('|', "!").replace('^', "$");
        let m = parse(&text).unwrap();
        assert_eq!(m.get("MSH-1").as_deref(), Some("!"));
        assert_eq!(m.get("MSH-2").as_deref(), Some("$~\\&"));
        assert_eq!(m.get("PID-3(2)-4").as_deref(), Some("USSSA"));
        assert_eq!(m.trigger_event(), Some("A01"));
        // \F\ now means the declared field separator.
        assert_eq!(m.get("OBX(2)-5").as_deref(), Some("A&E ! dept\nnext"));
    }

    #[test]
    fn v27_truncation_character() {
        let text = "MSH|^~\\&#|A|B|C|D|20240101||ADT^A01|X1|P|2.7\rPID|1||1||DOE\\P\\^J\r";
        let m = parse(text).unwrap();
        assert_eq!(m.delimiters().truncation, Some(b'#'));
        assert_eq!(m.get("MSH-2").as_deref(), Some("^~\\&#"));
        assert_eq!(m.get("PID-5").as_deref(), Some("DOE#"));
    }

    fn kind(text: &str) -> ErrorKind {
        parse(text).unwrap_err().kind().clone()
    }

    #[test]
    fn rejects_missing_or_short_msh() {
        assert!(matches!(kind("PID|1||X\r"), ErrorKind::NoMsh { ref first, count: 1 } if first == "PID"));
        assert_eq!(
            kind("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P\r"),
            ErrorKind::ShortMsh { fields: 11 }
        );
        assert_eq!(kind("MSH"), ErrorKind::ShortMsh { fields: 0 });
        assert!(matches!(kind("MSH|^~|A"), ErrorKind::BadEncodingCharacters { .. }));
        let e = parse("MSH|^~\\&|A|B|C|D|20240101||^A01|X1|P|2.5\r").unwrap_err();
        assert_eq!(*e.kind(), ErrorKind::MissingField { field: "MSH-9" });
        assert_eq!(e.location().field, Some(9));
        assert_eq!(
            kind("MSH|^~\\&|A|B|C|D|20240101||ADT^A01||P|2.5\r"),
            ErrorKind::MissingField { field: "MSH-10" }
        );
        assert_eq!(
            kind("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X|P|\r"),
            ErrorKind::MissingField { field: "MSH-12" }
        );
    }

    #[test]
    fn bad_date_names_the_field() {
        let e = parse("MSH|^~\\&|A|B|C|D|20241301||ADT^A01|X1|P|2.5\r").unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::BadDate { ref value, .. } if value == "20241301"));
        assert_eq!(
            (e.location().segment.as_deref(), e.location().field, e.location().line),
            (Some("MSH"), Some(7), Some(1))
        );
        // An empty MSH-7 is allowed; the timestamp is then unknown.
        let m = parse("MSH|^~\\&|A|B|C|D|||ADT^A01|X1|P|2.5\r").unwrap();
        assert_eq!(m.timestamp(), None);
        // Other fields are checked when read.
        let m = parse(ADT).unwrap();
        assert_eq!(m.get_dtm("PID-7").unwrap().unwrap().utc, datetime!(1961-06-15 0:00 UTC));
        let e = m.get_dtm("PID-8").unwrap_err();
        assert_eq!(
            (e.location().line, e.location().segment_index, e.location().field),
            (Some(3), Some(3), Some(8))
        );
        assert_eq!(m.get_dtm("PID-99").unwrap(), None);
    }

    #[test]
    fn default_offset_applies_to_header_time() {
        let opts = ParseOptions {
            default_offset: time::macros::offset!(-5),
        };
        let m = Message::build(ADT.as_bytes(), 1, opts).unwrap();
        assert_eq!(m.timestamp().unwrap().utc, datetime!(1988-08-18 16:26 UTC));
    }

    #[test]
    fn rejects_lines_that_are_not_segments() {
        let e = parse("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5\rPID|1\rcontinued text\r").unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::BadSegmentId { ref found } if found == "continued text"));
        assert_eq!((e.location().line, e.location().segment_index), (Some(3), Some(3)));
        for bad in ["pid|1", "P|1", "PIDX|1", "1ID|1"] {
            let text = format!("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5\r{bad}\r");
            assert!(matches!(kind(&text), ErrorKind::BadSegmentId { .. }), "{bad}");
        }
        // A bare segment id with no fields is a segment.
        assert!(parse("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5\rZZ1\r").is_ok());
    }

    #[test]
    fn latin1_is_transcoded_unless_utf8_declared() {
        let mut bytes = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5\rPID|1||1||M".to_vec();
        bytes.push(0xDC); // Ü in ISO-8859-1
        bytes.extend_from_slice(b"LLER^J\r");
        let m = Message::build(&bytes, 1, ParseOptions::default()).unwrap();
        assert_eq!(m.charset(), Charset::Latin1);
        assert_eq!(m.get("PID-5").as_deref(), Some("MÜLLER"));

        let mut bytes = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5||||||UNICODE UTF-8\rPID|1||1||M".to_vec();
        bytes.push(0xDC);
        let e = Message::build(&bytes, 1, ParseOptions::default()).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::InvalidUtf8 { offset } if *offset == bytes.len() - 1));
        assert_eq!(e.location().line, Some(2));

        let m = parse("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5\rPID|1||1||MÜLLER\r").unwrap();
        assert_eq!(
            (m.charset(), m.get("PID-5").as_deref()),
            (Charset::Utf8, Some("MÜLLER"))
        );
    }

    #[test]
    fn lines_handles_every_terminator() {
        let got: Vec<_> = lines(b"A\rB\nC\r\nD\n\rE\r\r\nF").collect();
        let want = vec![(1, 0..1), (2, 2..3), (3, 4..5), (4, 7..8), (6, 10..11), (8, 14..15)];
        assert_eq!(got, want);
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"\r\n\r\n").count(), 0);
    }
}
