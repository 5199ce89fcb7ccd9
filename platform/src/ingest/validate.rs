//! Validation and normalisation of one `ClinicalEvent`: required fields, plausible
//! values, canonical units and trimmed codes. The result is the canonical event that the
//! staging zone stores, or every violation found (not just the first), each naming the
//! field by its path inside the event.

use hospital_proto::events::{self as pb, clinical_event::Payload, reference_data::Item};
use prost_types::Timestamp;

use super::codes::{self, CodeError, CodeUse};
use super::units;
use crate::error::{quote, Violation};

/// Limits that depend on configuration or on the clock.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Now, in ms since the Unix epoch.
    pub now_ms: i64,
    /// How far in the future occurred_at may lie (clock skew between systems).
    pub max_future_ms: i64,
}

/// An event that passed validation, in canonical form.
#[derive(Debug, Clone)]
pub struct ValidEvent {
    pub kind: &'static str,
    pub occurred_at_ms: i64,
    pub event: pb::ClinicalEvent,
    /// Parts set aside or flagged while the rest of the event was kept: an implausible
    /// reading dropped from a vital-signs set, an order end before its start.
    pub warnings: Vec<Violation>,
}

const MAX_ID_LEN: usize = 128;
const MAX_TEXT_LEN: usize = 1024;
/// Factors a risk score may carry.
const MAX_RISK_FACTORS: usize = 20;
/// Ranks of diagnoses and procedures: MIMIC-III ranks up to 39 diagnoses of one stay.
const MAX_RANK: u32 = 999;
/// 1900-01-01T00:00:00Z: nothing in a hospital record happened before it.
const EARLIEST_MS: i64 = -2_208_988_800_000;

pub use crate::staging::KINDS;

/// The payload case's name as stored in `staging.events.kind`.
pub fn kind_of(payload: &Payload) -> &'static str {
    payload.kind()
}

/// Validates `event` and returns its canonical form, or every violation found.
pub fn validate(mut event: pb::ClinicalEvent, limits: &Limits) -> Result<ValidEvent, Vec<Violation>> {
    let mut c = Checker::default();
    event.event_id = c.id("event_id", &event.event_id, true);
    event.source_system = c.id("source_system", &event.source_system, true);
    let occurred_at_ms = c.timestamp("occurred_at", event.occurred_at.as_ref(), true, limits);

    let Some(payload) = event.payload.as_mut() else {
        c.violation(
            "payload",
            "required: one of the event kinds (admission, vital_signs, ...) must be set",
        );
        return Err(c.violations);
    };
    let kind = kind_of(payload);
    let needs_patient = !matches!(payload, Payload::BedStatus(_) | Payload::ReferenceData(_));
    match event.patient.as_mut() {
        Some(p) => {
            p.mrn = c.id("patient.mrn", &p.mrn, true);
            p.assigning_authority = c.id("patient.assigning_authority", &p.assigning_authority, false);
            if p.assigning_authority.is_empty() {
                // An MRN is only unique within the system that assigned it.
                p.assigning_authority = event.source_system.clone();
            }
        }
        None if needs_patient => c.violation("patient", format!("required for {kind} events")),
        None => {}
    }

    match payload {
        Payload::PatientRegistered(d) | Payload::PatientUpdated(d) => c.demographics(kind, d, limits),
        Payload::Admission(a) => {
            a.encounter_id = c.id("admission.encounter_id", &a.encounter_id, true);
            c.enum_set(
                "admission.encounter_class",
                a.encounter_class,
                pb::EncounterClass::try_from(a.encounter_class).ok().map(|e| e as i32),
            );
            c.enum_known(
                "admission.admission_type",
                pb::AdmissionType::try_from(a.admission_type).is_ok(),
            );
            c.location("admission.location", a.location.as_mut(), true, false);
            a.attending_practitioner = c.id("admission.attending_practitioner", &a.attending_practitioner, false);
            a.payer_code = c.id("admission.payer_code", &a.payer_code, false);
            a.admitting_diagnosis = c
                .id("admission.admitting_diagnosis", &a.admitting_diagnosis, false)
                .to_uppercase();
        }
        Payload::Transfer(t) => {
            t.encounter_id = c.id("transfer.encounter_id", &t.encounter_id, true);
            c.location("transfer.from", t.from.as_mut(), false, false);
            c.location("transfer.to", t.to.as_mut(), true, false);
        }
        Payload::Discharge(d) => {
            d.encounter_id = c.id("discharge.encounter_id", &d.encounter_id, true);
            c.enum_known(
                "discharge.disposition",
                pb::DischargeDisposition::try_from(d.disposition).is_ok(),
            );
        }
        Payload::EdArrival(a) => {
            a.encounter_id = c.id("ed_arrival.encounter_id", &a.encounter_id, true);
            c.enum_known(
                "ed_arrival.arrival_mode",
                pb::ArrivalMode::try_from(a.arrival_mode).is_ok(),
            );
            a.chief_complaint = c.text("ed_arrival.chief_complaint", &a.chief_complaint);
            a.department_code = c.id("ed_arrival.department_code", &a.department_code, false);
        }
        Payload::EdTriage(t) => {
            t.encounter_id = c.id("ed_triage.encounter_id", &t.encounter_id, true);
            if !(1..=5).contains(&t.acuity) {
                c.violation(
                    "ed_triage.acuity",
                    format!("must be 1 (most urgent) to 5, got {}", t.acuity),
                );
            }
        }
        Payload::VitalSigns(v) => c.vital_signs(v),
        Payload::LabResult(l) => c.lab_result(l, limits),
        Payload::MedicationOrder(o) => {
            o.order_id = c.id("medication_order.order_id", &o.order_id, true);
            o.encounter_id = c.id("medication_order.encounter_id", &o.encounter_id, false);
            o.drug_code = c.id("medication_order.drug_code", &o.drug_code, false);
            o.drug_name = c.text("medication_order.drug_name", &o.drug_name);
            if o.drug_code.is_empty() && o.drug_name.is_empty() {
                c.violation("medication_order.drug_code", "required (or drug_name)");
            }
            c.dose("medication_order", o.dose_value, &mut o.dose_unit);
            o.route = c.id("medication_order.route", &o.route, false);
            o.frequency = c.id("medication_order.frequency", &o.frequency, false);
            let starts = c.timestamp(
                "medication_order.starts_at",
                o.starts_at.as_ref(),
                false,
                &Limits {
                    max_future_ms: i64::MAX / 4,
                    ..*limits
                },
            );
            let ends = c.timestamp(
                "medication_order.ends_at",
                o.ends_at.as_ref(),
                false,
                &Limits {
                    max_future_ms: i64::MAX / 4,
                    ..*limits
                },
            );
            if let (Some(s), Some(e)) = (starts, ends) {
                if e < s {
                    // A source error (MIMIC has such prescriptions), not a reason to
                    // lose the order: keep it without an end and say so.
                    o.ends_at = None;
                    c.warning(
                        "medication_order.ends_at",
                        format!("{} ms before starts_at: the end was set aside, the order kept", s - e),
                    );
                }
            }
        }
        Payload::MedicationDispense(m) => c.medication_event("medication_dispense", m),
        Payload::MedicationAdministration(m) => c.medication_event("medication_administration", m),
        Payload::BedStatus(b) => {
            c.location("bed_status.location", b.location.as_mut(), true, true);
            c.enum_set(
                "bed_status.state",
                b.state,
                pb::BedState::try_from(b.state).ok().map(|e| e as i32),
            );
        }
        Payload::ChargeLine(ch) => {
            ch.charge_id = c.id("charge_line.charge_id", &ch.charge_id, true);
            ch.encounter_id = c.id("charge_line.encounter_id", &ch.encounter_id, false);
            ch.code = c.id("charge_line.code", &ch.code, true);
            ch.description = c.text("charge_line.description", &ch.description);
            if !ch.quantity.is_finite() || ch.quantity == 0.0 || ch.quantity.abs() > 1e6 {
                c.violation(
                    "charge_line.quantity",
                    format!(
                        "must be a non-zero number up to 1e6 in size (negative for a reversal), got {}",
                        ch.quantity
                    ),
                );
            }
            ch.currency = ch.currency.trim().to_ascii_uppercase();
            if ch.currency.len() != 3 || !ch.currency.bytes().all(|b| b.is_ascii_uppercase()) {
                c.violation(
                    "charge_line.currency",
                    "required: an ISO 4217 code such as GBP, USD, EUR",
                );
            }
            ch.payer_code = c.id("charge_line.payer_code", &ch.payer_code, false);
        }
        Payload::ReferenceData(r) => match r.item.as_mut() {
            None => c.violation("reference_data.item", "required: one of drug, payer, ward"),
            Some(Item::Drug(d)) => {
                d.code = c.id("reference_data.drug.code", &d.code, true);
                d.code_system = c.id("reference_data.drug.code_system", &d.code_system, false);
                d.name = c.required_text("reference_data.drug.name", &d.name);
                d.drug_class = c.text("reference_data.drug.drug_class", &d.drug_class);
                d.form = c.text("reference_data.drug.form", &d.form);
                d.strength = c.text("reference_data.drug.strength", &d.strength);
            }
            Some(Item::Payer(p)) => {
                p.code = c.id("reference_data.payer.code", &p.code, true);
                p.name = c.required_text("reference_data.payer.name", &p.name);
                p.payer_type = c.id("reference_data.payer.payer_type", &p.payer_type, false);
            }
            Some(Item::Ward(w)) => {
                w.department_code = c.id("reference_data.ward.department_code", &w.department_code, true);
                w.department_name = c.text("reference_data.ward.department_name", &w.department_name);
                w.ward_code = c.id("reference_data.ward.ward_code", &w.ward_code, true);
                w.ward_name = c.text("reference_data.ward.ward_name", &w.ward_name);
                if w.bed_count > 10_000 {
                    c.violation(
                        "reference_data.ward.bed_count",
                        format!("{} beds in one ward is not plausible (max 10000)", w.bed_count),
                    );
                }
            }
        },
        Payload::Diagnosis(d) => c.diagnosis(d, occurred_at_ms, limits),
        Payload::Procedure(p) => c.procedure(p, occurred_at_ms, limits),
        Payload::RiskScore(r) => c.risk_score(r),
    }

    if c.violations.is_empty() {
        Ok(ValidEvent {
            kind,
            occurred_at_ms: occurred_at_ms.unwrap_or_default(),
            event,
            warnings: c.warnings,
        })
    } else {
        Err(c.violations)
    }
}

#[derive(Default)]
struct Checker {
    violations: Vec<Violation>,
    warnings: Vec<Violation>,
}

impl Checker {
    fn violation(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.violations.push(Violation::new(field, description));
    }

    fn warning(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.warnings.push(Violation::new(field, description));
    }

    /// An identifier or code: trimmed, no control characters, bounded length.
    fn id(&mut self, field: &str, value: &str, required: bool) -> String {
        let v = value.trim();
        if v.is_empty() {
            if required {
                self.violation(field, "required");
            }
        } else if v.len() > MAX_ID_LEN {
            self.violation(field, format!("longer than {MAX_ID_LEN} bytes (got {})", v.len()));
        } else if v.chars().any(char::is_control) {
            self.violation(field, "contains control characters");
        }
        v.to_string()
    }

    /// Free text: trimmed, bounded length.
    fn text(&mut self, field: &str, value: &str) -> String {
        let v = value.trim();
        if v.len() > MAX_TEXT_LEN {
            self.violation(field, format!("longer than {MAX_TEXT_LEN} bytes (got {})", v.len()));
        }
        v.to_string()
    }

    fn required_text(&mut self, field: &str, value: &str) -> String {
        let v = self.text(field, value);
        if v.is_empty() {
            self.violation(field, "required");
        }
        v
    }

    fn enum_known(&mut self, field: &str, known: bool) {
        if !known {
            self.violation(field, "unknown enum value");
        }
    }

    /// An enum that must be set to a known value other than UNSPECIFIED (0).
    fn enum_set(&mut self, field: &str, raw: i32, known: Option<i32>) {
        match known {
            None => self.violation(field, format!("unknown enum value {raw}")),
            Some(0) => self.violation(field, "required (must not be UNSPECIFIED)"),
            Some(_) => {}
        }
    }

    fn timestamp(&mut self, field: &str, ts: Option<&Timestamp>, required: bool, limits: &Limits) -> Option<i64> {
        let Some(ts) = ts else {
            if required {
                self.violation(field, "required");
            }
            return None;
        };
        if !(0..1_000_000_000).contains(&ts.nanos) {
            self.violation(field, format!("nanos must be 0..999999999, got {}", ts.nanos));
            return None;
        }
        let ms = ts
            .seconds
            .checked_mul(1000)
            .and_then(|s| s.checked_add(i64::from(ts.nanos / 1_000_000)));
        match ms {
            Some(ms) if ms < EARLIEST_MS => {
                self.violation(field, "before 1900-01-01");
                None
            }
            Some(ms) if ms > limits.now_ms.saturating_add(limits.max_future_ms) => {
                self.violation(field, format!("{} s in the future", (ms - limits.now_ms) / 1000));
                None
            }
            Some(ms) => Some(ms),
            None => {
                self.violation(field, "out of range");
                None
            }
        }
    }

    fn demographics(&mut self, prefix: &str, d: &mut pb::PatientDemographics, limits: &Limits) {
        d.given_name = self.text(&format!("{prefix}.given_name"), &d.given_name);
        d.family_name = self.text(&format!("{prefix}.family_name"), &d.family_name);
        d.postal_code = self
            .id(&format!("{prefix}.postal_code"), &d.postal_code, false)
            .to_uppercase();
        self.enum_known(&format!("{prefix}.sex"), pb::AdministrativeSex::try_from(d.sex).is_ok());
        let birth_ms = match &d.birth_date {
            None => None,
            Some(b) => match date_ms(b) {
                None => {
                    self.violation(
                        format!("{prefix}.birth_date"),
                        format!("not a calendar date: {:04}-{:02}-{:02}", b.year, b.month, b.day),
                    );
                    None
                }
                Some(ms) if ms < EARLIEST_MS || ms > limits.now_ms => {
                    self.violation(format!("{prefix}.birth_date"), "must lie between 1900-01-01 and today");
                    None
                }
                Some(ms) => Some(ms),
            },
        };
        let deceased = self.timestamp(&format!("{prefix}.deceased_at"), d.deceased_at.as_ref(), false, limits);
        if let (Some(b), Some(dd)) = (birth_ms, deceased) {
            if dd < b {
                self.violation(format!("{prefix}.deceased_at"), "before birth_date");
            }
        }
    }

    /// department > ward > bed. `required`: at least a department or ward; `bed`: a
    /// ward and bed are both required.
    fn location(&mut self, field: &str, loc: Option<&mut pb::Location>, required: bool, bed: bool) {
        let Some(loc) = loc else {
            if required {
                self.violation(field, "required");
            }
            return;
        };
        loc.department_code = self.id(&format!("{field}.department_code"), &loc.department_code, false);
        loc.ward_code = self.id(&format!("{field}.ward_code"), &loc.ward_code, bed);
        loc.bed_code = self.id(&format!("{field}.bed_code"), &loc.bed_code, bed);
        if required && !bed && loc.department_code.is_empty() && loc.ward_code.is_empty() {
            self.violation(field, "needs a department_code or a ward_code");
        }
    }

    fn vital_signs(&mut self, v: &mut pb::VitalSigns) {
        v.encounter_id = self.id("vital_signs.encounter_id", &v.encounter_id, false);
        self.enum_known(
            "vital_signs.consciousness",
            pb::Consciousness::try_from(v.consciousness).is_ok(),
        );
        self.enum_known("vital_signs.spo2_scale", pb::Spo2Scale::try_from(v.spo2_scale).is_ok());
        if v.observations.is_empty() && v.consciousness == 0 && v.supplemental_oxygen.is_none() {
            self.violation(
                "vital_signs.observations",
                "required: at least one observation, consciousness or supplemental_oxygen",
            );
        }
        let mut seen: Vec<String> = Vec::with_capacity(v.observations.len());
        // One implausible reading does not take its valid neighbours down: it is set
        // aside with a warning (named by its index as sent) and the rest of the set kept.
        let mut implausible: Vec<usize> = Vec::new();
        for (i, o) in v.observations.iter_mut().enumerate() {
            let field = format!("vital_signs.observations[{i}]");
            o.loinc_code = o.loinc_code.trim().to_string();
            if seen.contains(&o.loinc_code) {
                self.violation(
                    format!("{field}.loinc_code"),
                    format!("{} appears twice in one observation set", quote(&o.loinc_code)),
                );
            }
            seen.push(o.loinc_code.clone());
            match self.reading(&field, &o.loinc_code, o.value, &mut o.unit) {
                Reading::Normalised(v) => o.value = v,
                Reading::Implausible(why) => {
                    self.warning(format!("{field}.value"), format!("{why}; this reading was set aside"));
                    implausible.push(i);
                }
                Reading::Invalid => {}
            }
        }
        if !implausible.is_empty() {
            let mut i = 0;
            v.observations.retain(|_| {
                i += 1;
                !implausible.contains(&(i - 1))
            });
            if v.observations.is_empty() && v.consciousness == 0 && v.supplemental_oxygen.is_none() {
                // Nothing plausible is left: the set is rejected, naming each reading.
                let warnings = std::mem::take(&mut self.warnings);
                self.violations.extend(
                    warnings
                        .into_iter()
                        .map(|w| Violation::new(w.field, w.description.replace("; this reading was set aside", ""))),
                );
            }
        }
    }

    fn lab_result(&mut self, l: &mut pb::LabResult, limits: &Limits) {
        l.encounter_id = self.id("lab_result.encounter_id", &l.encounter_id, false);
        l.order_id = self.id("lab_result.order_id", &l.order_id, false);
        l.display = self.text("lab_result.display", &l.display);
        l.value_text = self.text("lab_result.value_text", &l.value_text);
        l.value_code = self.text("lab_result.value_code", &l.value_code);
        l.value_code_system = self.text("lab_result.value_code_system", &l.value_code_system);
        l.loinc_code = l.loinc_code.trim().to_string();
        self.enum_known(
            "lab_result.abnormal_flag",
            pb::AbnormalFlag::try_from(l.abnormal_flag).is_ok(),
        );
        self.timestamp(
            "lab_result.specimen_collected_at",
            l.specimen_collected_at.as_ref(),
            false,
            limits,
        );
        match l.value {
            None => {
                if !loinc_format_ok(&l.loinc_code) {
                    self.violation("lab_result.loinc_code", loinc_message(&l.loinc_code));
                }
                // A result is a number or a text (a coded result's code counts as one).
                if l.value_text.is_empty() && l.value_code.is_empty() {
                    self.violation("lab_result.value", "required (or value_text for a text result)");
                }
            }
            Some(value) => {
                // Reference ranges are converted with the same factor as the value.
                let original_unit = l.unit.trim().to_string();
                if let Some(v) = self.quantity("lab_result", &l.loinc_code, value, &mut l.unit) {
                    l.value = Some(v);
                    if let Some(spec) = units::lookup(&l.loinc_code) {
                        let conv = spec
                            .conversions
                            .iter()
                            .find(|(u, _)| u.eq_ignore_ascii_case(&original_unit))
                            .map(|(_, c)| *c);
                        if let Some(conv) = conv {
                            l.reference_low = l.reference_low.map(|x| conv.apply(x));
                            l.reference_high = l.reference_high.map(|x| conv.apply(x));
                        }
                    }
                }
            }
        }
        if let (Some(lo), Some(hi)) = (l.reference_low, l.reference_high) {
            if lo > hi {
                self.violation("lab_result.reference_low", format!("{lo} is above reference_high {hi}"));
            }
        }
    }

    /// A coded numeric value: LOINC format, finite value, unit converted to the
    /// canonical one and range-checked where the code is known. Returns the value in
    /// the canonical unit, or None after recording a violation.
    fn quantity(&mut self, field: &str, code: &str, value: f64, unit: &mut String) -> Option<f64> {
        match self.reading(field, code, value, unit) {
            Reading::Normalised(v) => Some(v),
            Reading::Implausible(why) => {
                self.violation(format!("{field}.value"), why);
                None
            }
            Reading::Invalid => None,
        }
    }

    /// As [`Self::quantity`], but a value outside the plausible range is returned to the
    /// caller (a vital-sign set keeps its other readings) instead of recorded as a
    /// violation.
    fn reading(&mut self, field: &str, code: &str, value: f64, unit: &mut String) -> Reading {
        if !loinc_format_ok(code) {
            self.violation(format!("{field}.loinc_code"), loinc_message(code));
            return Reading::Invalid;
        }
        if !value.is_finite() {
            self.violation(
                format!("{field}.value"),
                format!("must be a finite number, got {value}"),
            );
            return Reading::Invalid;
        }
        *unit = unit.trim().to_string();
        match units::lookup(code) {
            Some(spec) => match spec.normalise(value, unit) {
                Ok(v) => {
                    *unit = spec.unit.to_string();
                    Reading::Normalised(v)
                }
                Err(e @ units::UnitError::UnknownUnit { .. }) => {
                    self.violation(
                        format!("{field}.unit"),
                        format!("{} for {} ({}): {e}", quote(unit), spec.loinc, spec.name),
                    );
                    Reading::Invalid
                }
                Err(e @ units::UnitError::OutOfRange { .. }) => {
                    Reading::Implausible(format!("{} ({}): {e}", spec.loinc, spec.name))
                }
            },
            None if unit.is_empty() => {
                self.violation(format!("{field}.unit"), "required (a UCUM unit)");
                Reading::Invalid
            }
            None => Reading::Normalised(value),
        }
    }

    fn diagnosis(&mut self, d: &mut pb::Diagnosis, onset_ms: Option<i64>, limits: &Limits) {
        let role = pb::DiagnosisRole::try_from(d.role);
        self.enum_known("diagnosis.role", role.is_ok());
        d.encounter_id = self.id("diagnosis.encounter_id", &d.encounter_id, false);
        if d.encounter_id.is_empty() && role != Ok(pb::DiagnosisRole::ProblemList) {
            self.violation(
                "diagnosis.encounter_id",
                "required unless role is PROBLEM_LIST (only a problem-list entry stands outside an encounter)",
            );
        }
        self.code("diagnosis", CodeUse::Diagnosis, &mut d.code, d.code_system);
        d.display = self.text("diagnosis.display", &d.display);
        self.rank("diagnosis.rank", d.rank);
        if role == Ok(pb::DiagnosisRole::Principal) && d.rank > 1 {
            self.violation(
                "diagnosis.rank",
                format!("a principal diagnosis ranks 1 (or 0, unranked), got {}", d.rank),
            );
        }
        self.enum_known(
            "diagnosis.clinical_status",
            pb::ConditionStatus::try_from(d.clinical_status).is_ok(),
        );
        let abated = self.timestamp("diagnosis.abated_at", d.abated_at.as_ref(), false, limits);
        self.not_before("diagnosis.abated_at", abated, onset_ms, "the onset (occurred_at)");
        self.timestamp("diagnosis.recorded_at", d.recorded_at.as_ref(), false, limits);
    }

    fn procedure(&mut self, p: &mut pb::ProcedurePerformed, start_ms: Option<i64>, limits: &Limits) {
        p.encounter_id = self.id("procedure.encounter_id", &p.encounter_id, false);
        self.code("procedure", CodeUse::Procedure, &mut p.code, p.code_system);
        p.display = self.text("procedure.display", &p.display);
        let ended = self.timestamp("procedure.ended_at", p.ended_at.as_ref(), false, limits);
        self.not_before("procedure.ended_at", ended, start_ms, "the start (occurred_at)");
        self.rank("procedure.rank", p.rank);
        p.performer = self.id("procedure.performer", &p.performer, false);
    }

    /// A diagnosis or procedure code: required, in a code system the payload takes, in
    /// that system's shape; rewritten to its canonical spelling.
    fn code(&mut self, prefix: &str, code_use: CodeUse, code: &mut String, system: i32) {
        let before = self.violations.len();
        *code = self.id(&format!("{prefix}.code"), code, true);
        let code_ok = self.violations.len() == before;
        let system_field = format!("{prefix}.code_system");
        match pb::CodeSystem::try_from(system) {
            Err(_) => self.violation(system_field, format!("unknown enum value {system}")),
            Ok(pb::CodeSystem::Unspecified) => self.violation(
                system_field,
                "required (must not be UNSPECIFIED): the terminology of the code, e.g. ICD10_CM or SNOMED_CT",
            ),
            Ok(s) => match codes::normalise(s, code_use, code) {
                Ok(canonical) if code_ok => *code = canonical,
                Err(CodeError::System(m)) => self.violation(system_field, m),
                Err(CodeError::Code(m)) if code_ok => self.violation(format!("{prefix}.code"), m),
                // A missing or unreadable code is reported once, above.
                _ => {}
            },
        }
    }

    /// Position in a ranked list, 1 first, 0 unranked.
    fn rank(&mut self, field: &str, rank: u32) {
        if rank > MAX_RANK {
            self.violation(
                field,
                format!("{rank} is not a plausible rank (1 first, max {MAX_RANK})"),
            );
        }
    }

    /// `at` must not lie before `start` (both already checked on their own).
    fn not_before(&mut self, field: &str, at: Option<i64>, start: Option<i64>, what: &str) {
        if let (Some(at), Some(start)) = (at, start) {
            if at < start {
                self.violation(field, format!("must not be before {what}"));
            }
        }
    }

    fn dose(&mut self, prefix: &str, value: f64, unit: &mut String) {
        if !value.is_finite() || value < 0.0 {
            self.violation(
                format!("{prefix}.dose_value"),
                format!("must be a finite number >= 0, got {value}"),
            );
        }
        *unit = self.id(&format!("{prefix}.dose_unit"), unit, false);
        if value > 0.0 && unit.is_empty() {
            self.violation(format!("{prefix}.dose_unit"), "required when dose_value is given");
        }
    }

    fn risk_score(&mut self, r: &mut pb::RiskScore) {
        r.encounter_id = self.id("risk_score.encounter_id", &r.encounter_id, true);
        r.model = self.id("risk_score.model", &r.model, true);
        if !r
            .model
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            self.violation(
                "risk_score.model",
                "lower-case letters, digits and underscores only, e.g. deterioration_24h",
            );
        }
        if r.model_version == 0 {
            self.violation("risk_score.model_version", "required: the registry version, 1 or more");
        }
        for (field, p) in [
            ("risk_score.probability", r.probability),
            ("risk_score.threshold", r.threshold),
        ] {
            if !(0.0..=1.0).contains(&p) {
                self.violation(field, format!("must be a probability from 0 to 1, got {p}"));
            }
        }
        r.scored_event_id = self.id("risk_score.scored_event_id", &r.scored_event_id, true);
        r.scored_source_system = self.id("risk_score.scored_source_system", &r.scored_source_system, true);
        r.department_code = self.id("risk_score.department_code", &r.department_code, false);
        r.ward_code = self.id("risk_score.ward_code", &r.ward_code, false);
        if r.top_factors.len() > MAX_RISK_FACTORS {
            self.violation(
                "risk_score.top_factors",
                format!("at most {MAX_RISK_FACTORS} factors, got {}", r.top_factors.len()),
            );
        }
        for (i, f) in r.top_factors.iter_mut().enumerate() {
            f.feature = self.id(&format!("risk_score.top_factors[{i}].feature"), &f.feature, true);
            if !f.contribution.is_finite() {
                self.violation(
                    format!("risk_score.top_factors[{i}].contribution"),
                    format!("must be a finite number, got {}", f.contribution),
                );
            }
            if f.value.is_infinite() {
                self.violation(
                    format!("risk_score.top_factors[{i}].value"),
                    "must be a finite number, or NaN for a missing value",
                );
            }
        }
    }

    fn medication_event(&mut self, prefix: &str, m: &mut pb::MedicationEvent) {
        m.order_id = self.id(&format!("{prefix}.order_id"), &m.order_id, false);
        m.encounter_id = self.id(&format!("{prefix}.encounter_id"), &m.encounter_id, false);
        m.drug_code = self.id(&format!("{prefix}.drug_code"), &m.drug_code, false);
        if m.order_id.is_empty() && m.drug_code.is_empty() {
            self.violation(format!("{prefix}.order_id"), "required (or drug_code)");
        }
        self.dose(prefix, m.dose_value, &mut m.dose_unit);
        m.route = self.id(&format!("{prefix}.route"), &m.route, false);
    }
}

/// A LOINC code is 1-7 digits, a hyphen and a check digit.
/// What became of one vital-sign reading.
enum Reading {
    Normalised(f64),
    /// Outside the plausible range: set aside, with the reason.
    Implausible(String),
    /// A violation was recorded.
    Invalid,
}

fn loinc_format_ok(code: &str) -> bool {
    match code.split_once('-') {
        Some((num, check)) => {
            (1..=7).contains(&num.len())
                && num.bytes().all(|b| b.is_ascii_digit())
                && check.len() == 1
                && check.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

fn loinc_message(code: &str) -> String {
    if code.is_empty() {
        "required".into()
    } else {
        format!(
            "{} is not a LOINC code (digits, hyphen, check digit, e.g. 8867-4)",
            quote(code)
        )
    }
}

/// Midnight UTC of a calendar date, in ms since the epoch; None if it is not a date.
fn date_ms(d: &pb::Date) -> Option<i64> {
    let month = time::Month::try_from(u8::try_from(d.month).ok()?).ok()?;
    let date = time::Date::from_calendar_date(d.year, month, u8::try_from(d.day).ok()?).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp() * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_790_000_000_000;

    fn limits() -> Limits {
        Limits {
            now_ms: NOW_MS,
            max_future_ms: 300_000,
        }
    }

    fn event(payload: Payload) -> pb::ClinicalEvent {
        pb::ClinicalEvent {
            event_id: " e-1 ".into(),
            source_system: "epic".into(),
            occurred_at: Some(Timestamp {
                seconds: NOW_MS / 1000 - 3600,
                nanos: 0,
            }),
            patient: Some(pb::PatientRef {
                mrn: "MRN1".into(),
                assigning_authority: String::new(),
            }),
            payload: Some(payload),
        }
    }

    fn vitals(observations: Vec<(&str, f64, &str)>) -> Payload {
        Payload::VitalSigns(pb::VitalSigns {
            observations: observations
                .into_iter()
                .map(|(c, v, u)| pb::Observation {
                    loinc_code: c.into(),
                    value: v,
                    unit: u.into(),
                })
                .collect(),
            consciousness: pb::Consciousness::Alert as i32,
            ..Default::default()
        })
    }

    fn fields(violations: &[Violation]) -> Vec<&str> {
        violations.iter().map(|v| v.field.as_str()).collect()
    }

    #[test]
    fn valid_vitals_are_normalised() {
        let valid = validate(
            event(vitals(vec![
                ("8310-5", 100.4, "[degF]"),
                ("29463-7", 22.0, "lb"),
                ("8867-4", 88.0, "bpm"),
            ])),
            &limits(),
        )
        .unwrap();
        assert_eq!(valid.kind, "vital_signs");
        assert_eq!(valid.event.event_id, "e-1", "ids are trimmed");
        assert_eq!(
            valid.event.patient.as_ref().unwrap().assigning_authority,
            "epic",
            "authority defaults to the source"
        );
        let Some(Payload::VitalSigns(v)) = valid.event.payload else {
            panic!()
        };
        assert_eq!(
            (v.observations[0].value, v.observations[0].unit.as_str()),
            (38.0, "Cel")
        );
        assert_eq!(
            (v.observations[1].value, v.observations[1].unit.as_str()),
            (9.979_032, "kg")
        );
        assert_eq!(v.observations[2].unit, "/min");
    }

    #[test]
    fn every_violation_is_named() {
        let mut e = event(vitals(vec![
            ("8867-4", 500.0, "/min"),
            ("59408-5", f64::NAN, "%"),
            ("8310-5", 37.0, "K"),
            ("abc", 1.0, "x"),
        ]));
        e.event_id.clear();
        e.occurred_at = None;
        let v = validate(e, &limits()).unwrap_err();
        assert_eq!(
            fields(&v),
            vec![
                "event_id",
                "occurred_at",
                "vital_signs.observations[1].value",
                "vital_signs.observations[2].unit",
                "vital_signs.observations[3].loinc_code",
            ]
        );
        assert!(v[3].description.contains("\"K\""), "{}", v[3].description);
    }

    #[test]
    fn an_implausible_reading_is_set_aside_and_its_neighbours_kept() {
        // MIMIC has a respiratory rate of 118 beside four valid readings.
        let valid = validate(
            event(vitals(vec![
                ("8867-4", 96.0, "/min"),
                ("9279-1", 118.0, "/min"),
                ("8480-6", 132.0, "mm[Hg]"),
                ("8310-5", 36.9, "Cel"),
                ("59408-5", 97.0, "%"),
            ])),
            &limits(),
        )
        .unwrap();
        let Some(Payload::VitalSigns(v)) = &valid.event.payload else {
            panic!("vital signs")
        };
        let codes: Vec<&str> = v.observations.iter().map(|o| o.loinc_code.as_str()).collect();
        assert_eq!(codes, vec!["8867-4", "8480-6", "8310-5", "59408-5"]);
        assert_eq!(fields(&valid.warnings), vec!["vital_signs.observations[1].value"]);
        assert!(
            valid.warnings[0].description.contains("118")
                && valid.warnings[0].description.contains("outside the plausible range")
                && valid.warnings[0].description.contains("set aside"),
            "{}",
            valid.warnings[0].description
        );

        // Nothing plausible left: rejected, naming the reading.
        let mut only = event(vitals(vec![("9279-1", 118.0, "/min")]));
        if let Some(Payload::VitalSigns(v)) = only.payload.as_mut() {
            v.consciousness = 0;
        }
        let v = validate(only, &limits()).unwrap_err();
        assert_eq!(fields(&v), vec!["vital_signs.observations[0].value"]);
        assert!(
            v[0].description.contains("outside the plausible range"),
            "{}",
            v[0].description
        );
        assert!(!v[0].description.contains("set aside"), "{}", v[0].description);
    }

    #[test]
    fn an_order_ending_before_it_starts_is_kept_without_its_end() {
        let order = pb::MedicationOrder {
            order_id: "o-1".into(),
            drug_code: "197361".into(),
            drug_name: "amlodipine".into(),
            starts_at: ts(NOW_MS / 1000 - 3600),
            ends_at: ts(NOW_MS / 1000 - 7200),
            ..Default::default()
        };
        let valid = validate(event(Payload::MedicationOrder(order)), &limits()).unwrap();
        let Some(Payload::MedicationOrder(o)) = &valid.event.payload else {
            panic!("order")
        };
        assert_eq!(o.ends_at, None);
        assert!(o.starts_at.is_some());
        assert_eq!(fields(&valid.warnings), vec!["medication_order.ends_at"]);
        assert!(valid.warnings[0].description.contains("3600000 ms before starts_at"));
    }

    #[test]
    fn patient_is_required_except_for_beds_and_reference_data() {
        let mut e = event(Payload::Discharge(pb::Discharge {
            encounter_id: "E1".into(),
            disposition: 1,
        }));
        e.patient = None;
        assert_eq!(fields(&validate(e, &limits()).unwrap_err()), vec!["patient"]);
        let mut bed = event(Payload::BedStatus(pb::BedStatus {
            location: Some(pb::Location {
                department_code: "MED".into(),
                ward_code: "W1".into(),
                bed_code: "W1-01".into(),
            }),
            state: pb::BedState::Cleaning as i32,
        }));
        bed.patient = None;
        let valid = validate(bed, &limits()).expect("a bed needs no patient");
        assert_eq!(valid.kind, "bed_status");
        assert!(valid.warnings.is_empty());
    }

    #[test]
    fn timestamps_in_the_future_or_before_1900_are_rejected() {
        let mut e = event(Payload::Discharge(pb::Discharge {
            encounter_id: "E1".into(),
            disposition: 0,
        }));
        e.occurred_at = Some(Timestamp {
            seconds: NOW_MS / 1000 + 3600,
            nanos: 0,
        });
        assert_eq!(
            fields(&validate(e.clone(), &limits()).unwrap_err()),
            vec!["occurred_at"]
        );
        e.occurred_at = Some(Timestamp {
            seconds: NOW_MS / 1000 + 60,
            nanos: 0,
        });
        assert!(validate(e.clone(), &limits()).is_ok(), "within clock skew");
        e.occurred_at = Some(Timestamp {
            seconds: -2_300_000_000,
            nanos: 0,
        });
        assert_eq!(fields(&validate(e, &limits()).unwrap_err()), vec!["occurred_at"]);
    }

    #[test]
    fn extreme_timestamps_are_rejected_not_panics() {
        for seconds in [i64::MAX, i64::MIN, i64::MAX / 1000] {
            let mut e = event(Payload::Discharge(pb::Discharge {
                encounter_id: "E1".into(),
                disposition: 0,
            }));
            e.occurred_at = Some(Timestamp {
                seconds,
                nanos: 999_999_999,
            });
            assert_eq!(
                fields(&validate(e, &limits()).unwrap_err()),
                vec!["occurred_at"],
                "{seconds}"
            );
        }
    }

    #[test]
    fn demographics_dates_are_checked() {
        let d = |y, m, day| {
            event(Payload::PatientRegistered(pb::PatientDemographics {
                birth_date: Some(pb::Date { year: y, month: m, day }),
                ..Default::default()
            }))
        };
        assert!(validate(d(1981, 2, 29), &limits()).unwrap_err()[0]
            .description
            .contains("not a calendar date"));
        let leap = validate(d(1984, 2, 29), &limits()).expect("a leap day is a date");
        let Some(Payload::PatientRegistered(p)) = leap.event.payload else {
            panic!("registration")
        };
        assert_eq!(p.birth_date.map(|b| (b.year, b.month, b.day)), Some((1984, 2, 29)));
        assert_eq!(
            fields(&validate(d(2090, 1, 1), &limits()).unwrap_err()),
            vec!["patient_registered.birth_date"]
        );
    }

    #[test]
    fn lab_units_and_reference_ranges_convert_together() {
        let lab = Payload::LabResult(pb::LabResult {
            loinc_code: "2345-7".into(),
            value: Some(5.0),
            unit: "mmol/L".into(),
            reference_low: Some(3.9),
            reference_high: Some(5.6),
            ..Default::default()
        });
        let valid = validate(event(lab), &limits()).unwrap();
        let Some(Payload::LabResult(l)) = valid.event.payload else {
            panic!()
        };
        assert_eq!((l.value, l.unit.as_str()), (Some(90.08), "mg/dL"));
        assert!((l.reference_low.unwrap() - 70.26).abs() < 0.01);
        assert!((l.reference_high.unwrap() - 100.89).abs() < 0.01);
    }

    #[test]
    fn enums_and_required_codes() {
        let adm = Payload::Admission(pb::Admission {
            encounter_id: "E1".into(),
            encounter_class: 0,
            admission_type: 99,
            location: Some(pb::Location::default()),
            ..Default::default()
        });
        assert_eq!(
            fields(&validate(event(adm), &limits()).unwrap_err()),
            vec![
                "admission.encounter_class",
                "admission.admission_type",
                "admission.location"
            ]
        );
        let charge = Payload::ChargeLine(pb::ChargeLine {
            charge_id: "C1".into(),
            code: "0110".into(),
            quantity: 2.0,
            unit_price_minor: 100,
            currency: "gbp".into(),
            ..Default::default()
        });
        let valid = validate(event(charge), &limits()).unwrap();
        let Some(Payload::ChargeLine(c)) = valid.event.payload else {
            panic!()
        };
        assert_eq!(c.currency, "GBP");
    }

    fn ts(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    fn diagnosis() -> pb::Diagnosis {
        pb::Diagnosis {
            encounter_id: " E1 ".into(),
            code: "j189".into(),
            code_system: pb::CodeSystem::Icd10Cm as i32,
            display: " Pneumonia, unspecified organism ".into(),
            role: pb::DiagnosisRole::Principal as i32,
            rank: 1,
            clinical_status: pb::ConditionStatus::Active as i32,
            abated_at: None,
            recorded_at: ts(NOW_MS / 1000 - 60),
        }
    }

    fn procedure() -> pb::ProcedurePerformed {
        pb::ProcedurePerformed {
            encounter_id: "E1".into(),
            code: "0dtj4zz".into(),
            code_system: pb::CodeSystem::Icd10Pcs as i32,
            display: "Resection of appendix".into(),
            ended_at: ts(NOW_MS / 1000 - 1800),
            rank: 1,
            performer: "dr-house".into(),
        }
    }

    #[test]
    fn diagnoses_are_normalised() {
        let valid = validate(event(Payload::Diagnosis(diagnosis())), &limits()).unwrap();
        assert_eq!(valid.kind, "diagnosis");
        let Some(Payload::Diagnosis(d)) = valid.event.payload else {
            panic!()
        };
        assert_eq!(
            (d.encounter_id.as_str(), d.code.as_str(), d.display.as_str()),
            ("E1", "J18.9", "Pneumonia, unspecified organism")
        );
        // MIMIC-III writes ICD-9-CM without the dot.
        let mimic = pb::Diagnosis {
            code: "4280".into(),
            code_system: pb::CodeSystem::Icd9Cm as i32,
            role: pb::DiagnosisRole::Secondary as i32,
            rank: 2,
            ..diagnosis()
        };
        let Some(Payload::Diagnosis(d)) = validate(event(Payload::Diagnosis(mimic)), &limits())
            .unwrap()
            .event
            .payload
        else {
            panic!()
        };
        assert_eq!(d.code, "428.0");
    }

    #[test]
    fn diagnosis_rules_name_their_fields() {
        let bad = pb::Diagnosis {
            encounter_id: String::new(),
            code_system: pb::CodeSystem::Unspecified as i32,
            role: pb::DiagnosisRole::Principal as i32,
            rank: 2,
            clinical_status: 42,
            // Abated an hour before the onset; recorded tomorrow.
            abated_at: ts(NOW_MS / 1000 - 7200),
            recorded_at: ts(NOW_MS / 1000 + 86_400),
            ..diagnosis()
        };
        let v = validate(event(Payload::Diagnosis(bad)), &limits()).unwrap_err();
        assert_eq!(
            fields(&v),
            vec![
                "diagnosis.encounter_id",
                "diagnosis.code_system",
                "diagnosis.rank",
                "diagnosis.clinical_status",
                "diagnosis.abated_at",
                "diagnosis.recorded_at",
            ]
        );
        assert!(v[0].description.contains("PROBLEM_LIST"), "{}", v[0].description);

        // A problem-list entry needs no encounter; the patient is always required.
        let problem = pb::Diagnosis {
            encounter_id: String::new(),
            role: pb::DiagnosisRole::ProblemList as i32,
            rank: 0,
            ..diagnosis()
        };
        let valid = validate(event(Payload::Diagnosis(problem.clone())), &limits()).expect("a problem-list entry");
        assert_eq!(valid.kind, "diagnosis");
        let mut no_patient = event(Payload::Diagnosis(problem));
        no_patient.patient = None;
        assert_eq!(fields(&validate(no_patient, &limits()).unwrap_err()), vec!["patient"]);
    }

    #[test]
    fn diagnosis_codes_must_fit_their_system() {
        let check = |code: &str, system: pb::CodeSystem| {
            let d = pb::Diagnosis {
                code: code.into(),
                code_system: system as i32,
                ..diagnosis()
            };
            validate(event(Payload::Diagnosis(d)), &limits())
                .err()
                .map(|v| fields(&v).join(","))
        };
        assert_eq!(check("J18.9", pb::CodeSystem::Icd10), None);
        assert_eq!(check("233604007", pb::CodeSystem::SnomedCt), None);
        assert_eq!(check("  ", pb::CodeSystem::SnomedCt).as_deref(), Some("diagnosis.code"));
        assert_eq!(
            check("pneumonia", pb::CodeSystem::SnomedCt).as_deref(),
            Some("diagnosis.code")
        );
        assert_eq!(
            check("J18.9", pb::CodeSystem::Icd9Cm).as_deref(),
            Some("diagnosis.code")
        );
        // CPT codes procedures, not diagnoses; a missing code is reported once.
        assert_eq!(
            check("99213", pb::CodeSystem::Cpt).as_deref(),
            Some("diagnosis.code_system")
        );
        assert_eq!(
            check("", pb::CodeSystem::Cpt).as_deref(),
            Some("diagnosis.code,diagnosis.code_system")
        );
        let unknown = pb::Diagnosis {
            code_system: 99,
            ..diagnosis()
        };
        assert_eq!(
            fields(&validate(event(Payload::Diagnosis(unknown)), &limits()).unwrap_err()),
            vec!["diagnosis.code_system"]
        );
    }

    fn risk_score() -> pb::RiskScore {
        pb::RiskScore {
            encounter_id: "E1".into(),
            model: "deterioration_24h".into(),
            model_version: 3,
            probability: 0.42,
            threshold: 0.3,
            alert: true,
            scored_event_id: "vs-1".into(),
            scored_source_system: "ward-ehr".into(),
            scored_position: 17,
            department_code: "MED".into(),
            ward_code: "W10".into(),
            top_factors: vec![pb::RiskFactor {
                feature: "news2_last".into(),
                value: f64::NAN,
                contribution: 0.8,
            }],
        }
    }

    #[test]
    fn risk_scores_are_checked() {
        let valid = validate(event(Payload::RiskScore(risk_score())), &limits()).unwrap();
        assert_eq!(valid.kind, "risk_score");
        let bad = pb::RiskScore {
            model: "Deterioration 24h".into(),
            model_version: 0,
            probability: f64::NAN,
            threshold: 1.5,
            scored_event_id: String::new(),
            top_factors: vec![pb::RiskFactor {
                feature: String::new(),
                value: f64::INFINITY,
                contribution: f64::NAN,
            }],
            ..risk_score()
        };
        assert_eq!(
            fields(&validate(event(Payload::RiskScore(bad)), &limits()).unwrap_err()),
            vec![
                "risk_score.model",
                "risk_score.model_version",
                "risk_score.probability",
                "risk_score.threshold",
                "risk_score.scored_event_id",
                "risk_score.top_factors[0].feature",
                "risk_score.top_factors[0].contribution",
                "risk_score.top_factors[0].value",
            ]
        );
        let mut no_patient = event(Payload::RiskScore(risk_score()));
        no_patient.patient = None;
        assert_eq!(fields(&validate(no_patient, &limits()).unwrap_err()), vec!["patient"]);
    }

    #[test]
    fn procedures_are_checked_and_normalised() {
        let valid = validate(event(Payload::Procedure(procedure())), &limits()).unwrap();
        assert_eq!(valid.kind, "procedure");
        let Some(Payload::Procedure(p)) = valid.event.payload else {
            panic!()
        };
        assert_eq!(p.code, "0DTJ4ZZ");
        // No encounter is fine (a procedure from the patient's history), and so is no end.
        let history = pb::ProcedurePerformed {
            encounter_id: String::new(),
            code: "80146002".into(),
            code_system: pb::CodeSystem::SnomedCt as i32,
            ended_at: None,
            ..procedure()
        };
        let valid = validate(event(Payload::Procedure(history)), &limits()).expect("a procedure from history");
        assert_eq!(valid.kind, "procedure");

        let bad = pb::ProcedurePerformed {
            code: "J18.9".into(),
            code_system: pb::CodeSystem::Icd10Cm as i32,
            // Ended before it started.
            ended_at: ts(NOW_MS / 1000 - 7200),
            rank: 5000,
            ..procedure()
        };
        assert_eq!(
            fields(&validate(event(Payload::Procedure(bad)), &limits()).unwrap_err()),
            vec!["procedure.code_system", "procedure.ended_at", "procedure.rank"]
        );
        let future = pb::ProcedurePerformed {
            ended_at: ts(NOW_MS / 1000 + 3600),
            code: "9671".into(),
            code_system: pb::CodeSystem::Icd9Cm as i32,
            ..procedure()
        };
        assert_eq!(
            fields(&validate(event(Payload::Procedure(future)), &limits()).unwrap_err()),
            vec!["procedure.ended_at"]
        );
    }

    #[test]
    fn missing_payload_is_named() {
        let mut e = event(vitals(vec![]));
        e.payload = None;
        assert_eq!(fields(&validate(e, &limits()).unwrap_err()), vec!["payload"]);
    }
}
