//! Codes of diagnoses and procedures at the door: which code systems each payload
//! takes, the shape of a code in each system, and its one canonical spelling (upper
//! case; ICD codes with their dot, so "J189" and "J18.9" are one code in the
//! warehouse, and MIMIC's undotted ICD-9-CM "4280" is "428.0").
//!
//! A format check, not a terminology lookup: a well-formed code that does not exist in
//! the release passes (the platform ships no code tables). Local codes are not checked.

use hospital_proto::events::CodeSystem;

/// What a code names: a diagnosis or a procedure. ICD-9-CM serves both, with different
/// shapes (volumes 1-2 vs volume 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeUse {
    Diagnosis,
    Procedure,
}

impl CodeUse {
    /// The code systems this use takes, for messages.
    pub fn systems(self) -> &'static [CodeSystem] {
        use CodeSystem::*;
        match self {
            CodeUse::Diagnosis => &[Icd10Cm, Icd10, Icd9Cm, SnomedCt, Local],
            CodeUse::Procedure => &[SnomedCt, Icd10Pcs, Icd9Cm, Cpt, Hcpcs, Opcs4, Local],
        }
    }

    fn name(self) -> &'static str {
        match self {
            CodeUse::Diagnosis => "diagnosis",
            CodeUse::Procedure => "procedure",
        }
    }
}

/// Why a code system or code is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeError {
    /// The system is known but does not code this use (CPT for a diagnosis).
    System(String),
    /// The code does not have the shape of a code of the system.
    Code(String),
}

/// The canonical spelling of `code` (trimmed, non-empty) in `system` for `code_use`.
pub fn normalise(system: CodeSystem, code_use: CodeUse, code: &str) -> Result<String, CodeError> {
    if !code_use.systems().contains(&system) {
        let names: Vec<&str> = code_use.systems().iter().map(|s| s.as_str_name()).collect();
        return Err(CodeError::System(format!(
            "{} does not code a {}; use one of {}",
            system.as_str_name(),
            code_use.name(),
            names.join(", ")
        )));
    }
    if system == CodeSystem::Local {
        return Ok(code.to_owned());
    }
    let upper = code.to_ascii_uppercase();
    let shaped = match system {
        CodeSystem::Icd10Cm | CodeSystem::Icd10 => dotted(&upper, 3, icd10_body),
        CodeSystem::Icd9Cm if code_use == CodeUse::Procedure => dotted(&upper, 2, icd9_procedure_body),
        CodeSystem::Icd9Cm if upper.starts_with('E') => dotted(&upper, 4, icd9_diagnosis_body),
        CodeSystem::Icd9Cm => dotted(&upper, 3, icd9_diagnosis_body),
        CodeSystem::SnomedCt => {
            let ok =
                (6..=18).contains(&upper.len()) && upper.bytes().all(|b| b.is_ascii_digit()) && !upper.starts_with('0');
            ok.then_some(upper)
        }
        CodeSystem::Icd10Pcs => {
            let ok = upper.len() == 7
                && upper
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b.is_ascii_uppercase() && b != b'I' && b != b'O'));
            ok.then_some(upper)
        }
        CodeSystem::Cpt => {
            let b = upper.as_bytes();
            let ok = b.len() == 5
                && b[..4].iter().all(u8::is_ascii_digit)
                && matches!(b[4], b'0'..=b'9' | b'F' | b'T' | b'U');
            ok.then_some(upper)
        }
        CodeSystem::Hcpcs => {
            let b = upper.as_bytes();
            let ok = b.len() == 5 && b[0].is_ascii_uppercase() && b[1..].iter().all(u8::is_ascii_digit);
            ok.then_some(upper)
        }
        CodeSystem::Opcs4 => dotted(&upper, 3, |body| {
            let b = body.as_bytes();
            (3..=4).contains(&b.len()) && b[0].is_ascii_uppercase() && b[1..].iter().all(u8::is_ascii_digit)
        }),
        CodeSystem::Unspecified | CodeSystem::Local => unreachable!("handled above"),
    };
    shaped.ok_or_else(|| {
        CodeError::Code(format!(
            "\"{code}\" is not a {} code ({})",
            label(system),
            example(system, code_use)
        ))
    })
}

/// `body` with a dot after `at` characters when it has more; a dot the sender wrote
/// must be there already. None when the undotted code fails `valid`.
fn dotted(code: &str, at: usize, valid: impl Fn(&str) -> bool) -> Option<String> {
    if let Some(i) = code.find('.') {
        if i != at || code[i + 1..].contains('.') || i + 1 == code.len() {
            return None;
        }
    }
    let body: String = code.chars().filter(|&c| c != '.').collect();
    if !valid(&body) {
        return None;
    }
    Some(if body.len() > at {
        format!("{}.{}", &body[..at], &body[at..])
    } else {
        body
    })
}

/// ICD-10 (and -CM): a letter, a digit, a letter or digit, then up to four letters or
/// digits (ICD-10-CM's seventh character and X placeholders).
fn icd10_body(b: &str) -> bool {
    let b = b.as_bytes();
    (3..=7).contains(&b.len())
        && b[0].is_ascii_uppercase()
        && b[1].is_ascii_digit()
        && b.iter().all(u8::is_ascii_alphanumeric)
}

/// ICD-9-CM diagnoses: 001-999, V01-V91 or E000-E999, each with up to two (E: one)
/// more digits.
fn icd9_diagnosis_body(b: &str) -> bool {
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let b = b.as_bytes();
    match b.first() {
        Some(b'E') => (4..=5).contains(&b.len()) && digits(&b[1..]),
        Some(b'V') => (3..=5).contains(&b.len()) && digits(&b[1..]),
        Some(_) => (3..=5).contains(&b.len()) && digits(b),
        None => false,
    }
}

/// ICD-9-CM procedures (volume 3): two digits and up to two more.
fn icd9_procedure_body(b: &str) -> bool {
    (2..=4).contains(&b.len()) && b.bytes().all(|c| c.is_ascii_digit())
}

fn label(system: CodeSystem) -> &'static str {
    match system {
        CodeSystem::Icd10Cm => "ICD-10-CM",
        CodeSystem::Icd10 => "ICD-10",
        CodeSystem::Icd9Cm => "ICD-9-CM",
        CodeSystem::SnomedCt => "SNOMED CT",
        CodeSystem::Icd10Pcs => "ICD-10-PCS",
        CodeSystem::Cpt => "CPT",
        CodeSystem::Hcpcs => "HCPCS",
        CodeSystem::Opcs4 => "OPCS-4",
        CodeSystem::Local => "local",
        CodeSystem::Unspecified => "unspecified",
    }
}

fn example(system: CodeSystem, code_use: CodeUse) -> &'static str {
    match system {
        CodeSystem::Icd10Cm | CodeSystem::Icd10 => {
            "a letter, two characters, an optional dot and up to four more, e.g. J18.9"
        }
        CodeSystem::Icd9Cm if code_use == CodeUse::Procedure => "two digits, a dot and up to two more, e.g. 96.71",
        CodeSystem::Icd9Cm => "three digits (V and two digits, E and three) and up to two more, e.g. 428.0",
        CodeSystem::SnomedCt => "a concept id of 6 to 18 digits, e.g. 233604007",
        CodeSystem::Icd10Pcs => "seven letters or digits, no I or O, e.g. 0DTJ4ZZ",
        CodeSystem::Cpt => "four digits and a digit, F, T or U, e.g. 99213",
        CodeSystem::Hcpcs => "a letter and four digits, e.g. G0008",
        CodeSystem::Opcs4 => "a letter, two digits and an optional dot and digit, e.g. W37.1",
        CodeSystem::Local | CodeSystem::Unspecified => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CodeUse::{Diagnosis as Dx, Procedure as Px};

    fn ok(system: CodeSystem, code_use: CodeUse, code: &str) -> String {
        normalise(system, code_use, code).unwrap_or_else(|e| panic!("{code}: {e:?}"))
    }

    fn bad(system: CodeSystem, code_use: CodeUse, code: &str) -> bool {
        matches!(normalise(system, code_use, code), Err(CodeError::Code(_)))
    }

    #[test]
    fn icd10_codes_get_their_dot_and_upper_case() {
        assert_eq!(ok(CodeSystem::Icd10Cm, Dx, "j189"), "J18.9");
        assert_eq!(ok(CodeSystem::Icd10Cm, Dx, "J18.9"), "J18.9");
        assert_eq!(ok(CodeSystem::Icd10Cm, Dx, "I10"), "I10");
        assert_eq!(ok(CodeSystem::Icd10Cm, Dx, "S72001A"), "S72.001A");
        assert_eq!(ok(CodeSystem::Icd10Cm, Dx, "C7A.010"), "C7A.010");
        assert_eq!(ok(CodeSystem::Icd10, Dx, "E11.9"), "E11.9");
        for code in ["J1.89", "18.9", "J", "J18.", "J18..9", "J18.9-", "JJ8.9", "J18.12345"] {
            assert!(bad(CodeSystem::Icd10Cm, Dx, code), "{code}");
        }
    }

    #[test]
    fn icd9_dots_depend_on_the_volume() {
        assert_eq!(ok(CodeSystem::Icd9Cm, Dx, "4280"), "428.0");
        assert_eq!(ok(CodeSystem::Icd9Cm, Dx, "V1582"), "V15.82");
        assert_eq!(ok(CodeSystem::Icd9Cm, Dx, "E8790"), "E879.0");
        assert_eq!(ok(CodeSystem::Icd9Cm, Dx, "401"), "401");
        assert_eq!(ok(CodeSystem::Icd9Cm, Px, "9671"), "96.71");
        assert_eq!(ok(CodeSystem::Icd9Cm, Px, "966"), "96.6");
        assert!(bad(CodeSystem::Icd9Cm, Dx, "42"));
        assert!(bad(CodeSystem::Icd9Cm, Dx, "J18.9"));
        assert!(bad(CodeSystem::Icd9Cm, Px, "967.1"));
    }

    #[test]
    fn other_systems_are_shape_checked() {
        assert_eq!(ok(CodeSystem::SnomedCt, Dx, "233604007"), "233604007");
        assert!(bad(CodeSystem::SnomedCt, Px, "12345"));
        assert!(bad(CodeSystem::SnomedCt, Px, "0233604007"));
        assert_eq!(ok(CodeSystem::Icd10Pcs, Px, "0dtj4zz"), "0DTJ4ZZ");
        assert!(bad(CodeSystem::Icd10Pcs, Px, "0DTJ4ZO"));
        assert_eq!(ok(CodeSystem::Cpt, Px, "0001f"), "0001F");
        assert!(bad(CodeSystem::Cpt, Px, "99213-25"));
        assert_eq!(ok(CodeSystem::Hcpcs, Px, "g0008"), "G0008");
        assert_eq!(ok(CodeSystem::Opcs4, Px, "W371"), "W37.1");
        assert_eq!(ok(CodeSystem::Local, Dx, "chest pain?"), "chest pain?");
    }

    #[test]
    fn systems_are_checked_against_the_use() {
        assert!(matches!(
            normalise(CodeSystem::Cpt, Dx, "99213"),
            Err(CodeError::System(m)) if m.contains("CODE_SYSTEM_ICD10_CM")
        ));
        assert!(matches!(
            normalise(CodeSystem::Icd10Cm, Px, "J18.9"),
            Err(CodeError::System(_))
        ));
        assert!(matches!(
            normalise(CodeSystem::Unspecified, Px, "1"),
            Err(CodeError::System(_))
        ));
    }
}
