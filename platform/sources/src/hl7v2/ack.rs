//! Acknowledgements (original mode): MSH + MSA (+ ERR), answering the message they name.
//!
//! The ACK reuses the original's delimiters so fields copied from it (MSH-3..6, MSH-10)
//! stay correctly encoded byte for byte; text the caller supplies is escaped.

use time::OffsetDateTime;

use super::message::Message;

/// MSA-1 acknowledgment code (original mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// Application accept: for us, the message is durably staged.
    AA,
    /// Application error: the message was understood but could not be processed.
    AE,
    /// Application reject: the message is unacceptable (bad structure, unsupported).
    AR,
}

impl AckCode {
    /// The code as written in MSA-1.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::AA => "AA",
            Self::AE => "AE",
            Self::AR => "AR",
        }
    }
}

/// HL7 table 0357 (message error condition codes) as the platform uses them in ERR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 100: segments out of order, or a required segment missing.
    SegmentSequence,
    /// 101: a required field is missing.
    RequiredFieldMissing,
    /// 102: a value does not match its data type (a date/time, a number).
    DataType,
    /// 103: a value is not in the table its field draws from.
    TableValueNotFound,
    /// 200: the message type is not supported.
    UnsupportedMessageType,
    /// 201: the trigger event is not supported.
    UnsupportedEventCode,
    /// 207: the application failed (storage unavailable): nothing is wrong with the
    /// message, a resend may succeed.
    InternalError,
}

impl ErrorCode {
    /// The code (`"101"`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::SegmentSequence => "100",
            Self::RequiredFieldMissing => "101",
            Self::DataType => "102",
            Self::TableValueNotFound => "103",
            Self::UnsupportedMessageType => "200",
            Self::UnsupportedEventCode => "201",
            Self::InternalError => "207",
        }
    }

    /// The table's text for the code.
    pub fn text(&self) -> &'static str {
        match self {
            Self::SegmentSequence => "Segment sequence error",
            Self::RequiredFieldMissing => "Required field missing",
            Self::DataType => "Data type error",
            Self::TableValueNotFound => "Table value not found",
            Self::UnsupportedMessageType => "Unsupported message type",
            Self::UnsupportedEventCode => "Unsupported event code",
            Self::InternalError => "Application internal error",
        }
    }
}

/// Builds an ACK for `original`, timestamped now (UTC). See [`ack_at`].
pub fn ack(original: &Message, code: AckCode, control_id: &str, error_text: Option<&str>) -> String {
    ack_at(original, code, control_id, error_text, OffsetDateTime::now_utc())
}

/// Builds an ACK for `original`, timestamped now (UTC), whose ERR carries `error`'s
/// table 0357 code and text. See [`ack_with_at`].
pub fn ack_with(original: &Message, code: AckCode, control_id: &str, error: Option<(ErrorCode, &str)>) -> String {
    ack_with_at(original, code, control_id, error, OffsetDateTime::now_utc())
}

/// Builds an ACK for `original`: MSH with sender and receiver swapped, the caller's new
/// `control_id`, the original's processing id and version; MSA with `code` and MSA-2 =
/// the original MSH-10; and, when `error_text` is given, an ERR. Segments end with CR.
///
/// The ERR's code is 207 (application internal error); [`ack_with_at`] names another.
pub fn ack_at(
    original: &Message,
    code: AckCode,
    control_id: &str,
    error_text: Option<&str>,
    at: OffsetDateTime,
) -> String {
    ack_with_at(
        original,
        code,
        control_id,
        error_text.map(|t| (ErrorCode::InternalError, t)),
        at,
    )
}

/// [`ack_at`] with the ERR's HL7 table 0357 code given with its text.
///
/// ERR follows the original's version: 2.5+ writes ERR-3 (the table 0357 code and its
/// text), ERR-4 severity (`E`, or `W` with AA) and ERR-8 the text; earlier versions
/// write ERR-1 (ELD) with the code and text, and MSA-3 the text.
pub fn ack_with_at(
    original: &Message,
    code: AckCode,
    control_id: &str,
    error: Option<(ErrorCode, &str)>,
    at: OffsetDateTime,
) -> String {
    let error_code = error.map(|(c, _)| c);
    let error_text = error.map(|(_, t)| t);
    let d = original.delimiters();
    let f = char::from(d.field);
    let c = char::from(d.component);
    let s = char::from(d.subcomponent);
    let raw = |path: &str| original.raw(path).unwrap_or_default();
    let version = original.version_number();
    let modern = version.is_none_or(|v| v >= (2, 5));
    let mut out = String::with_capacity(256);

    let at = at.to_offset(time::UtcOffset::UTC);
    let timestamp = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}+0000",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    let message_type = match (original.trigger_event(), version) {
        (None, _) => "ACK".to_owned(),
        // MSH-9.3 (message structure) exists from 2.3.1.
        (Some(t), Some(v)) if v < (2, 3) || original.version() == "2.3" => format!("ACK{c}{t}"),
        (Some(t), _) => format!("ACK{c}{t}{c}ACK"),
    };
    let msh = [
        "MSH",
        &d.encoding_characters(),
        raw("MSH-5"),
        raw("MSH-6"),
        raw("MSH-3"),
        raw("MSH-4"),
        &timestamp,
        "",
        &message_type,
        &d.escape(control_id),
        raw("MSH-11"),
        raw("MSH-12"),
    ];
    out.push_str(&msh.join(&f.to_string()));
    out.push('\r');

    let text = error_text.map(|t| d.escape(t));
    out.push_str(&format!("MSA{f}{}{f}{}", code.as_str(), original.control_id()));
    if let (Some(t), false) = (&text, modern) {
        out.push_str(&format!("{f}{t}"));
    }
    out.push('\r');

    if let (Some(t), Some(e)) = (text, error_code) {
        let severity = if code == AckCode::AA { "W" } else { "E" };
        let (n, name) = (e.code(), e.text());
        if modern {
            out.push_str(&format!(
                "ERR{f}{f}{f}{n}{c}{name}{c}HL70357{f}{severity}{f}{f}{f}{f}{t}\r"
            ));
        } else {
            // ELD: segment^sequence^field^code (CE, so its parts are subcomponents).
            let t = t.replace(c, "");
            out.push_str(&format!("ERR{f}{c}{c}{c}{n}{s}{t}{s}HL70357\r"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::hl7v2::parse_message;

    const AT: OffsetDateTime = datetime!(2024-03-01 12:34:56 UTC);

    fn msg(version: &str) -> Message {
        let text = format!(
            "MSH|^~\\&|LAB^1.2.3^ISO|NORTH|HIS|SOUTH|20240301123000||ORU^R01^ORU_R01|CTRL-42|P|{version}\rPID|1||123\r"
        );
        parse_message(text.as_bytes()).unwrap()
    }

    #[test]
    fn accept_swaps_endpoints_and_echoes_control_id() {
        let original = msg("2.5.1");
        let ack = ack_at(&original, AckCode::AA, "ACK-1", None, AT);
        assert_eq!(
            ack,
            "MSH|^~\\&|HIS|SOUTH|LAB^1.2.3^ISO|NORTH|20240301123456+0000||ACK^R01^ACK|ACK-1|P|2.5.1\rMSA|AA|CTRL-42\r"
        );
        // The ACK is itself a valid message that answers the original.
        let parsed = parse_message(ack.as_bytes()).unwrap();
        assert_eq!(parsed.get("MSA-2").as_deref(), Some(original.control_id()));
        assert_eq!(parsed.sending_application(), original.receiving_application());
        assert_eq!(parsed.receiving_facility(), original.sending_facility());
        assert_eq!(parsed.version(), "2.5.1");
        assert_eq!(parsed.control_id(), "ACK-1");
    }

    #[test]
    fn error_adds_err_segment_with_escaped_text() {
        let original = msg("2.5");
        let ack = ack_at(&original, AckCode::AE, "A|2", Some("PID-3 missing | retry\nlater"), AT);
        let parsed = parse_message(ack.as_bytes()).unwrap();
        assert_eq!(parsed.get("MSA-1").as_deref(), Some("AE"));
        assert_eq!(parsed.get("MSA-2").as_deref(), Some("CTRL-42"));
        assert_eq!(parsed.control_id(), "A\\F\\2");
        assert_eq!(parsed.get("MSH-10").as_deref(), Some("A|2"));
        assert_eq!(parsed.get("ERR-3-1").as_deref(), Some("207"));
        assert_eq!(parsed.get("ERR-4").as_deref(), Some("E"));
        assert_eq!(parsed.get("ERR-8").as_deref(), Some("PID-3 missing | retry\nlater"));
        assert_eq!(parsed.all_segments().count(), 3);
    }

    #[test]
    fn older_versions_use_msa3_and_err1() {
        let original = msg("2.3");
        let ack = ack_at(&original, AckCode::AR, "N1", Some("unsupported event"), AT);
        let parsed = parse_message(ack.as_bytes()).unwrap();
        assert_eq!(parsed.raw("MSH-9"), Some("ACK^R01"));
        assert_eq!(parsed.get("MSA-1").as_deref(), Some("AR"));
        assert_eq!(parsed.get("MSA-3").as_deref(), Some("unsupported event"));
        assert_eq!(parsed.get("ERR-1-4-1").as_deref(), Some("207"));
        assert_eq!(parsed.get("ERR-1-4-2").as_deref(), Some("unsupported event"));
        let v24 = ack_at(&msg("2.4"), AckCode::AA, "N2", None, AT);
        assert!(v24.contains("|ACK^R01^ACK|"));
    }

    #[test]
    fn err_carries_the_given_table_0357_code() {
        let ack = ack_with_at(
            &msg("2.5.1"),
            AckCode::AE,
            "E1",
            Some((ErrorCode::RequiredFieldMissing, "PV1-19 (visit number) is empty")),
            AT,
        );
        let parsed = parse_message(ack.as_bytes()).unwrap();
        assert_eq!(parsed.get("ERR-3-1").as_deref(), Some("101"));
        assert_eq!(parsed.get("ERR-3-2").as_deref(), Some("Required field missing"));
        assert_eq!(parsed.get("ERR-3-3").as_deref(), Some("HL70357"));
        let old = ack_with_at(
            &msg("2.4"),
            AckCode::AR,
            "E2",
            Some((ErrorCode::UnsupportedMessageType, "SIU")),
            AT,
        );
        let parsed = parse_message(old.as_bytes()).unwrap();
        assert_eq!(parsed.get("ERR-1-4-1").as_deref(), Some("200"));
        // Without a code the ERR says 207, as before.
        let plain = ack_at(&msg("2.5"), AckCode::AE, "E3", Some("staging unavailable"), AT);
        assert_eq!(
            parse_message(plain.as_bytes()).unwrap().get("ERR-3-1").as_deref(),
            Some("207")
        );
    }

    #[test]
    fn uses_the_original_delimiters() {
        let original = parse_message(b"MSH#$*!@#A#B#C#D#20240301##ADT$A01#X9#T#2.6\rPID#1\r").unwrap();
        let ack = ack_at(&original, AckCode::AE, "Z1", Some("a#b"), AT);
        assert!(
            ack.starts_with("MSH#$*!@#C#D#A#B#20240301123456+0000##ACK$A01$ACK#Z1#T#2.6\r"),
            "{ack}"
        );
        let parsed = parse_message(ack.as_bytes()).unwrap();
        assert_eq!(parsed.get("MSA-2").as_deref(), Some("X9"));
        assert_eq!(parsed.get("ERR-8").as_deref(), Some("a#b"));
    }
}
