//! Units at the door: every LOINC code the platform knows has one canonical UCUM unit,
//! and values sent in another unit of the same dimension are converted to it (degrees
//! Fahrenheit to Celsius, pounds to kilograms, inches to centimetres, ...). Each code
//! also has a plausible range, checked after conversion: a value outside it is a typo
//! or a wrong unit, not a patient.

/// What the platform knows about one LOINC code.
pub struct CodeSpec {
    pub loinc: &'static str,
    pub name: &'static str,
    /// Canonical UCUM unit.
    pub unit: &'static str,
    /// Plausible range in the canonical unit, inclusive.
    pub min: f64,
    pub max: f64,
    /// Accepted unit spellings and how to convert each to the canonical unit.
    pub conversions: &'static [(&'static str, Conversion)],
}

#[derive(Clone, Copy, Debug)]
pub enum Conversion {
    Identity,
    Scale(f64),
    FahrenheitToCelsius,
}

impl Conversion {
    pub fn apply(self, v: f64) -> f64 {
        match self {
            Conversion::Identity => v,
            Conversion::Scale(k) => v * k,
            Conversion::FahrenheitToCelsius => (v - 32.0) * 5.0 / 9.0,
        }
    }
}

use Conversion::{FahrenheitToCelsius as F2C, Identity as Id, Scale};

const PER_MIN: &[(&str, Conversion)] = &[
    ("/min", Id),
    ("{beats}/min", Id),
    ("{breaths}/min", Id),
    ("beats/min", Id),
    ("breaths/min", Id),
    ("bpm", Id),
    ("1/min", Id),
];
const PERCENT: &[(&str, Conversion)] = &[("%", Id)];
const MMHG: &[(&str, Conversion)] = &[("mm[Hg]", Id), ("mmHg", Id), ("mm Hg", Id)];
const TEMPERATURE: &[(&str, Conversion)] = &[
    ("Cel", Id),
    ("°C", Id),
    ("C", Id),
    ("degC", Id),
    ("[degF]", F2C),
    ("°F", F2C),
    ("F", F2C),
    ("degF", F2C),
];
const MASS: &[(&str, Conversion)] = &[
    ("kg", Id),
    ("g", Scale(0.001)),
    ("[lb_av]", Scale(0.453_592_37)),
    ("lb", Scale(0.453_592_37)),
    ("lbs", Scale(0.453_592_37)),
    ("[oz_av]", Scale(0.028_349_523_125)),
];
const LENGTH: &[(&str, Conversion)] = &[
    ("cm", Id),
    ("m", Scale(100.0)),
    ("mm", Scale(0.1)),
    ("[in_i]", Scale(2.54)),
    ("in", Scale(2.54)),
];
const SCORE: &[(&str, Conversion)] = &[("{score}", Id), ("1", Id), ("", Id)];
const BMI: &[(&str, Conversion)] = &[("kg/m2", Id), ("kg/m^2", Id)];
const LITRES_PER_MIN: &[(&str, Conversion)] = &[("L/min", Id), ("l/min", Id), ("mL/min", Scale(0.001))];
// Glucose mass concentration: 1 mmol/L = 18.016 mg/dL (molar mass 180.16 g/mol).
const GLUCOSE_MASS: &[(&str, Conversion)] = &[("mg/dL", Id), ("mmol/L", Scale(18.016)), ("g/L", Scale(100.0))];
// Creatinine mass concentration: 1 umol/L = 0.011312 mg/dL (molar mass 113.12 g/mol).
const CREATININE_MASS: &[(&str, Conversion)] = &[
    ("mg/dL", Id),
    ("umol/L", Scale(0.011_312)),
    ("µmol/L", Scale(0.011_312)),
];
const HAEMOGLOBIN: &[(&str, Conversion)] = &[("g/dL", Id), ("g/L", Scale(0.1)), ("mmol/L", Scale(1.611))];
// For monovalent ions milliequivalents equal millimoles.
const MMOL_PER_L: &[(&str, Conversion)] = &[("mmol/L", Id), ("meq/L", Id), ("mEq/L", Id)];
const LACTATE: &[(&str, Conversion)] = &[("mmol/L", Id), ("mg/dL", Scale(0.111))];
const PER_NL: &[(&str, Conversion)] = &[("10*3/uL", Id), ("10^3/uL", Id), ("10*9/L", Id), ("K/uL", Id)];

/// The LOINC codes with a canonical unit. Codes not listed are accepted as sent (the unit
/// must still be given for numeric values).
pub const CODES: &[CodeSpec] = &[
    // Vital signs (the NEWS2 parameters first).
    spec("9279-1", "Respiratory rate", "/min", 0.0, 100.0, PER_MIN),
    spec(
        "59408-5",
        "Oxygen saturation by pulse oximetry",
        "%",
        0.0,
        100.0,
        PERCENT,
    ),
    spec(
        "2708-6",
        "Oxygen saturation in arterial blood",
        "%",
        0.0,
        100.0,
        PERCENT,
    ),
    spec("8480-6", "Systolic blood pressure", "mm[Hg]", 0.0, 350.0, MMHG),
    spec("8462-4", "Diastolic blood pressure", "mm[Hg]", 0.0, 250.0, MMHG),
    spec("8867-4", "Heart rate", "/min", 0.0, 350.0, PER_MIN),
    spec("8310-5", "Body temperature", "Cel", 20.0, 46.0, TEMPERATURE),
    spec("8331-1", "Oral temperature", "Cel", 20.0, 46.0, TEMPERATURE),
    spec("29463-7", "Body weight", "kg", 0.2, 650.0, MASS),
    spec("8302-2", "Body height", "cm", 20.0, 275.0, LENGTH),
    spec("39156-5", "Body mass index", "kg/m2", 5.0, 150.0, BMI),
    spec("9269-2", "Glasgow coma score total", "{score}", 3.0, 15.0, SCORE),
    spec("3150-0", "Inhaled oxygen concentration", "%", 21.0, 100.0, PERCENT),
    spec("3151-8", "Inhaled oxygen flow rate", "L/min", 0.0, 80.0, LITRES_PER_MIN),
    // Common laboratory results, each in the unit its LOINC code's property implies.
    spec(
        "2345-7",
        "Glucose [Mass/volume] in Serum or Plasma",
        "mg/dL",
        0.0,
        5000.0,
        GLUCOSE_MASS,
    ),
    spec(
        "2339-0",
        "Glucose [Mass/volume] in Blood",
        "mg/dL",
        0.0,
        5000.0,
        GLUCOSE_MASS,
    ),
    spec(
        "2160-0",
        "Creatinine [Mass/volume] in Serum or Plasma",
        "mg/dL",
        0.0,
        100.0,
        CREATININE_MASS,
    ),
    spec(
        "718-7",
        "Hemoglobin [Mass/volume] in Blood",
        "g/dL",
        0.0,
        30.0,
        HAEMOGLOBIN,
    ),
    spec(
        "2823-3",
        "Potassium [Moles/volume] in Serum or Plasma",
        "mmol/L",
        0.0,
        20.0,
        MMOL_PER_L,
    ),
    spec(
        "2951-2",
        "Sodium [Moles/volume] in Serum or Plasma",
        "mmol/L",
        50.0,
        250.0,
        MMOL_PER_L,
    ),
    spec(
        "2524-7",
        "Lactate [Moles/volume] in Serum or Plasma",
        "mmol/L",
        0.0,
        50.0,
        LACTATE,
    ),
    spec(
        "6690-2",
        "Leukocytes [#/volume] in Blood",
        "10*3/uL",
        0.0,
        1000.0,
        PER_NL,
    ),
    spec("777-3", "Platelets [#/volume] in Blood", "10*3/uL", 0.0, 5000.0, PER_NL),
];

const fn spec(
    loinc: &'static str,
    name: &'static str,
    unit: &'static str,
    min: f64,
    max: f64,
    conversions: &'static [(&'static str, Conversion)],
) -> CodeSpec {
    CodeSpec {
        loinc,
        name,
        unit,
        min,
        max,
        conversions,
    }
}

pub fn lookup(loinc: &str) -> Option<&'static CodeSpec> {
    CODES.iter().find(|c| c.loinc == loinc)
}

/// Why a value could not be brought to its canonical unit.
#[derive(Debug, PartialEq)]
pub enum UnitError {
    UnknownUnit {
        accepted: String,
    },
    OutOfRange {
        value: f64,
        min: f64,
        max: f64,
        unit: &'static str,
    },
}

impl std::fmt::Display for UnitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnitError::UnknownUnit { accepted } => write!(f, "unit not accepted for this code; use one of {accepted}"),
            UnitError::OutOfRange { value, min, max, unit } => {
                write!(f, "{value} {unit} is outside the plausible range {min}-{max} {unit}")
            }
        }
    }
}

impl CodeSpec {
    /// Converts `value` in `unit` to the canonical unit and checks the plausible range.
    pub fn normalise(&self, value: f64, unit: &str) -> Result<f64, UnitError> {
        let conversion = self
            .conversions
            .iter()
            .find(|(u, _)| *u == unit)
            .or_else(|| self.conversions.iter().find(|(u, _)| u.eq_ignore_ascii_case(unit)))
            .map(|(_, c)| *c)
            .ok_or_else(|| UnitError::UnknownUnit {
                accepted: self
                    .conversions
                    .iter()
                    .filter(|(u, _)| !u.is_empty())
                    .map(|(u, _)| format!("\"{u}\""))
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        // Round away float noise from the conversion (0.1 mmHg / 0.01 degC is far below
        // any instrument's precision).
        let v = (conversion.apply(value) * 1e6).round() / 1e6;
        if v < self.min || v > self.max {
            return Err(UnitError::OutOfRange {
                value: v,
                min: self.min,
                max: self.max,
                unit: self.unit,
            });
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fahrenheit_becomes_celsius() {
        let t = lookup("8310-5").unwrap();
        assert_eq!(t.normalise(98.6, "[degF]").unwrap(), 37.0);
        assert_eq!(
            t.normalise(212.0, "°F"),
            Err(UnitError::OutOfRange {
                value: 100.0,
                min: 20.0,
                max: 46.0,
                unit: "Cel"
            })
        );
        assert_eq!(t.normalise(36.4, "Cel").unwrap(), 36.4);
    }

    #[test]
    fn pounds_and_inches_become_kilograms_and_centimetres() {
        assert_eq!(
            lookup("29463-7").unwrap().normalise(154.0, "[lb_av]").unwrap(),
            69.853_225
        );
        assert_eq!(lookup("29463-7").unwrap().normalise(3500.0, "g").unwrap(), 3.5);
        assert_eq!(lookup("8302-2").unwrap().normalise(70.0, "[in_i]").unwrap(), 177.8);
        assert_eq!(lookup("8302-2").unwrap().normalise(1.8, "m").unwrap(), 180.0);
    }

    #[test]
    fn molar_glucose_becomes_mass_concentration() {
        assert_eq!(lookup("2345-7").unwrap().normalise(5.5, "mmol/L").unwrap(), 99.088);
    }

    #[test]
    fn unknown_unit_lists_accepted_ones() {
        let err = lookup("8867-4").unwrap().normalise(80.0, "Hz").unwrap_err();
        assert!(err.to_string().contains("\"/min\""), "{err}");
    }

    #[test]
    fn range_edges_are_inclusive() {
        let spo2 = lookup("59408-5").unwrap();
        assert_eq!(spo2.normalise(100.0, "%").unwrap(), 100.0);
        assert!(matches!(
            spo2.normalise(100.1, "%"),
            Err(UnitError::OutOfRange { max, .. }) if max == 100.0
        ));
        assert_eq!(spo2.normalise(0.0, "%").unwrap(), 0.0);
    }
}
