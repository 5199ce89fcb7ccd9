//! Which location codes name an intensive care unit. The reference data has no ward
//! type, so it is a rule on codes, shared by the warehouse's ICU stays and the sidecar's
//! features and labels.

/// Whether a department or ward code names an ICU: (upper case) it is `ICU` or ends in
/// `ICU` (MIMIC's MICU, SICU, TSICU, NICU; PICU, CVICU), or is `CCU` (coronary care) or
/// `CSRU` (cardiac surgery recovery), the MIMIC-III care units that ICUSTAYS counts as
/// ICUs. MIMIC's `NWARD` (neonatal ward) is not one. The simulator's ward `ICU`
/// (department `CC`) is one.
pub fn is_icu_code(code: &str) -> bool {
    let c = code.trim().to_ascii_uppercase();
    c.ends_with("ICU") || c == "CCU" || c == "CSRU"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn care_unit_codes() {
        for icu in ["ICU", "micu", "SICU", "TSICU", "CCU", "CSRU", " cvicu "] {
            assert!(is_icu_code(icu), "{icu}");
        }
        for not in ["NWARD", "W1", "MED", "", "ICU-STEPDOWN"] {
            assert!(!is_icu_code(not), "{not}");
        }
    }
}
