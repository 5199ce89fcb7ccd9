//! Deterministic surrogate keys: the same natural key gives the same surrogate in every
//! run, on every node, so reloads and redone chunks write the same rows.
//!
//! Owns: how `patient_key` and `location_key` are derived. Must not: look anything up.

use uuid::Uuid;

/// Namespace of patient keys (UUID v5).
const PATIENT_NAMESPACE: Uuid = Uuid::from_u128(0x5c1e_3d7a_9b4f_4f0e_8a61_2b7d_c0e4_91a3);
/// Namespace of location keys (UUID v5, first 64 bits).
const LOCATION_NAMESPACE: Uuid = Uuid::from_u128(0x0f6d_2a94_71c3_4e8b_b5d2_6e19_8a3f_c47d);
/// Separates the parts of a natural key; cannot occur in validated codes.
const SEP: char = '\u{1f}';

/// The pseudonymous key of a patient: UUID v5 of (assigning authority, MRN). Marts and
/// training sets carry only this key; `warehouse.patient_identity` maps it back.
pub fn patient_key(assigning_authority: &str, mrn: &str) -> Uuid {
    Uuid::new_v5(
        &PATIENT_NAMESPACE,
        format!("{assigning_authority}{SEP}{mrn}").as_bytes(),
    )
}

/// The key of a department / ward / bed (empty codes for the levels above a bed).
/// 0 is never produced: it means "no location".
pub fn location_key(department_code: &str, ward_code: &str, bed_code: &str) -> u64 {
    let name = format!("{department_code}{SEP}{ward_code}{SEP}{bed_code}");
    Uuid::new_v5(&LOCATION_NAMESPACE, name.as_bytes())
        .as_u64_pair()
        .0
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_deterministic_and_distinguish_their_parts() {
        assert_eq!(patient_key("hosp", "123"), patient_key("hosp", "123"));
        assert_ne!(patient_key("hosp", "123"), patient_key("hosp1", "23"));
        assert_ne!(patient_key("a", "123"), patient_key("b", "123"));
        assert_eq!(location_key("MED", "W1", "B1"), location_key("MED", "W1", "B1"));
        assert_ne!(location_key("MED", "W1", ""), location_key("MED", "", "W1"));
    }
}
