//! FHIR R4 JSON -> canonical `ClinicalEvent`s: Bundles (transaction, batch, collection)
//! and bulk-export NDJSON.
//!
//! Owns which FHIR element feeds which event field and how references are resolved.
//! Pure: the caller passes the bytes; no I/O, no clock, no validation beyond what the
//! mapping needs (ranges, units and required event fields are the ingest door's job).
//!
//! Rules:
//! - `event_id` = `<resourceType>/<id>`, with `#discharge` (Encounter end) or
//!   `#item<sequence>` (Claim lines) when one resource makes several events; a
//!   blood-pressure panel stays one `VitalSigns` event with one observation per component.
//! - Patient: the `Patient.identifier` whose type is `MR`, else the first identifier,
//!   else the resource id; assigning authority = `identifier.system`.
//! - References: `urn:uuid:` fullUrls, absolute URLs and relative `Type/id` references are
//!   resolved against every resource added to the [`Mapper`] (so a bulk export's
//!   `Patient.ndjson` serves its `Observation.ndjson`). An unresolvable subject is an
//!   error; an unresolvable encounter falls back to the id in the reference.
//! - Deletes (`request.method` DELETE) are not dropped: they are listed in
//!   [`Summary::deletes`] until the proto has a tombstone event.
//! - Condition -> `Diagnosis`: the code of the first coding in ICD-10-CM, ICD-10, SNOMED
//!   CT or ICD-9-CM, in that order (a Condition coded in none of them is skipped);
//!   occurred_at = `onsetDateTime` (or `onsetPeriod.start`), else `recordedDate`. The
//!   role and rank come from an `Encounter.diagnosis` that lists the Condition (`use` AD
//!   admitting, DD/billing principal at rank 1 else secondary, CM secondary), else from
//!   `category` (encounter-diagnosis; problem-list-item or health-concern: problem
//!   list); a Condition with neither category nor encounter is a problem-list entry,
//!   one with an encounter but no category has no role. Refuted and entered-in-error
//!   Conditions are skipped.
//! - Procedure -> `ProcedurePerformed`: the code of the first coding in ICD-10-PCS, CPT,
//!   HCPCS, SNOMED CT or ICD-9-CM; occurred_at = `performedDateTime` or
//!   `performedPeriod.start`, ended_at = `performedPeriod.end`. Procedures not done, in
//!   preparation or entered in error are skipped.
//! - MedicationDispense: at `whenHandedOver` (else `whenPrepared`), against its first
//!   `authorizingPrescription`; cancelled, declined, stopped, in-preparation and
//!   entered-in-error dispenses are skipped.
//! - Resources the platform does not take (Practitioner, unknown types, other
//!   Observation categories) are skipped and counted with a reason; a resource that
//!   cannot be mapped is a [`FhirError`] naming it, and the rest still map.

use std::collections::{BTreeMap, HashMap};

use crate::balance::Balance;

use hospital_proto::events::{
    self as pb, clinical_event::Payload, reference_data::Item, AbnormalFlag, AdministrativeSex, AdmissionType,
    ClinicalEvent, CodeSystem, ConditionStatus, DiagnosisRole, DischargeDisposition, EncounterClass,
};
use prost_types::Timestamp;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const LOINC: &str = "http://loinc.org";
const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
const UCUM: &str = "http://unitsofmeasure.org";
const SNOMED: &str = "http://snomed.info/sct";
const ICD9_CM: &str = "http://hl7.org/fhir/sid/icd-9-cm";

/// Condition code systems by FHIR system URI, in order of preference: a classification
/// first (what the warehouse groups diagnoses by), SNOMED CT next, ICD-9-CM last.
const CONDITION_SYSTEMS: &[(&str, CodeSystem)] = &[
    ("http://hl7.org/fhir/sid/icd-10-cm", CodeSystem::Icd10Cm),
    ("http://hl7.org/fhir/sid/icd-10", CodeSystem::Icd10),
    (SNOMED, CodeSystem::SnomedCt),
    (ICD9_CM, CodeSystem::Icd9Cm),
];

/// Procedure code systems by FHIR system URI (THO), in order of preference.
const PROCEDURE_SYSTEMS: &[(&str, CodeSystem)] = &[
    ("http://www.cms.gov/Medicare/Coding/ICD10", CodeSystem::Icd10Pcs),
    ("http://www.ama-assn.org/go/cpt", CodeSystem::Cpt),
    (
        "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
        CodeSystem::Hcpcs,
    ),
    (
        "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
        CodeSystem::Hcpcs,
    ),
    (SNOMED, CodeSystem::SnomedCt),
    (ICD9_CM, CodeSystem::Icd9Cm),
];

/// Options of the mapping.
#[derive(Debug, Clone)]
pub struct FhirOptions {
    /// The events' `source_system` (one name per configured FHIR server or export).
    pub source_system: String,
}

impl Default for FhirOptions {
    fn default() -> Self {
        Self {
            source_system: "fhir".to_owned(),
        }
    }
}

/// Why an input, a line or a resource could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FhirError {
    /// The input is not JSON (truncated, corrupt); nothing of it was mapped.
    #[error("{input}: invalid JSON at line {line} column {column}: {message}")]
    Json {
        input: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// The input is JSON but not something this module reads (not a Bundle, an entry
    /// without a resource).
    #[error("{input}: {message}")]
    Input { input: String, message: String },
    /// One NDJSON line is unreadable; the other lines still map.
    #[error("{input} line {line}: {message}")]
    Line {
        input: String,
        line: usize,
        message: String,
    },
    /// One resource could not be mapped (`Observation/abc: effectiveDateTime missing`).
    #[error("{resource}: {message}")]
    Resource { resource: String, message: String },
}

/// A deleted resource, kept until the proto has a tombstone event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    pub resource_type: String,
    /// `request.url` of the entry: `Patient/123`, or a conditional `Patient?identifier=..`.
    pub url: String,
    /// The input it came from.
    pub input: String,
}

/// Counts for one resource type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeCounts {
    /// Resources that made at least one event.
    pub mapped: usize,
    /// Resources deliberately not mapped, by reason.
    pub skipped: BTreeMap<String, usize>,
    /// Resources that could not be mapped (details in [`Summary::errors`]).
    pub errors: usize,
    /// DELETE entries.
    pub deleted: usize,
    /// Events made.
    pub events: usize,
}

impl TypeCounts {
    /// All skipped resources of the type, whatever the reason.
    pub fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }
}

/// What a mapping run did: nothing is dropped without being counted here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Per resource type.
    pub by_type: BTreeMap<String, TypeCounts>,
    /// Events per payload kind (`admission`, `discharge`, `vital_signs`, ...).
    pub by_event: BTreeMap<&'static str, usize>,
    /// Charge lines by where their price came from ([`PRICE_OWN`], [`PRICE_EOB`],
    /// [`PRICE_REMAINDER`], [`PRICE_NONE`]); the unpriced ones are listed in
    /// [`Summary::unpriced_charge_lines`].
    pub charge_prices: BTreeMap<&'static str, usize>,
    /// Charge lines that no rule could price (emitted with price 0), with the reason.
    pub unpriced_charge_lines: Vec<UnpricedCharge>,
    pub deletes: Vec<Deleted>,
    pub errors: Vec<FhirError>,
    /// Records read: every Bundle entry (a DELETE included) and every non-blank NDJSON
    /// line (an unreadable one included). A refused Bundle is not in it: its input is
    /// named by the error `add_bundle` returned.
    pub records: usize,
    /// NDJSON lines that are not a FHIR resource (each one of [`Summary::errors`]).
    pub unreadable_lines: usize,
}

/// A charge line priced at 0 because no rule gave it a price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpricedCharge {
    /// `Claim/<id>#item<sequence>`.
    pub charge_id: String,
    pub reason: String,
}

/// The line's own `unitPrice`, or `net` over its quantity.
pub const PRICE_OWN: &str = "the line's unitPrice or net";
/// The `net` or "submitted" adjudication of the same item of the Claim's
/// ExplanationOfBenefit.
pub const PRICE_EOB: &str = "the ExplanationOfBenefit item's submitted amount or net";
/// The Claim total (or its ExplanationOfBenefit's submitted total) less the lines priced
/// otherwise, given to the one unpriced line that is not a diagnosis line.
pub const PRICE_REMAINDER: &str = "the Claim total less its priced lines";
/// A diagnosis line (it has a `diagnosisSequence`) left without a price because the
/// Claim total is carried by its other lines: a charge of 0 by rule.
pub const PRICE_NONE: &str = "no charge: a diagnosis line, the Claim total is on its other lines";

impl Summary {
    /// Where every record went: mapped, not mapped (errors, DELETEs not applied,
    /// unreadable lines), skipped by "<resourceType>: <reason>". Nothing is superseded.
    pub fn balance(&self) -> Balance {
        let mut b = Balance {
            read: self.records as u64,
            not_mapped: self.unreadable_lines as u64,
            ..Default::default()
        };
        for (ty, c) in &self.by_type {
            b.mapped += c.mapped as u64;
            b.not_mapped += (c.errors + c.deleted) as u64;
            for (reason, n) in &c.skipped {
                b.skip(format!("{ty}: {reason}"), *n as u64);
            }
        }
        b
    }
}

impl Summary {
    /// Counts of one resource type (zero when none was seen).
    pub fn of(&self, resource_type: &str) -> TypeCounts {
        self.by_type.get(resource_type).cloned().unwrap_or_default()
    }

    /// Events of one payload kind.
    pub fn events(&self, kind: &str) -> usize {
        self.by_event.get(kind).copied().unwrap_or(0)
    }
}

/// Events and the summary of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapped {
    pub events: Vec<ClinicalEvent>,
    pub summary: Summary,
}

struct Entry {
    full_url: Option<String>,
    resource: Value,
    /// Bundle.timestamp (or Bundle.meta.lastUpdated) of the bundle it came in.
    bundle_time: Option<Timestamp>,
}

/// Collects inputs, then maps them together so references resolve across inputs.
///
/// ```
/// use hospital_sources::fhir::{FhirOptions, Mapper};
/// let mut m = Mapper::new(FhirOptions::default());
/// m.add_ndjson("Patient.ndjson", br#"{"resourceType":"Patient","id":"p1","birthDate":"1970-01-02","meta":{"lastUpdated":"2024-01-01T00:00:00Z"}}"#);
/// let out = m.finish();
/// assert_eq!(out.events.len(), 1);
/// ```
pub struct Mapper {
    opts: FhirOptions,
    entries: Vec<Entry>,
    summary: Summary,
}

/// Maps one Bundle; `Err` only when the bundle itself is unreadable.
pub fn map_bundle(input: &str, bytes: &[u8], opts: &FhirOptions) -> Result<Mapped, FhirError> {
    let mut m = Mapper::new(opts.clone());
    m.add_bundle(input, bytes)?;
    Ok(m.finish())
}

/// Maps one NDJSON file; unreadable lines are errors in the summary.
pub fn map_ndjson(input: &str, bytes: &[u8], opts: &FhirOptions) -> Mapped {
    let mut m = Mapper::new(opts.clone());
    m.add_ndjson(input, bytes);
    m.finish()
}

fn json_error(input: &str, e: &serde_json::Error) -> FhirError {
    FhirError::Json {
        input: input.to_owned(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    }
}

impl Mapper {
    pub fn new(opts: FhirOptions) -> Self {
        Self {
            opts,
            entries: Vec::new(),
            summary: Summary::default(),
        }
    }

    /// Adds a Bundle. An unreadable bundle is refused whole (nothing of it is added).
    pub fn add_bundle(&mut self, input: &str, bytes: &[u8]) -> Result<(), FhirError> {
        let bundle: Value = serde_json::from_slice(bytes).map_err(|e| json_error(input, &e))?;
        let bad = |message: String| FhirError::Input {
            input: input.to_owned(),
            message,
        };
        if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(bad("resourceType is not Bundle".to_owned()));
        }
        let bundle_time = str_at(&bundle, &["timestamp"])
            .or_else(|| str_at(&bundle, &["meta", "lastUpdated"]))
            .and_then(|s| parse_instant(s).ok());
        let entries = match bundle.get("entry") {
            None => return Ok(()),
            Some(Value::Array(a)) => a,
            Some(_) => return Err(bad("entry is not an array".to_owned())),
        };
        let mut added = Vec::with_capacity(entries.len());
        let mut deletes = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let method = str_at(e, &["request", "method"]).unwrap_or_default();
            if method.eq_ignore_ascii_case("DELETE") {
                let url = str_at(e, &["request", "url"]).unwrap_or_default().to_owned();
                let resource_type = url
                    .trim_start_matches('/')
                    .split(['/', '?'])
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                if resource_type.is_empty() {
                    return Err(bad(format!("entry {i}: DELETE without request.url")));
                }
                deletes.push(Deleted {
                    resource_type,
                    url,
                    input: input.to_owned(),
                });
                continue;
            }
            let Some(resource) = e.get("resource").filter(|r| r.is_object()) else {
                return Err(bad(format!("entry {i} has no resource")));
            };
            added.push(Entry {
                full_url: str_at(e, &["fullUrl"]).map(str::to_owned),
                resource: resource.clone(),
                bundle_time,
            });
        }
        self.summary.records += entries.len();
        for d in deletes {
            self.summary.by_type.entry(d.resource_type.clone()).or_default().deleted += 1;
            self.summary.deletes.push(d);
        }
        self.entries.extend(added);
        Ok(())
    }

    /// Adds a bulk-export NDJSON file: one resource per line; blank lines are ignored and
    /// an unreadable line is an error naming it while the others are added.
    pub fn add_ndjson(&mut self, input: &str, bytes: &[u8]) {
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let err = |message: String| FhirError::Line {
                input: input.to_owned(),
                line: i + 1,
                message,
            };
            self.summary.records += 1;
            let unreadable = match serde_json::from_slice::<Value>(line) {
                Ok(v) if v.get("resourceType").and_then(Value::as_str).is_some() => {
                    self.entries.push(Entry {
                        full_url: None,
                        resource: v,
                        bundle_time: None,
                    });
                    continue;
                }
                Ok(_) => err("not a FHIR resource (no resourceType)".to_owned()),
                Err(e) => err(e.to_string()),
            };
            self.summary.unreadable_lines += 1;
            self.summary.errors.push(unreadable);
        }
    }

    /// Maps everything added, in input order.
    pub fn finish(self) -> Mapped {
        let Mapper {
            opts,
            entries,
            mut summary,
        } = self;
        let ctx = Ctx::new(&entries);
        let mut events = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let r = &entry.resource;
            let ty = str_at(r, &["resourceType"]).unwrap_or("(none)").to_owned();
            let counts = summary.by_type.entry(ty.clone()).or_default();
            let Some(id) = ctx.id_of(i) else {
                counts.errors += 1;
                summary.errors.push(FhirError::Resource {
                    resource: ty,
                    message: "neither id nor urn:uuid fullUrl".to_owned(),
                });
                continue;
            };
            let name = format!("{ty}/{id}");
            match ctx.map(i, &ty) {
                Ok(Outcome::Skipped(reason)) => *counts.skipped.entry(reason).or_default() += 1,
                Ok(Outcome::Events(list)) => {
                    counts.mapped += 1;
                    counts.events += list.len();
                    for ev in list {
                        *summary.by_event.entry(ev.payload.kind()).or_default() += 1;
                        if let Some(price) = ev.price {
                            let source = match price {
                                Ok(source) => source,
                                Err(reason) => {
                                    summary.unpriced_charge_lines.push(UnpricedCharge {
                                        charge_id: format!("{name}{}", ev.suffix),
                                        reason,
                                    });
                                    "unpriced"
                                }
                            };
                            *summary.charge_prices.entry(source).or_default() += 1;
                        }
                        events.push(ClinicalEvent {
                            event_id: format!("{name}{}", ev.suffix),
                            source_system: opts.source_system.clone(),
                            occurred_at: Some(ev.at),
                            patient: ev.patient,
                            payload: Some(ev.payload),
                        });
                    }
                }
                Err(message) => {
                    counts.errors += 1;
                    summary.errors.push(FhirError::Resource {
                        resource: name,
                        message,
                    });
                }
            }
        }
        Mapped { events, summary }
    }
}

struct Event {
    suffix: String,
    payload: Payload,
    at: Timestamp,
    patient: Option<pb::PatientRef>,
    /// For a charge line: where its price came from, or why it has none.
    price: Option<Result<&'static str, String>>,
}

impl Event {
    fn new(payload: Payload, at: Timestamp, patient: Option<pb::PatientRef>) -> Self {
        Self {
            suffix: String::new(),
            payload,
            at,
            patient,
            price: None,
        }
    }
}

enum Outcome {
    Events(Vec<Event>),
    Skipped(String),
}

type Res<T> = Result<T, String>;

/// The resolved view of every added resource.
struct Ctx<'a> {
    entries: &'a [Entry],
    /// fullUrl and `Type/id` -> entry index.
    index: HashMap<String, usize>,
    /// Patient entry -> earliest Encounter.period.start (registration time fallback).
    first_encounter: HashMap<usize, Timestamp>,
    /// Observation entry -> id of the DiagnosticReport that lists it.
    report_of: HashMap<usize, String>,
    /// Condition entry -> the first `Encounter.diagnosis` that lists it.
    diagnosis_of: HashMap<usize, EncounterDiagnosis<'a>>,
    /// Claim entry -> the first ExplanationOfBenefit of it.
    eob_of: HashMap<usize, usize>,
}

/// What an `Encounter.diagnosis` says about a Condition.
#[derive(Clone, Copy)]
struct EncounterDiagnosis<'a> {
    /// `use` (hl7.org/fhir/diagnosis-role): AD, DD, CC, CM, pre-op, post-op, billing.
    role: Option<&'a str>,
    rank: u32,
}

impl<'a> Ctx<'a> {
    fn new(entries: &'a [Entry]) -> Self {
        let mut ctx = Self {
            entries,
            index: HashMap::new(),
            first_encounter: HashMap::new(),
            report_of: HashMap::new(),
            diagnosis_of: HashMap::new(),
            eob_of: HashMap::new(),
        };
        for (i, e) in entries.iter().enumerate() {
            if let Some(u) = &e.full_url {
                ctx.index.entry(u.clone()).or_insert(i);
            }
            if let (Some(ty), Some(id)) = (str_at(&e.resource, &["resourceType"]), ctx.id_of(i)) {
                ctx.index.entry(format!("{ty}/{id}")).or_insert(i);
            }
        }
        for (i, e) in entries.iter().enumerate() {
            let r = &e.resource;
            match str_at(r, &["resourceType"]) {
                Some("Encounter") => {
                    let start = str_at(r, &["period", "start"]).and_then(|s| parse_instant(s).ok());
                    let patient = ctx.resolve(r.get("subject"), Some("Patient"));
                    if let (Some(t), Some(p)) = (start, patient) {
                        let slot = ctx.first_encounter.entry(p).or_insert(t);
                        if (t.seconds, t.nanos) < (slot.seconds, slot.nanos) {
                            *slot = t;
                        }
                    }
                    for d in array(r, "diagnosis") {
                        if let Some(c) = ctx.resolve(d.get("condition"), Some("Condition")) {
                            ctx.diagnosis_of.entry(c).or_insert(EncounterDiagnosis {
                                role: code_prefer(d.get("use"), ""),
                                rank: d
                                    .get("rank")
                                    .and_then(Value::as_u64)
                                    .and_then(|n| u32::try_from(n).ok())
                                    .unwrap_or(0),
                            });
                        }
                    }
                }
                Some("ExplanationOfBenefit") => {
                    if let Some(c) = ctx.resolve(r.get("claim"), Some("Claim")) {
                        ctx.eob_of.entry(c).or_insert(i);
                    }
                }
                Some("DiagnosticReport") => {
                    let Some(id) = ctx.id_of(i) else { continue };
                    for res in array(r, "result") {
                        if let Some(o) = ctx.resolve(Some(res), Some("Observation")) {
                            ctx.report_of.entry(o).or_insert_with(|| id.to_owned());
                        }
                    }
                }
                _ => {}
            }
        }
        ctx
    }

    /// `Resource.id`, else the uuid of a `urn:uuid:` fullUrl.
    fn id_of(&self, i: usize) -> Option<&'a str> {
        let e = self.entries.get(i)?;
        str_at(&e.resource, &["id"])
            .filter(|s| !s.is_empty())
            .or_else(|| e.full_url.as_deref().and_then(|u| u.strip_prefix("urn:uuid:")))
    }

    /// Resolves a Reference to an entry index, checking the type when `ty` is given.
    fn resolve(&self, reference: Option<&Value>, ty: Option<&str>) -> Option<usize> {
        let r = reference?.get("reference")?.as_str()?;
        let i = self
            .index
            .get(r)
            .copied()
            .or_else(|| relative(r).and_then(|rel| self.index.get(&rel).copied()))?;
        let found = str_at(&self.entries.get(i)?.resource, &["resourceType"]);
        (ty.is_none() || found == ty).then_some(i)
    }

    fn resource(&self, i: usize) -> &'a Value {
        &self.entries[i].resource
    }

    /// The patient a resource is about, from the Reference in `field`.
    fn patient(&self, r: &Value, field: &str) -> Res<pb::PatientRef> {
        let reference = r.get(field).ok_or_else(|| format!("{field} missing"))?;
        if let Some(i) = self.resolve(Some(reference), Some("Patient")) {
            return Ok(patient_ref(self.resource(i), self.id_of(i).unwrap_or_default()));
        }
        // A logical reference (Reference.identifier) needs no lookup.
        if let Some(value) = str_at(reference, &["identifier", "value"]) {
            return Ok(pb::PatientRef {
                mrn: value.to_owned(),
                assigning_authority: str_at(reference, &["identifier", "system"])
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
        match str_at(reference, &["reference"]) {
            Some(r) => Err(format!("{field} {r} is not a Patient in the input")),
            None => Err(format!("{field}.reference missing")),
        }
    }

    /// The encounter id a Reference points at: the Encounter's id, else the id written in
    /// the reference (ids are what Admission.encounter_id carries).
    fn encounter_id(&self, reference: Option<&Value>) -> String {
        if let Some(i) = self.resolve(reference, Some("Encounter")) {
            return self.id_of(i).unwrap_or_default().to_owned();
        }
        reference
            .and_then(|r| str_at(r, &["reference"]))
            .map(ref_id)
            .unwrap_or_default()
            .to_owned()
    }

    /// A code for a referenced Organization/Location/Practitioner: its first identifier,
    /// else its id; unresolved: the id in the reference, else the display.
    fn code_of(&self, reference: Option<&Value>) -> Option<String> {
        let reference = reference?;
        if let Some(i) = self.resolve(Some(reference), None) {
            let r = self.resource(i);
            return Some(resource_code(r, self.id_of(i).unwrap_or_default()));
        }
        str_at(reference, &["reference"])
            .map(ref_id)
            .or_else(|| str_at(reference, &["display"]))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }

    fn map(&self, i: usize, ty: &str) -> Res<Outcome> {
        let r = self.resource(i);
        match ty {
            "Patient" => self.patient_resource(i, r),
            "Encounter" => self.encounter(r),
            "Observation" => self.observation(i, r),
            "MedicationRequest" => self.medication_request(r),
            "MedicationAdministration" => self.medication_administration(r),
            "MedicationDispense" => self.medication_dispense(r),
            "Claim" | "ExplanationOfBenefit" => self.claim(i, r, ty),
            "Organization" => self.organization(i, r),
            "Coverage" => self.coverage(r),
            "Location" => self.location(i, r),
            "Condition" => self.condition(i, r),
            "Procedure" => self.procedure(r),
            other => Ok(Outcome::Skipped(format!("{other} is not mapped"))),
        }
    }

    fn patient_resource(&self, i: usize, r: &Value) -> Res<Outcome> {
        let at = match meta_time(r)? {
            Some(t) => t,
            None => self.entries[i]
                .bundle_time
                .or_else(|| self.first_encounter.get(&i).copied())
                .ok_or("meta.lastUpdated missing (and no Bundle.timestamp or Encounter to date the registration)")?,
        };
        let name = array(r, "name")
            .find(|n| str_at(n, &["use"]) == Some("official"))
            .or_else(|| array(r, "name").next());
        let given = name
            .map(|n| {
                array(n, "given")
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let address = array(r, "address")
            .find(|a| str_at(a, &["use"]) == Some("home"))
            .or_else(|| array(r, "address").next());
        let birth_date = match str_at(r, &["birthDate"]) {
            Some(s) => Some(parse_date(s).ok_or_else(|| format!("birthDate {s:?} is not a date"))?),
            None => None,
        };
        let deceased_at = match str_at(r, &["deceasedDateTime"]) {
            Some(s) => Some(parse_instant(s).map_err(|e| format!("deceasedDateTime {s:?} {e}"))?),
            None => None,
        };
        let sex = match str_at(r, &["gender"]) {
            Some("female") => AdministrativeSex::Female,
            Some("male") => AdministrativeSex::Male,
            Some("other") => AdministrativeSex::Other,
            Some("unknown") => AdministrativeSex::Unknown,
            _ => AdministrativeSex::Unspecified,
        };
        let demographics = pb::PatientDemographics {
            given_name: given,
            family_name: name.and_then(|n| str_at(n, &["family"])).unwrap_or_default().to_owned(),
            birth_date,
            sex: sex as i32,
            postal_code: address
                .and_then(|a| str_at(a, &["postalCode"]))
                .unwrap_or_default()
                .to_owned(),
            deceased_at,
        };
        let patient = patient_ref(r, self.id_of(i).unwrap_or_default());
        Ok(Outcome::Events(vec![Event::new(
            Payload::PatientRegistered(demographics),
            at,
            Some(patient),
        )]))
    }

    fn encounter(&self, r: &Value) -> Res<Outcome> {
        let patient = self.patient(r, "subject")?;
        let start = time_field(r, &["period", "start"], "period.start")?.ok_or("period.start missing")?;
        let end = time_field(r, &["period", "end"], "period.end")?;
        let class = str_at(r, &["class", "code"]).ok_or("class.code missing")?;
        // v3 ActEncounterCode.
        let encounter_class = match class {
            "IMP" | "ACUTE" | "NONAC" => EncounterClass::Inpatient,
            "EMER" => EncounterClass::Emergency,
            "AMB" | "HH" | "VR" | "FLD" => EncounterClass::Outpatient,
            "OBSENC" => EncounterClass::Observation,
            "SS" => EncounterClass::DayCase,
            other => {
                return Err(format!(
                    "class.code {other:?} is not an encounter class (IMP, ACUTE, NONAC, EMER, AMB, HH, VR, FLD, OBSENC, SS)"
                ))
            }
        };
        let admission_type = match (
            code_prefer(r.get("priority"), ""),
            code_prefer(str_path(r, &["hospitalization", "admitSource"]), ""),
        ) {
            (_, Some("born")) => AdmissionType::Newborn,
            (_, Some("hosp-trans")) => AdmissionType::TransferIn,
            (Some("EM"), _) => AdmissionType::Emergency,
            (Some("UR"), _) => AdmissionType::Urgent,
            (Some("EL"), _) => AdmissionType::Elective,
            _ if encounter_class == EncounterClass::Emergency => AdmissionType::Emergency,
            _ => AdmissionType::Unspecified,
        };
        let ward = array(r, "location")
            .next()
            .and_then(|l| self.code_of(l.get("location")));
        let department = self.code_of(r.get("serviceProvider"));
        let location = (ward.is_some() || department.is_some()).then(|| pb::Location {
            department_code: department.unwrap_or_default(),
            ward_code: ward.unwrap_or_default(),
            bed_code: String::new(),
        });
        let attending = array(r, "participant")
            .find(|p| array(p, "type").any(|t| code_prefer(Some(t), "") == Some("ATND")))
            .or_else(|| array(r, "participant").next())
            .and_then(|p| self.code_of(p.get("individual")))
            .unwrap_or_default();
        let encounter_id = str_at(r, &["id"]).unwrap_or_default().to_owned();
        let mut events = vec![Event::new(
            Payload::Admission(pb::Admission {
                encounter_id: encounter_id.clone(),
                encounter_class: encounter_class as i32,
                admission_type: admission_type as i32,
                location,
                attending_practitioner: attending,
                payer_code: String::new(),
                admitting_diagnosis: String::new(),
            }),
            start,
            Some(patient.clone()),
        )];
        if let Some(end) = end {
            let disposition = disposition(code_prefer(
                str_path(r, &["hospitalization", "dischargeDisposition"]),
                "",
            ));
            let mut e = Event::new(
                Payload::Discharge(pb::Discharge {
                    encounter_id,
                    disposition: disposition as i32,
                }),
                end,
                Some(patient),
            );
            e.suffix = "#discharge".to_owned();
            events.push(e);
        }
        Ok(Outcome::Events(events))
    }

    fn observation(&self, i: usize, r: &Value) -> Res<Outcome> {
        let categories: Vec<&str> = array(r, "category")
            .flat_map(|c| array(c, "coding"))
            .filter_map(|c| str_at(c, &["code"]))
            .collect();
        let vital = categories.contains(&"vital-signs");
        let lab = categories.contains(&"laboratory");
        if !vital && !lab {
            return Ok(Outcome::Skipped(if categories.is_empty() {
                "Observation without category".to_owned()
            } else {
                format!("Observation category {}", categories.join(","))
            }));
        }
        let patient = self.patient(r, "subject")?;
        let encounter_id = self.encounter_id(r.get("encounter"));
        let effective = match time_field(r, &["effectiveDateTime"], "effectiveDateTime")? {
            Some(t) => Some(t),
            None => time_field(r, &["effectivePeriod", "start"], "effectivePeriod.start")?,
        };
        if vital {
            let at = match effective {
                Some(t) => t,
                None => time_field(r, &["issued"], "issued")?.ok_or("effectiveDateTime missing")?,
            };
            let mut observations = Vec::new();
            for c in array(r, "component") {
                if let Some(o) = quantity_observation(c) {
                    observations.push(o);
                }
            }
            if observations.is_empty() {
                observations.extend(quantity_observation(r));
            }
            if observations.is_empty() {
                return Err("no valueQuantity (nor component valueQuantity) with a LOINC code".to_owned());
            }
            let payload = Payload::VitalSigns(pb::VitalSigns {
                encounter_id,
                observations,
                ..Default::default()
            });
            return Ok(Outcome::Events(vec![Event::new(payload, at, Some(patient))]));
        }
        let at = match time_field(r, &["issued"], "issued")? {
            Some(t) => t,
            None => effective.ok_or("issued and effectiveDateTime missing")?,
        };
        let code = code_prefer(r.get("code"), LOINC).ok_or("code.coding missing")?;
        let quantity = r.get("valueQuantity");
        let value_text = str_at(r, &["valueString"])
            .or_else(|| str_at(r, &["valueCodeableConcept", "text"]))
            .or_else(|| r.get("valueCodeableConcept").and_then(|cc| display(Some(cc))))
            .unwrap_or_default()
            .to_owned();
        let value = quantity.and_then(|q| q.get("value")).and_then(Value::as_f64);
        if value.is_none() && value_text.is_empty() {
            return Err("no valueQuantity, valueString or valueCodeableConcept".to_owned());
        }
        let range = array(r, "referenceRange").next();
        let order_id = array(r, "basedOn")
            .next()
            .and_then(|b| str_at(b, &["reference"]))
            .map(|s| ref_id(s).to_owned())
            .or_else(|| self.report_of.get(&i).cloned())
            .unwrap_or_default();
        let payload = Payload::LabResult(pb::LabResult {
            encounter_id,
            order_id,
            loinc_code: code.to_owned(),
            display: str_at(r, &["code", "text"])
                .or_else(|| display(r.get("code")))
                .unwrap_or_default()
                .to_owned(),
            value,
            value_text,
            unit: quantity.map(ucum_unit).unwrap_or_default(),
            reference_low: range
                .and_then(|x| x.get("low"))
                .and_then(|x| x.get("value"))
                .and_then(Value::as_f64),
            reference_high: range
                .and_then(|x| x.get("high"))
                .and_then(|x| x.get("value"))
                .and_then(Value::as_f64),
            abnormal_flag: abnormal_flag(array(r, "interpretation").next()) as i32,
            specimen_collected_at: effective,
            ..Default::default()
        });
        Ok(Outcome::Events(vec![Event::new(payload, at, Some(patient))]))
    }

    /// The drug of a medication[x]: a CodeableConcept, or a reference to a Medication.
    fn drug(&self, r: &Value) -> Res<(String, String)> {
        let concept = match r.get("medicationCodeableConcept") {
            Some(cc) => cc,
            None => {
                let i = self
                    .resolve(r.get("medicationReference"), Some("Medication"))
                    .ok_or("medicationCodeableConcept missing and medicationReference not in the input")?;
                self.resource(i)
                    .get("code")
                    .ok_or("referenced Medication has no code")?
            }
        };
        let code = code_prefer(Some(concept), RXNORM).ok_or("medication coding missing")?;
        let name = str_at(concept, &["text"])
            .or_else(|| display(Some(concept)))
            .unwrap_or_default();
        Ok((code.to_owned(), name.to_owned()))
    }

    fn medication_request(&self, r: &Value) -> Res<Outcome> {
        let patient = self.patient(r, "subject")?;
        let at = time_field(r, &["authoredOn"], "authoredOn")?.ok_or("authoredOn missing")?;
        let (drug_code, drug_name) = self.drug(r)?;
        let dosage = array(r, "dosageInstruction").next();
        let dose = dosage
            .and_then(|d| array(d, "doseAndRate").next())
            .and_then(|d| d.get("doseQuantity"));
        let frequency = dosage
            .and_then(|d| {
                str_at(d, &["timing", "code", "text"]).map(str::to_owned).or_else(|| {
                    let rep = str_path(d, &["timing", "repeat"])?;
                    let f = rep.get("frequency")?.as_u64()?;
                    let p = rep.get("period")?.as_f64()?;
                    let u = str_at(rep, &["periodUnit"])?;
                    Some(format!("{f}/{p}{u}"))
                })
            })
            .unwrap_or_default();
        let ends_at = time_field(r, &["dispenseRequest", "validityPeriod", "end"], "validityPeriod.end")?;
        let payload = Payload::MedicationOrder(pb::MedicationOrder {
            order_id: str_at(r, &["id"]).unwrap_or_default().to_owned(),
            encounter_id: self.encounter_id(r.get("encounter")),
            drug_code,
            drug_name,
            dose_value: dose.and_then(|q| q.get("value")).and_then(Value::as_f64).unwrap_or(0.0),
            dose_unit: dose.map(dose_unit).unwrap_or_default(),
            route: dosage
                .and_then(|d| display(d.get("route")))
                .unwrap_or_default()
                .to_owned(),
            frequency,
            starts_at: Some(at),
            ends_at,
        });
        Ok(Outcome::Events(vec![Event::new(payload, at, Some(patient))]))
    }

    fn medication_administration(&self, r: &Value) -> Res<Outcome> {
        let patient = self.patient(r, "subject")?;
        let at = match time_field(r, &["effectiveDateTime"], "effectiveDateTime")? {
            Some(t) => t,
            None => time_field(r, &["effectivePeriod", "start"], "effectivePeriod.start")?
                .ok_or("effectiveDateTime missing")?,
        };
        let (drug_code, _) = self.drug(r)?;
        let dose = str_path(r, &["dosage", "dose"]);
        let payload = Payload::MedicationAdministration(pb::MedicationEvent {
            order_id: str_at(r, &["request", "reference"])
                .map(ref_id)
                .unwrap_or_default()
                .to_owned(),
            // R4 calls it `context`; R5 renamed it `encounter`.
            encounter_id: self.encounter_id(r.get("context").or_else(|| r.get("encounter"))),
            drug_code,
            dose_value: dose.and_then(|q| q.get("value")).and_then(Value::as_f64).unwrap_or(0.0),
            dose_unit: dose.map(dose_unit).unwrap_or_default(),
            route: display(str_path(r, &["dosage", "route"]))
                .unwrap_or_default()
                .to_owned(),
        });
        Ok(Outcome::Events(vec![Event::new(payload, at, Some(patient))]))
    }

    /// MedicationDispense: handed over (`whenHandedOver`, else `whenPrepared`), against
    /// its first `authorizingPrescription`; dose and route from the first
    /// `dosageInstruction`. Dispenses not (yet) made are not events.
    fn medication_dispense(&self, r: &Value) -> Res<Outcome> {
        if let Some(status @ ("preparation" | "cancelled" | "declined" | "entered-in-error" | "stopped")) =
            str_at(r, &["status"])
        {
            return Ok(Outcome::Skipped(format!("MedicationDispense status {status}")));
        }
        let patient = self.patient(r, "subject")?;
        let at = match time_field(r, &["whenHandedOver"], "whenHandedOver")? {
            Some(t) => t,
            None => time_field(r, &["whenPrepared"], "whenPrepared")?.ok_or("whenHandedOver missing")?,
        };
        let (drug_code, _) = self.drug(r)?;
        let instruction = array(r, "dosageInstruction").next();
        let dose = instruction
            .and_then(|d| array(d, "doseAndRate").next())
            .and_then(|d| d.get("doseQuantity"));
        let payload = Payload::MedicationDispense(pb::MedicationEvent {
            order_id: array(r, "authorizingPrescription")
                .next()
                .and_then(|p| str_at(p, &["reference"]))
                .map(ref_id)
                .unwrap_or_default()
                .to_owned(),
            encounter_id: self.encounter_id(r.get("context")),
            drug_code,
            dose_value: dose.and_then(|q| q.get("value")).and_then(Value::as_f64).unwrap_or(0.0),
            dose_unit: dose.map(dose_unit).unwrap_or_default(),
            route: display(instruction.and_then(|d| d.get("route")))
                .unwrap_or_default()
                .to_owned(),
        });
        Ok(Outcome::Events(vec![Event::new(payload, at, Some(patient))]))
    }

    /// Claim and ExplanationOfBenefit: one ChargeLine per item. An EOB whose Claim is in
    /// the input is skipped (its lines would count the same charges twice); it prices
    /// the Claim's lines instead.
    ///
    /// A line's price, first that applies: its own `unitPrice` (or `net` over its
    /// quantity); the same item (by `sequence`) of the Claim's ExplanationOfBenefit, its
    /// "submitted" adjudication or `net`; the remainder of the Claim total (else the
    /// EOB's "submitted" total) once the lines priced so far are taken off, given to the
    /// one unpriced line that is not a diagnosis line (a `diagnosisSequence`): the
    /// encounter line of a Synthea claim, or the only line of a pharmacy claim. The
    /// diagnosis lines beside it stay at 0 ([`PRICE_NONE`]). Lines that none of this
    /// prices (no total, several candidate lines, priced lines above the total, another
    /// currency) are emitted at 0 and listed in [`Summary::unpriced_charge_lines`].
    fn claim(&self, i: usize, r: &Value, ty: &str) -> Res<Outcome> {
        if ty == "ExplanationOfBenefit" && self.resolve(r.get("claim"), Some("Claim")).is_some() {
            return Ok(Outcome::Skipped(
                "ExplanationOfBenefit of a Claim in the input".to_owned(),
            ));
        }
        // The adjudication of the lines: the Claim's EOB, or the EOB itself.
        let eob = match ty {
            "Claim" => self.eob_of.get(&i).map(|e| self.resource(*e)),
            _ => Some(r),
        };
        let patient = self.patient(r, "patient")?;
        let claim_time = match time_field(r, &["billablePeriod", "start"], "billablePeriod.start")? {
            Some(t) => Some(t),
            None => time_field(r, &["created"], "created")?,
        };
        let insurance = array(r, "insurance")
            .find(|i| i.get("focal").and_then(Value::as_bool) == Some(true))
            .or_else(|| array(r, "insurance").next());
        let payer_code = insurance
            .and_then(|ins| {
                let cov = ins.get("coverage")?;
                match self.resolve(Some(cov), Some("Coverage")) {
                    Some(c) => array(self.resource(c), "payor")
                        .next()
                        .and_then(|p| self.code_of(Some(p))),
                    None => str_at(cov, &["display"]).map(str::to_owned),
                }
            })
            .or_else(|| self.code_of(r.get("insurer")))
            .unwrap_or_default();
        let total = claim_total(r).or_else(|| eob.and_then(claim_total));
        let claim_currency = total.and_then(|(_, c)| c);
        let claim_encounter = array(r, "item").find_map(|it| array(it, "encounter").next());
        let mut lines = Vec::new();
        for (n, item) in array(r, "item").enumerate() {
            let seq = item.get("sequence").and_then(Value::as_u64).map_or(n as u64 + 1, |s| s);
            let at = match time_field(item, &["servicedDate"], "item.servicedDate")? {
                Some(t) => t,
                None => time_field(item, &["servicedPeriod", "start"], "item.servicedPeriod.start")?
                    .or(claim_time)
                    .ok_or("billablePeriod.start and created missing")?,
            };
            let concept = item.get("productOrService");
            let code = code_prefer(concept, "").ok_or_else(|| format!("item {seq}: productOrService missing"))?;
            let quantity = str_path(item, &["quantity", "value"])
                .and_then(Value::as_f64)
                .unwrap_or(1.0);
            let own = str_path(item, &["unitPrice", "value"])
                .and_then(Value::as_f64)
                .map(|p| (p, str_at(item, &["unitPrice", "currency"])))
                .or_else(|| {
                    let net = str_path(item, &["net", "value"]).and_then(Value::as_f64)?;
                    (quantity != 0.0).then(|| (net / quantity, str_at(item, &["net", "currency"])))
                });
            let adjudicated = || {
                let (amount, currency) = eob_line_amount(eob?, seq)?;
                (quantity != 0.0).then(|| (amount / quantity, currency))
            };
            let (unit_price, price) = match own {
                Some(p) => (Some(p), Ok(PRICE_OWN)),
                None => match adjudicated() {
                    Some(p) => (Some(p), Ok(PRICE_EOB)),
                    None => (None, Err(String::new())),
                },
            };
            let currency = unit_price.and_then(|(_, c)| c).or(claim_currency).unwrap_or_default();
            let encounter = array(item, "encounter").next().or(claim_encounter);
            lines.push(ClaimLine {
                seq,
                at,
                code,
                description: concept
                    .and_then(|c| str_at(c, &["text"]).or_else(|| display(Some(c))))
                    .unwrap_or_default(),
                quantity,
                unit_price_minor: unit_price.map(|(p, _)| minor_units(p, currency)),
                currency,
                encounter_id: self.encounter_id(encounter),
                diagnosis_line: array(item, "diagnosisSequence").next().is_some(),
                price,
            });
        }
        if lines.is_empty() {
            return Ok(Outcome::Skipped(format!("{ty} without items")));
        }
        price_from_total(&mut lines, total);
        let id = str_at(r, &["id"]).unwrap_or_default();
        let events = lines
            .into_iter()
            .map(|l| {
                let mut e = Event::new(
                    Payload::ChargeLine(pb::ChargeLine {
                        charge_id: format!("{ty}/{id}#item{}", l.seq),
                        encounter_id: l.encounter_id,
                        code: l.code.to_owned(),
                        description: l.description.to_owned(),
                        quantity: l.quantity,
                        unit_price_minor: l.unit_price_minor.unwrap_or(0),
                        currency: l.currency.to_owned(),
                        payer_code: payer_code.clone(),
                    }),
                    l.at,
                    Some(patient.clone()),
                );
                e.suffix = format!("#item{}", l.seq);
                e.price = Some(l.price);
                e
            })
            .collect();
        Ok(Outcome::Events(events))
    }

    fn condition(&self, i: usize, r: &Value) -> Res<Outcome> {
        match code_prefer(r.get("verificationStatus"), "") {
            Some("entered-in-error") => return Ok(Outcome::Skipped("Condition entered in error".to_owned())),
            Some("refuted") => return Ok(Outcome::Skipped("Condition refuted".to_owned())),
            _ => {}
        }
        let Some((code_system, code, name)) = coded(r.get("code"), CONDITION_SYSTEMS)? else {
            return Ok(Outcome::Skipped(
                "Condition coded in none of ICD-10-CM, ICD-10, SNOMED CT, ICD-9-CM".to_owned(),
            ));
        };
        let patient = self.patient(r, "subject")?;
        // R4 calls it `encounter`; STU3 called it `context`.
        let encounter = r.get("encounter").or_else(|| r.get("context"));
        let recorded_at = time_field(r, &["recordedDate"], "recordedDate")?;
        let onset = match time_field(r, &["onsetDateTime"], "onsetDateTime")? {
            Some(t) => Some(t),
            None => time_field(r, &["onsetPeriod", "start"], "onsetPeriod.start")?,
        };
        let at = onset.or(recorded_at).ok_or("onsetDateTime and recordedDate missing")?;
        let abated_at = match time_field(r, &["abatementDateTime"], "abatementDateTime")? {
            Some(t) => Some(t),
            None => time_field(r, &["abatementPeriod", "start"], "abatementPeriod.start")?,
        };
        let listed = self.diagnosis_of.get(&i);
        let categories: Vec<&str> = array(r, "category")
            .flat_map(|c| array(c, "coding"))
            .filter_map(|c| str_at(c, &["code"]))
            .collect();
        let role = match (listed.and_then(|d| d.role), listed.map_or(0, |d| d.rank)) {
            (Some("AD"), _) => DiagnosisRole::Admitting,
            (Some("DD" | "billing"), 1) => DiagnosisRole::Principal,
            (Some("DD" | "billing" | "CM"), _) => DiagnosisRole::Secondary,
            _ if categories.contains(&"encounter-diagnosis") => DiagnosisRole::Encounter,
            _ if categories.contains(&"problem-list-item") || categories.contains(&"health-concern") => {
                DiagnosisRole::ProblemList
            }
            _ if listed.is_some() => DiagnosisRole::Encounter,
            _ if encounter.is_none() => DiagnosisRole::ProblemList,
            _ => DiagnosisRole::Unspecified,
        };
        let clinical_status = match code_prefer(r.get("clinicalStatus"), "") {
            Some("active") => ConditionStatus::Active,
            Some("recurrence") => ConditionStatus::Recurrence,
            Some("relapse") => ConditionStatus::Relapse,
            Some("inactive") => ConditionStatus::Inactive,
            Some("remission") => ConditionStatus::Remission,
            Some("resolved") => ConditionStatus::Resolved,
            _ => ConditionStatus::Unspecified,
        };
        let payload = Payload::Diagnosis(pb::Diagnosis {
            encounter_id: self.encounter_id(encounter),
            code: code.to_owned(),
            code_system: code_system as i32,
            display: name.unwrap_or_default().to_owned(),
            role: role as i32,
            rank: listed.map_or(0, |d| d.rank),
            clinical_status: clinical_status as i32,
            abated_at,
            recorded_at,
        });
        Ok(Outcome::Events(vec![Event::new(payload, at, Some(patient))]))
    }

    fn procedure(&self, r: &Value) -> Res<Outcome> {
        if let Some(status @ ("not-done" | "entered-in-error" | "preparation")) = str_at(r, &["status"]) {
            return Ok(Outcome::Skipped(format!("Procedure status {status}")));
        }
        let Some((code_system, code, name)) = coded(r.get("code"), PROCEDURE_SYSTEMS)? else {
            return Ok(Outcome::Skipped(
                "Procedure coded in none of ICD-10-PCS, CPT, HCPCS, SNOMED CT, ICD-9-CM".to_owned(),
            ));
        };
        let patient = self.patient(r, "subject")?;
        let at = match time_field(r, &["performedDateTime"], "performedDateTime")? {
            Some(t) => t,
            None => time_field(r, &["performedPeriod", "start"], "performedPeriod.start")?
                .ok_or("performedDateTime and performedPeriod.start missing")?,
        };
        let payload = Payload::Procedure(pb::ProcedurePerformed {
            encounter_id: self.encounter_id(r.get("encounter").or_else(|| r.get("context"))),
            code: code.to_owned(),
            code_system: code_system as i32,
            display: name.unwrap_or_default().to_owned(),
            ended_at: time_field(r, &["performedPeriod", "end"], "performedPeriod.end")?,
            rank: 0,
            performer: array(r, "performer")
                .next()
                .and_then(|p| self.code_of(p.get("actor")))
                .unwrap_or_default(),
        });
        Ok(Outcome::Events(vec![Event::new(payload, at, Some(patient))]))
    }

    fn reference_data(&self, r: &Value, item: Item) -> Res<Outcome> {
        let at = meta_time(r)?.ok_or("meta.lastUpdated missing")?;
        let payload = Payload::ReferenceData(pb::ReferenceData { item: Some(item) });
        Ok(Outcome::Events(vec![Event::new(payload, at, None)]))
    }

    fn organization(&self, i: usize, r: &Value) -> Res<Outcome> {
        let types: Vec<&str> = array(r, "type")
            .flat_map(|t| array(t, "coding"))
            .filter_map(|c| str_at(c, &["code"]))
            .collect();
        if !types.contains(&"pay") {
            return Ok(Outcome::Skipped("Organization is not a payer".to_owned()));
        }
        self.reference_data(
            r,
            Item::Payer(pb::Payer {
                code: resource_code(r, self.id_of(i).unwrap_or_default()),
                name: str_at(r, &["name"]).unwrap_or_default().to_owned(),
                payer_type: String::new(),
            }),
        )
    }

    fn coverage(&self, r: &Value) -> Res<Outcome> {
        let payor = array(r, "payor").next().ok_or("payor missing")?;
        let code = self
            .code_of(Some(payor))
            .ok_or("payor has neither reference nor display")?;
        let name = match self.resolve(Some(payor), None) {
            Some(o) => str_at(self.resource(o), &["name"]),
            None => str_at(payor, &["display"]),
        };
        self.reference_data(
            r,
            Item::Payer(pb::Payer {
                code,
                name: name.unwrap_or_default().to_owned(),
                payer_type: str_at(r, &["type", "text"])
                    .or_else(|| display(r.get("type")))
                    .unwrap_or_default()
                    .to_owned(),
            }),
        )
    }

    fn location(&self, i: usize, r: &Value) -> Res<Outcome> {
        if code_prefer(r.get("physicalType"), "") != Some("wa") {
            return Ok(Outcome::Skipped("Location is not a ward".to_owned()));
        }
        let department = self
            .code_of(r.get("partOf"))
            .or_else(|| self.code_of(r.get("managingOrganization")));
        let department_name = self
            .resolve(r.get("partOf"), None)
            .or_else(|| self.resolve(r.get("managingOrganization"), None))
            .and_then(|d| str_at(self.resource(d), &["name"]));
        self.reference_data(
            r,
            Item::Ward(pb::Ward {
                department_code: department.unwrap_or_default(),
                department_name: department_name.unwrap_or_default().to_owned(),
                ward_code: resource_code(r, self.id_of(i).unwrap_or_default()),
                ward_name: str_at(r, &["name"]).unwrap_or_default().to_owned(),
                bed_count: 0,
            }),
        )
    }
}

/// Patient.identifier of type MR, else the first identifier, else the resource id.
fn patient_ref(r: &Value, id: &str) -> pb::PatientRef {
    let with_value = || array(r, "identifier").filter(|i| str_at(i, &["value"]).is_some_and(|v| !v.is_empty()));
    let chosen = with_value()
        .find(|i| array(i.get("type").unwrap_or(&Value::Null), "coding").any(|c| str_at(c, &["code"]) == Some("MR")))
        .or_else(|| with_value().next());
    match chosen {
        Some(i) => pb::PatientRef {
            mrn: str_at(i, &["value"]).unwrap_or_default().to_owned(),
            assigning_authority: str_at(i, &["system"]).unwrap_or_default().to_owned(),
        },
        None => pb::PatientRef {
            mrn: id.to_owned(),
            assigning_authority: String::new(),
        },
    }
}

fn resource_code(r: &Value, id: &str) -> String {
    array(r, "identifier")
        .find_map(|i| str_at(i, &["value"]).filter(|v| !v.is_empty()))
        .unwrap_or(id)
        .to_owned()
}

/// One Observation of a vital-sign set from an element with `code` and `valueQuantity`.
fn quantity_observation(v: &Value) -> Option<pb::Observation> {
    let q = v.get("valueQuantity")?;
    Some(pb::Observation {
        loinc_code: code_prefer(v.get("code"), LOINC)?.to_owned(),
        value: q.get("value")?.as_f64()?,
        unit: ucum_unit(q),
    })
}

/// The UCUM code of a Quantity, else its human-readable unit.
/// A dose without a unit counts doses of the product's form (1 tablet, 2 puffs): UCUM's
/// unity "1" (Synthea writes `{"value": 1.0}`).
fn dose_unit(q: &Value) -> String {
    match ucum_unit(q) {
        u if u.is_empty() => "1".to_owned(),
        u => u,
    }
}

fn ucum_unit(q: &Value) -> String {
    let code = str_at(q, &["code"]).filter(|_| str_at(q, &["system"]).is_none_or(|s| s == UCUM));
    code.or_else(|| str_at(q, &["unit"])).unwrap_or_default().to_owned()
}

fn abnormal_flag(interpretation: Option<&Value>) -> AbnormalFlag {
    match code_prefer(interpretation, "") {
        Some("N") => AbnormalFlag::Normal,
        Some("L") => AbnormalFlag::Low,
        Some("H") => AbnormalFlag::High,
        Some("LL" | "LU") => AbnormalFlag::CriticalLow,
        Some("HH" | "HU") => AbnormalFlag::CriticalHigh,
        Some("A" | "AA") => AbnormalFlag::Abnormal,
        _ => AbnormalFlag::Unspecified,
    }
}

/// hl7.org/fhir/discharge-disposition.
fn disposition(code: Option<&str>) -> DischargeDisposition {
    match code {
        None => DischargeDisposition::Unspecified,
        Some("home" | "alt-home") => DischargeDisposition::Home,
        Some("other-hcf" | "hosp" | "psy" | "rehab") => DischargeDisposition::Transferred,
        Some("long" | "snf") => DischargeDisposition::CareFacility,
        Some("aadvice") => DischargeDisposition::LeftAgainstAdvice,
        Some("exp") => DischargeDisposition::Deceased,
        Some(_) => DischargeDisposition::Other,
    }
}

/// ISO 4217 minor-unit exponent (2 unless listed).
/// A Claim item on its way to a `ChargeLine`.
struct ClaimLine<'v> {
    seq: u64,
    at: Timestamp,
    code: &'v str,
    description: &'v str,
    quantity: f64,
    /// `None` until a rule prices it.
    unit_price_minor: Option<i64>,
    currency: &'v str,
    encounter_id: String,
    /// The line names a diagnosis (`diagnosisSequence`).
    diagnosis_line: bool,
    /// Where the price came from, or (once every rule has been tried) why there is none.
    price: Result<&'static str, String>,
}

/// `Claim.total` (Money), or the "submitted" (else the first) `ExplanationOfBenefit.total`,
/// as (value, currency).
fn claim_total(r: &Value) -> Option<(f64, Option<&str>)> {
    if let Some(v) = str_path(r, &["total", "value"]).and_then(Value::as_f64) {
        return Some((v, str_at(r, &["total", "currency"])));
    }
    let totals: Vec<&Value> = array(r, "total").collect();
    let t = totals
        .iter()
        .find(|t| code_prefer(t.get("category"), "") == Some("submitted"))
        .or(totals.first())?;
    let v = str_path(t, &["amount", "value"]).and_then(Value::as_f64)?;
    Some((v, str_at(t, &["amount", "currency"])))
}

/// The amount of item `seq` of an ExplanationOfBenefit: its "submitted" adjudication,
/// else its `net`, as (value, currency).
fn eob_line_amount(eob: &Value, seq: u64) -> Option<(f64, Option<&str>)> {
    let item = array(eob, "item").find(|it| it.get("sequence").and_then(Value::as_u64) == Some(seq))?;
    array(item, "adjudication")
        .find(|a| code_prefer(a.get("category"), "") == Some("submitted"))
        .and_then(|a| {
            let v = str_path(a, &["amount", "value"]).and_then(Value::as_f64)?;
            Some((v, str_at(a, &["amount", "currency"])))
        })
        .or_else(|| {
            let v = str_path(item, &["net", "value"]).and_then(Value::as_f64)?;
            Some((v, str_at(item, &["net", "currency"])))
        })
}

/// Prices the lines still unpriced from the claim total (see `Ctx::claim`), and gives
/// every line left unpriced its reason.
fn price_from_total(lines: &mut [ClaimLine<'_>], total: Option<(f64, Option<&str>)>) {
    let unpriced = |l: &ClaimLine<'_>| l.unit_price_minor.is_none();
    if !lines.iter().any(unpriced) {
        return;
    }
    let why = (|| -> Result<(usize, i64), String> {
        let (value, currency) = total.ok_or("no price on the line, its ExplanationOfBenefit or a Claim total")?;
        let currency = currency.unwrap_or_default();
        if let Some(other) = lines
            .iter()
            .find(|l| !l.currency.is_empty() && !currency.is_empty() && l.currency != currency)
        {
            return Err(format!(
                "the Claim total is in {currency}, line {} in {}",
                other.seq, other.currency
            ));
        }
        let priced: f64 = lines
            .iter()
            .filter_map(|l| l.unit_price_minor.map(|p| p as f64 * l.quantity))
            .sum();
        let remainder = minor_units(value, currency) - priced.round() as i64;
        if remainder < 0 {
            return Err(format!("the priced lines exceed the Claim total {value} {currency}"));
        }
        let candidates: Vec<usize> = (0..lines.len())
            .filter(|&i| unpriced(&lines[i]) && !lines[i].diagnosis_line)
            .collect();
        let candidates = if candidates.is_empty() {
            (0..lines.len()).filter(|&i| unpriced(&lines[i])).collect()
        } else {
            candidates
        };
        match candidates[..] {
            [one] if lines[one].quantity > 0.0 => Ok((one, remainder)),
            [_] => Err("the one unpriced line has no quantity to divide the remainder by".to_owned()),
            _ => Err(format!(
                "{} unpriced lines share the Claim total's remainder: no rule splits it",
                candidates.len()
            )),
        }
    })();
    match why {
        Ok((line, remainder)) => {
            let l = &mut lines[line];
            l.unit_price_minor = Some((remainder as f64 / l.quantity).round() as i64);
            l.price = Ok(PRICE_REMAINDER);
            for l in lines.iter_mut().filter(|l| l.unit_price_minor.is_none()) {
                l.price = Ok(PRICE_NONE);
            }
        }
        Err(reason) => {
            for l in lines.iter_mut().filter(|l| l.unit_price_minor.is_none()) {
                l.price = Err(reason.clone());
            }
        }
    }
}

fn minor_units(value: f64, currency: &str) -> i64 {
    let exp = match currency {
        "JPY" | "KRW" | "ISK" | "CLP" | "VND" | "XAF" | "XOF" | "UGX" | "PYG" | "RWF" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" | "LYD" | "IQD" => 3,
        _ => 2,
    };
    // `as` saturates; JSON numbers are finite.
    (value * 10f64.powi(exp)).round() as i64
}

/// `Patient/123`, `http://x/fhir/Patient/123/_history/2` -> `Patient/123`.
fn relative(reference: &str) -> Option<String> {
    let path = reference.split("/_history/").next()?;
    let mut parts = path.rsplitn(3, '/');
    let id = parts.next()?;
    let ty = parts.next()?;
    (!id.is_empty() && ty.starts_with(|c: char| c.is_ascii_uppercase())).then(|| format!("{ty}/{id}"))
}

/// The id written in a reference: `urn:uuid:x` -> `x`, `Patient/123` -> `123`.
fn ref_id(reference: &str) -> &str {
    if let Some(u) = reference.strip_prefix("urn:uuid:") {
        return u;
    }
    let path = reference.split("/_history/").next().unwrap_or(reference);
    path.rsplit('/').next().unwrap_or(path)
}

fn str_path<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn str_at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    str_path(v, path)?.as_str()
}

fn array<'v>(v: &'v Value, key: &str) -> impl Iterator<Item = &'v Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// The code of the coding with `system` (any coding when `system` is empty or none
/// matches), from a CodeableConcept.
fn code_prefer<'v>(cc: Option<&'v Value>, system: &str) -> Option<&'v str> {
    let cc = cc?;
    let with_code = || array(cc, "coding").filter(|c| str_at(c, &["code"]).is_some());
    with_code()
        .find(|c| !system.is_empty() && str_at(c, &["system"]) == Some(system))
        .or_else(|| with_code().next())
        .and_then(|c| str_at(c, &["code"]))
}

/// The first coding of a CodeableConcept in the most preferred of `systems`, with its
/// display (else the concept's text). `Ok(None)`: coded, but in none of them; `Err`: no
/// coding with a code at all.
fn coded<'v>(
    cc: Option<&'v Value>,
    systems: &[(&str, CodeSystem)],
) -> Res<Option<(CodeSystem, &'v str, Option<&'v str>)>> {
    let cc = cc.ok_or("code missing")?;
    let codings: Vec<&Value> = array(cc, "coding")
        .filter(|c| str_at(c, &["code"]).is_some_and(|code| !code.trim().is_empty()))
        .collect();
    if codings.is_empty() {
        return Err("code.coding missing".to_owned());
    }
    Ok(systems.iter().find_map(|(uri, system)| {
        let c = codings.iter().find(|c| str_at(c, &["system"]) == Some(*uri))?;
        let name = str_at(c, &["display"]).or_else(|| str_at(cc, &["text"]));
        Some((*system, str_at(c, &["code"])?, name))
    }))
}

fn display(cc: Option<&Value>) -> Option<&str> {
    let cc = cc?;
    str_at(cc, &["text"]).or_else(|| array(cc, "coding").find_map(|c| str_at(c, &["display"])))
}

fn to_ts(t: OffsetDateTime) -> Timestamp {
    Timestamp {
        seconds: t.unix_timestamp(),
        nanos: t.nanosecond() as i32,
    }
}

/// A FHIR dateTime/instant. A date without a time is read as 00:00 UTC of that day
/// (year or year-month: its first day).
fn parse_instant(s: &str) -> Result<Timestamp, String> {
    if s.len() > 10 {
        return OffsetDateTime::parse(s, &Rfc3339)
            .map(to_ts)
            .map_err(|e| format!("is not a date/time: {e}"));
    }
    let d = parse_date(s).ok_or("is not a date/time")?;
    let date = time::Date::from_calendar_date(
        d.year,
        time::Month::try_from(d.month.max(1) as u8).map_err(|e| e.to_string())?,
        d.day.max(1) as u8,
    )
    .map_err(|e| format!("is not a date: {e}"))?;
    Ok(to_ts(date.midnight().assume_utc()))
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`; missing parts are 0 (google.type.Date convention).
fn parse_date(s: &str) -> Option<pb::Date> {
    let mut parts = s.split('-');
    let num = |p: Option<&str>, len: usize| -> Option<Option<i32>> {
        match p {
            None => Some(None),
            Some(p) if p.len() == len && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok().map(Some),
            Some(_) => None,
        }
    };
    let year = num(parts.next(), 4)??;
    let month = num(parts.next(), 2)?.unwrap_or(0);
    let day = num(parts.next(), 2)?.unwrap_or(0);
    if parts.next().is_some() || !(0..=12).contains(&month) || !(0..=31).contains(&day) || (month == 0 && day != 0) {
        return None;
    }
    if month != 0 && day != 0 {
        let m = time::Month::try_from(month as u8).ok()?;
        time::Date::from_calendar_date(year, m, day as u8).ok()?;
    }
    Some(pb::Date { year, month, day })
}

/// A present time field must parse; an absent one is `None`.
fn time_field(r: &Value, path: &[&str], name: &str) -> Res<Option<Timestamp>> {
    match str_path(r, path) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_instant(s).map(Some).map_err(|e| format!("{name} {s:?} {e}")),
        Some(_) => Err(format!("{name} is not a string")),
    }
}

fn meta_time(r: &Value) -> Res<Option<Timestamp>> {
    time_field(r, &["meta", "lastUpdated"], "meta.lastUpdated")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bundle(resources: Vec<Value>) -> Vec<u8> {
        let entries: Vec<Value> = resources
            .into_iter()
            .map(|r| {
                let url = format!("urn:uuid:{}", r["id"].as_str().unwrap_or_default());
                json!({"fullUrl": url, "resource": r, "request": {"method": "POST"}})
            })
            .collect();
        serde_json::to_vec(&json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})).unwrap()
    }

    fn patient() -> Value {
        json!({
            "resourceType": "Patient", "id": "p1",
            "meta": {"lastUpdated": "2024-01-01T00:00:00Z"},
            "identifier": [
                {"system": "urn:other", "value": "X1"},
                {"type": {"coding": [{"code": "MR"}]}, "system": "urn:hosp", "value": "MRN7"}
            ],
            "name": [{"use": "official", "family": "Doe", "given": ["Jane", "Q"]}],
            "gender": "female", "birthDate": "1970-02-03",
            "address": [{"postalCode": "01440"}],
            "deceasedDateTime": "2020-05-06T07:08:09+02:00"
        })
    }

    fn run(resources: Vec<Value>) -> Mapped {
        map_bundle("t.json", &bundle(resources), &FhirOptions::default()).unwrap()
    }

    fn payloads(m: &Mapped) -> Vec<&Payload> {
        m.events.iter().filter_map(|e| e.payload.as_ref()).collect()
    }

    #[test]
    fn patient_maps_demographics_and_mr_identifier() {
        let m = run(vec![patient()]);
        assert!(m.summary.errors.is_empty(), "{:?}", m.summary.errors);
        let e = &m.events[0];
        assert_eq!(e.event_id, "Patient/p1");
        assert_eq!(e.source_system, "fhir");
        let p = e.patient.as_ref().unwrap();
        assert_eq!((p.mrn.as_str(), p.assigning_authority.as_str()), ("MRN7", "urn:hosp"));
        let Some(Payload::PatientRegistered(d)) = &e.payload else {
            panic!()
        };
        assert_eq!((d.given_name.as_str(), d.family_name.as_str()), ("Jane Q", "Doe"));
        assert_eq!(
            d.birth_date,
            Some(pb::Date {
                year: 1970,
                month: 2,
                day: 3
            })
        );
        assert_eq!(d.sex, AdministrativeSex::Female as i32);
        assert_eq!(d.postal_code, "01440");
        assert_eq!(d.deceased_at.unwrap().seconds, 1_588_741_689);
    }

    #[test]
    fn patient_id_falls_back_and_time_comes_from_first_encounter() {
        let m = run(vec![
            json!({"resourceType": "Patient", "id": "p2"}),
            json!({"resourceType": "Encounter", "id": "e2", "class": {"code": "AMB"},
                   "subject": {"reference": "Patient/p2"}, "period": {"start": "2001-01-01T10:00:00Z"}}),
        ]);
        assert!(m.summary.errors.is_empty(), "{:?}", m.summary.errors);
        assert_eq!(m.events[0].patient.as_ref().unwrap().mrn, "p2");
        assert_eq!(m.events[0].occurred_at, m.events[1].occurred_at);
        let lone = run(vec![json!({"resourceType": "Patient", "id": "p3"})]);
        assert_eq!(
            lone.summary.errors[0].to_string(),
            "Patient/p3: meta.lastUpdated missing (and no Bundle.timestamp or Encounter to date the registration)"
        );
    }

    #[test]
    fn references_resolve_by_urn_relative_and_absolute() {
        let obs = |id: &str, subject: &str| {
            json!({"resourceType": "Observation", "id": id, "subject": {"reference": subject},
                   "category": [{"coding": [{"code": "vital-signs"}]}],
                   "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
                   "effectiveDateTime": "2024-01-01T00:00:00Z",
                   "valueQuantity": {"value": 80, "system": UCUM, "code": "/min", "unit": "beats/min"}})
        };
        let m = run(vec![
            patient(),
            obs("o1", "urn:uuid:p1"),
            obs("o2", "Patient/p1"),
            obs("o3", "https://server/fhir/Patient/p1/_history/3"),
            obs("o4", "Patient/nope"),
        ]);
        for e in &m.events[1..] {
            assert_eq!(e.patient.as_ref().unwrap().mrn, "MRN7", "{}", e.event_id);
        }
        assert_eq!(m.events.len(), 4);
        assert_eq!(
            m.summary.errors[0].to_string(),
            "Observation/o4: subject Patient/nope is not a Patient in the input"
        );
        assert_eq!(ref_id("urn:uuid:abc"), "abc");
        assert_eq!(ref_id("Encounter/9"), "9");
        assert_eq!(relative("Patient"), None);
    }

    #[test]
    fn encounter_maps_admission_and_discharge() {
        let m = run(vec![
            patient(),
            json!({"resourceType": "Organization", "id": "org", "identifier": [{"value": "HOSP1"}], "type": [{"coding": [{"code": "prov"}]}]}),
            json!({"resourceType": "Location", "id": "w1", "identifier": [{"value": "WARD-A"}], "physicalType": {"coding": [{"code": "wa"}]},
                   "managingOrganization": {"reference": "Organization/org"}, "name": "Ward A", "meta": {"lastUpdated": "2024-01-01T00:00:00Z"}}),
            json!({"resourceType": "Encounter", "id": "e1", "class": {"code": "IMP"},
                   "subject": {"reference": "urn:uuid:p1"}, "serviceProvider": {"reference": "urn:uuid:org"},
                   "location": [{"location": {"reference": "Location/w1"}}],
                   "period": {"start": "2024-01-01T10:00:00Z", "end": "2024-01-03T09:00:00Z"},
                   "hospitalization": {"dischargeDisposition": {"coding": [{"code": "exp"}]}}}),
            json!({"resourceType": "Encounter", "id": "e2", "class": {"code": "XYZ"},
                   "subject": {"reference": "urn:uuid:p1"}, "period": {"start": "2024-01-01T10:00:00Z"}}),
        ]);
        let ids: Vec<&str> = m.events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(
            ids,
            ["Patient/p1", "Location/w1", "Encounter/e1", "Encounter/e1#discharge"]
        );
        let Some(Payload::Admission(a)) = &m.events[2].payload else {
            panic!()
        };
        assert_eq!(a.encounter_id, "e1");
        assert_eq!(a.encounter_class, EncounterClass::Inpatient as i32);
        let loc = a.location.as_ref().unwrap();
        assert_eq!(
            (loc.department_code.as_str(), loc.ward_code.as_str()),
            ("HOSP1", "WARD-A")
        );
        let Some(Payload::Discharge(d)) = &m.events[3].payload else {
            panic!()
        };
        assert_eq!(d.disposition, DischargeDisposition::Deceased as i32);
        assert_eq!(m.events[3].occurred_at.unwrap().seconds, 1_704_272_400);
        assert!(m.summary.errors[0]
            .to_string()
            .starts_with("Encounter/e2: class.code \"XYZ\""));
        assert_eq!(m.summary.of("Organization").skipped_total(), 1);
        let Some(Payload::ReferenceData(rd)) = &m.events[1].payload else {
            panic!()
        };
        let Some(Item::Ward(w)) = &rd.item else { panic!() };
        assert_eq!((w.ward_code.as_str(), w.department_code.as_str()), ("WARD-A", "HOSP1"));
    }

    #[test]
    fn observations_split_panels_and_map_labs() {
        let m = run(vec![
            patient(),
            json!({"resourceType": "Observation", "id": "bp", "subject": {"reference": "urn:uuid:p1"},
                   "encounter": {"reference": "urn:uuid:e9"},
                   "category": [{"coding": [{"code": "vital-signs"}]}],
                   "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
                   "effectiveDateTime": "2024-01-01T00:00:00Z",
                   "component": [
                       {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": {"value": 120, "system": UCUM, "code": "mm[Hg]"}},
                       {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": {"value": 80, "system": UCUM, "code": "mm[Hg]"}}]}),
            json!({"resourceType": "Observation", "id": "lab", "subject": {"reference": "urn:uuid:p1"},
                   "category": [{"coding": [{"code": "laboratory"}]}],
                   "code": {"coding": [{"system": LOINC, "code": "2345-7", "display": "Glucose"}]},
                   "effectiveDateTime": "2024-01-01T00:00:00Z", "issued": "2024-01-01T02:00:00Z",
                   "valueQuantity": {"value": 5.5, "system": UCUM, "code": "mmol/L"},
                   "referenceRange": [{"low": {"value": 4}, "high": {"value": 7}}],
                   "interpretation": [{"coding": [{"code": "N"}]}]}),
            json!({"resourceType": "Observation", "id": "nodate", "subject": {"reference": "urn:uuid:p1"},
                   "category": [{"coding": [{"code": "vital-signs"}]}],
                   "code": {"coding": [{"system": LOINC, "code": "8867-4"}]}, "valueQuantity": {"value": 1}}),
            json!({"resourceType": "Observation", "id": "s", "category": [{"coding": [{"code": "survey"}]}]}),
        ]);
        let Some(Payload::VitalSigns(v)) = &m.events[1].payload else {
            panic!()
        };
        assert_eq!(v.encounter_id, "e9");
        let got: Vec<(&str, f64, &str)> = v
            .observations
            .iter()
            .map(|o| (o.loinc_code.as_str(), o.value, o.unit.as_str()))
            .collect();
        assert_eq!(got, [("8480-6", 120.0, "mm[Hg]"), ("8462-4", 80.0, "mm[Hg]")]);
        let Some(Payload::LabResult(l)) = &m.events[2].payload else {
            panic!()
        };
        assert_eq!(
            (l.loinc_code.as_str(), l.value, l.unit.as_str()),
            ("2345-7", Some(5.5), "mmol/L")
        );
        assert_eq!((l.reference_low, l.reference_high), (Some(4.0), Some(7.0)));
        assert_eq!(l.abnormal_flag, AbnormalFlag::Normal as i32);
        assert_eq!(
            m.events[2].occurred_at.unwrap().seconds - l.specimen_collected_at.unwrap().seconds,
            7200
        );
        assert_eq!(
            m.summary.errors[0].to_string(),
            "Observation/nodate: effectiveDateTime missing"
        );
        assert_eq!(m.summary.of("Observation").skipped["Observation category survey"], 1);
    }

    #[test]
    fn medications_map_orders_and_administrations() {
        let m = run(vec![
            patient(),
            json!({"resourceType": "MedicationRequest", "id": "mr", "subject": {"reference": "urn:uuid:p1"},
                   "authoredOn": "2024-01-01T00:00:00Z",
                   "medicationCodeableConcept": {"coding": [{"system": "urn:local", "code": "L1"}, {"system": RXNORM, "code": "562251"}], "text": "Amox"},
                   "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 250, "unit": "mg"}}],
                                          "timing": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}}}]}),
            json!({"resourceType": "Medication", "id": "med", "code": {"coding": [{"system": RXNORM, "code": "1049630"}]}}),
            json!({"resourceType": "MedicationAdministration", "id": "ma", "subject": {"reference": "urn:uuid:p1"},
                   "context": {"reference": "Encounter/e5"}, "request": {"reference": "MedicationRequest/mr"},
                   "medicationReference": {"reference": "Medication/med"},
                   "effectiveDateTime": "2024-01-01T06:00:00Z", "dosage": {"dose": {"value": 1, "unit": "tablet"}}}),
            json!({"resourceType": "MedicationRequest", "id": "bad", "subject": {"reference": "urn:uuid:p1"},
                   "medicationCodeableConcept": {"coding": [{"code": "1"}]}}),
        ]);
        let Some(Payload::MedicationOrder(o)) = &m.events[1].payload else {
            panic!()
        };
        assert_eq!(
            (o.drug_code.as_str(), o.drug_name.as_str(), o.dose_value),
            ("562251", "Amox", 250.0)
        );
        assert_eq!(o.frequency, "3/1d");
        let Some(Payload::MedicationAdministration(a)) = &m.events[2].payload else {
            panic!()
        };
        assert_eq!(
            (a.order_id.as_str(), a.encounter_id.as_str(), a.drug_code.as_str()),
            ("mr", "e5", "1049630")
        );
        assert_eq!(
            m.summary.errors[0].to_string(),
            "MedicationRequest/bad: authoredOn missing"
        );
        assert_eq!(m.summary.of("Medication").skipped_total(), 1);
    }

    #[test]
    fn dispenses_map_against_their_prescription_and_unmade_ones_are_skipped() {
        let m = run(vec![
            patient(),
            json!({"resourceType": "MedicationDispense", "id": "md", "status": "completed",
                   "subject": {"reference": "urn:uuid:p1"}, "context": {"reference": "Encounter/e5"},
                   "authorizingPrescription": [{"reference": "MedicationRequest/mr"}],
                   "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "562251"}]},
                   "whenPrepared": "2024-01-01T05:00:00Z", "whenHandedOver": "2024-01-01T06:00:00Z",
                   "dosageInstruction": [{"route": {"text": "oral"},
                                          "doseAndRate": [{"doseQuantity": {"value": 375, "unit": "mg"}}]}]}),
            json!({"resourceType": "MedicationDispense", "id": "no", "status": "cancelled",
                   "subject": {"reference": "urn:uuid:p1"},
                   "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "562251"}]}}),
            json!({"resourceType": "MedicationDispense", "id": "undated", "status": "completed",
                   "subject": {"reference": "urn:uuid:p1"},
                   "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "562251"}]}}),
        ]);
        let Some(Payload::MedicationDispense(d)) = &m.events[1].payload else {
            panic!("{:?}", m.events)
        };
        assert_eq!(
            (d.order_id.as_str(), d.encounter_id.as_str(), d.drug_code.as_str()),
            ("mr", "e5", "562251")
        );
        assert_eq!(
            (d.dose_value, d.dose_unit.as_str(), d.route.as_str()),
            (375.0, "mg", "oral")
        );
        assert_eq!(m.events[1].occurred_at.as_ref().unwrap().seconds, 1_704_088_800);
        assert_eq!(m.events.len(), 2);
        assert_eq!(
            m.summary.of("MedicationDispense").skipped["MedicationDispense status cancelled"],
            1
        );
        assert_eq!(
            m.summary.errors[0].to_string(),
            "MedicationDispense/undated: whenHandedOver missing"
        );
    }

    #[test]
    fn claims_make_one_charge_line_per_item() {
        let m = run(vec![
            patient(),
            json!({"resourceType": "Claim", "id": "c1", "patient": {"reference": "urn:uuid:p1"},
                   "billablePeriod": {"start": "2024-01-01T00:00:00Z"},
                   "insurance": [{"focal": true, "coverage": {"display": "Medicare"}}],
                   "total": {"value": 200.5, "currency": "USD"},
                   "item": [
                       {"sequence": 1, "productOrService": {"coding": [{"code": "99213"}], "text": "Visit"}, "encounter": [{"reference": "urn:uuid:e1"}]},
                       {"sequence": 2, "productOrService": {"coding": [{"code": "J1"}]}, "quantity": {"value": 2}, "net": {"value": 10.25, "currency": "USD"}},
                       {"sequence": 3, "productOrService": {"coding": [{"code": "J2"}]}, "unitPrice": {"value": 1000, "currency": "JPY"}}]}),
            json!({"resourceType": "ExplanationOfBenefit", "id": "eob", "claim": {"reference": "urn:uuid:c1"}}),
        ]);
        let lines: Vec<&pb::ChargeLine> = payloads(&m)
            .into_iter()
            .filter_map(|p| match p {
                Payload::ChargeLine(c) => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].charge_id, "Claim/c1#item1");
        assert_eq!(
            (lines[0].unit_price_minor, lines[0].payer_code.as_str()),
            (0, "Medicare")
        );
        assert_eq!(
            (
                lines[1].quantity,
                lines[1].unit_price_minor,
                lines[1].encounter_id.as_str()
            ),
            (2.0, 513, "e1")
        );
        assert_eq!((lines[2].unit_price_minor, lines[2].currency.as_str()), (1000, "JPY"));
        assert_eq!(m.events[2].event_id, "Claim/c1#item2");
        // The total is in USD and a line in JPY: no remainder to give line 1.
        assert_eq!(
            m.summary.unpriced_charge_lines,
            [UnpricedCharge {
                charge_id: "Claim/c1#item1".to_owned(),
                reason: "the Claim total is in USD, line 3 in JPY".to_owned()
            }]
        );
        assert_eq!(m.summary.of("ExplanationOfBenefit").skipped_total(), 1);
    }

    /// Unpriced Claim lines are priced from the EOB's item, else from the Claim total
    /// less the priced lines; what stays unpriced is listed with its reason.
    #[test]
    fn unpriced_claim_lines_take_their_price_from_the_eob_or_the_total() {
        let item = |seq: u64, extra: Value| {
            let mut it = json!({"sequence": seq, "productOrService": {"coding": [{"code": format!("P{seq}")}]}});
            for (k, v) in extra.as_object().unwrap() {
                it[k] = v.clone();
            }
            it
        };
        let claim = |id: &str, total: Option<f64>, items: Vec<Value>| {
            let mut c = json!({"resourceType": "Claim", "id": id, "patient": {"reference": "urn:uuid:p1"},
                               "billablePeriod": {"start": "2024-01-01T00:00:00Z"}, "item": items});
            if let Some(t) = total {
                c["total"] = json!({"value": t, "currency": "USD"});
            }
            c
        };
        let usd = |v: f64| json!({"value": v, "currency": "USD"});
        let m = run(vec![
            patient(),
            // Pharmacy: one line, no price: the total.
            claim("pharmacy", Some(255.0), vec![item(1, json!({}))]),
            // Institutional: encounter line + diagnosis line + a priced procedure.
            claim(
                "inst",
                Some(125.5),
                vec![
                    item(1, json!({})),
                    item(2, json!({"diagnosisSequence": [1]})),
                    item(3, json!({"net": usd(40.25)})),
                ],
            ),
            // No total on the Claim: its EOB prices line 1 by item and gives the total.
            claim("eobpriced", None, vec![item(1, json!({})), item(2, json!({}))]),
            json!({"resourceType": "ExplanationOfBenefit", "id": "eob1", "claim": {"reference": "Claim/eobpriced"},
                   "item": [{"sequence": 1, "adjudication": [{"category": {"coding": [{"code": "submitted"}]}, "amount": usd(30.0)}]}],
                   "total": [{"category": {"coding": [{"code": "submitted"}]}, "amount": usd(50.0)}]}),
            // Two lines to share a remainder, and lines above the total, and no total.
            claim("two", Some(10.0), vec![item(1, json!({})), item(2, json!({}))]),
            claim(
                "over",
                Some(10.0),
                vec![item(1, json!({})), item(2, json!({"net": usd(20.0)}))],
            ),
            claim("none", None, vec![item(1, json!({}))]),
        ]);
        assert!(m.summary.errors.is_empty(), "{:?}", m.summary.errors);
        let price = |id: &str| {
            m.events
                .iter()
                .find_map(|e| match &e.payload {
                    Some(Payload::ChargeLine(c)) if c.charge_id == id => Some(c.unit_price_minor),
                    _ => None,
                })
                .unwrap()
        };
        assert_eq!(price("Claim/pharmacy#item1"), 25_500);
        assert_eq!(
            (
                price("Claim/inst#item1"),
                price("Claim/inst#item2"),
                price("Claim/inst#item3")
            ),
            (8_525, 0, 4_025)
        );
        assert_eq!(
            (price("Claim/eobpriced#item1"), price("Claim/eobpriced#item2")),
            (3_000, 2_000)
        );
        let unpriced: Vec<(&str, &str)> = m
            .summary
            .unpriced_charge_lines
            .iter()
            .map(|u| (u.charge_id.as_str(), u.reason.as_str()))
            .collect();
        assert_eq!(
            unpriced,
            [
                (
                    "Claim/two#item1",
                    "2 unpriced lines share the Claim total's remainder: no rule splits it"
                ),
                (
                    "Claim/two#item2",
                    "2 unpriced lines share the Claim total's remainder: no rule splits it"
                ),
                ("Claim/over#item1", "the priced lines exceed the Claim total 10 USD"),
                (
                    "Claim/none#item1",
                    "no price on the line, its ExplanationOfBenefit or a Claim total"
                ),
            ]
        );
        assert_eq!(
            m.summary.charge_prices,
            BTreeMap::from([
                (PRICE_OWN, 2),
                (PRICE_EOB, 1),
                (PRICE_REMAINDER, 3),
                (PRICE_NONE, 1),
                ("unpriced", 4)
            ])
        );
        let b = m.summary.balance();
        assert!(b.balances(), "{b}");
        assert_eq!((b.read, b.mapped, b.skipped_total()), (8, 7, 1));
    }

    #[test]
    fn payers_from_organizations_and_coverage() {
        let m = run(vec![
            json!({"resourceType": "Organization", "id": "o1", "name": "Acme Health", "type": [{"coding": [{"code": "pay"}]}],
                   "meta": {"lastUpdated": "2024-01-01T00:00:00Z"}}),
            json!({"resourceType": "Coverage", "id": "cov", "payor": [{"reference": "Organization/o1"}], "type": {"text": "private"},
                   "meta": {"lastUpdated": "2024-01-01T00:00:00Z"}}),
        ]);
        assert!(m.summary.errors.is_empty(), "{:?}", m.summary.errors);
        for e in &m.events {
            let Some(Payload::ReferenceData(pb::ReferenceData {
                item: Some(Item::Payer(p)),
            })) = &e.payload
            else {
                panic!()
            };
            assert_eq!((p.code.as_str(), p.name.as_str()), ("o1", "Acme Health"));
            assert!(e.patient.is_none());
        }
    }

    #[test]
    fn conditions_map_to_diagnoses() {
        let icd10 = "http://hl7.org/fhir/sid/icd-10-cm";
        let m = run(vec![
            patient(),
            json!({"resourceType": "Encounter", "id": "e1", "class": {"code": "IMP"},
                   "subject": {"reference": "urn:uuid:p1"}, "period": {"start": "2024-01-01T10:00:00Z"},
                   "diagnosis": [{"condition": {"reference": "Condition/listed"}, "use": {"coding": [{"code": "DD"}]}, "rank": 1}]}),
            json!({"resourceType": "Condition", "id": "c1", "subject": {"reference": "urn:uuid:p1"},
                   "encounter": {"reference": "urn:uuid:e1"},
                   "category": [{"coding": [{"code": "encounter-diagnosis"}]}],
                   "clinicalStatus": {"coding": [{"code": "resolved"}]},
                   "code": {"coding": [{"system": SNOMED, "code": "233604007", "display": "Pneumonia"},
                                       {"system": icd10, "code": "J18.9", "display": "Pneumonia, unspecified organism"}]},
                   "onsetDateTime": "2024-01-01T09:00:00Z", "recordedDate": "2024-01-01T11:00:00Z",
                   "abatementDateTime": "2024-01-20T00:00:00Z"}),
            json!({"resourceType": "Condition", "id": "problem", "subject": {"reference": "urn:uuid:p1"},
                   "code": {"coding": [{"system": SNOMED, "code": "44054006"}], "text": "Diabetes"},
                   "recordedDate": "2023-06-01"}),
            json!({"resourceType": "Condition", "id": "listed", "subject": {"reference": "urn:uuid:p1"},
                   "encounter": {"reference": "Encounter/e1"},
                   "code": {"coding": [{"system": ICD9_CM, "code": "486"}]}, "onsetDateTime": "2024-01-01T09:00:00Z"}),
            json!({"resourceType": "Condition", "id": "refuted", "subject": {"reference": "urn:uuid:p1"},
                   "verificationStatus": {"coding": [{"code": "refuted"}]},
                   "code": {"coding": [{"system": SNOMED, "code": "233604007"}]}, "onsetDateTime": "2024-01-01T09:00:00Z"}),
            json!({"resourceType": "Condition", "id": "local", "subject": {"reference": "urn:uuid:p1"},
                   "code": {"coding": [{"system": "urn:local", "code": "X1"}]}, "onsetDateTime": "2024-01-01T09:00:00Z"}),
            json!({"resourceType": "Condition", "id": "undated", "subject": {"reference": "urn:uuid:p1"},
                   "code": {"coding": [{"system": SNOMED, "code": "233604007"}]}}),
        ]);
        let dx = |id: &str| {
            let e = m.events.iter().find(|e| e.event_id == id).unwrap();
            let Some(Payload::Diagnosis(d)) = &e.payload else {
                panic!("{id}")
            };
            (e, d)
        };
        let (e, d) = dx("Condition/c1");
        assert_eq!(e.patient.as_ref().unwrap().mrn, "MRN7");
        assert_eq!(e.occurred_at.unwrap().seconds, 1_704_099_600, "onset");
        assert_eq!(
            (d.code.as_str(), d.code_system, d.display.as_str()),
            ("J18.9", CodeSystem::Icd10Cm as i32, "Pneumonia, unspecified organism")
        );
        assert_eq!(
            (d.encounter_id.as_str(), d.role),
            ("e1", DiagnosisRole::Encounter as i32)
        );
        assert_eq!(d.clinical_status, ConditionStatus::Resolved as i32);
        assert_eq!(d.abated_at.unwrap().seconds, 1_705_708_800);
        assert_eq!(d.recorded_at.unwrap().seconds, 1_704_106_800);
        // No onset: dated by recordedDate; no category nor encounter: a problem-list entry.
        let (e, d) = dx("Condition/problem");
        assert_eq!(e.occurred_at.unwrap().seconds, 1_685_577_600);
        assert_eq!(
            (d.code_system, d.display.as_str(), d.role, d.encounter_id.as_str()),
            (
                CodeSystem::SnomedCt as i32,
                "Diabetes",
                DiagnosisRole::ProblemList as i32,
                ""
            )
        );
        // Listed as the encounter's first discharge diagnosis: the principal one.
        let (_, d) = dx("Condition/listed");
        assert_eq!(
            (d.role, d.rank, d.code.as_str()),
            (DiagnosisRole::Principal as i32, 1, "486")
        );
        let skipped = &m.summary.of("Condition").skipped;
        assert_eq!(skipped["Condition refuted"], 1);
        assert_eq!(
            skipped["Condition coded in none of ICD-10-CM, ICD-10, SNOMED CT, ICD-9-CM"],
            1
        );
        assert_eq!(
            m.summary.errors[0].to_string(),
            "Condition/undated: onsetDateTime and recordedDate missing"
        );
        assert_eq!(
            (m.summary.events("diagnosis"), m.summary.of("Condition").mapped),
            (3, 3)
        );
    }

    #[test]
    fn procedures_map_with_their_period() {
        let m = run(vec![
            patient(),
            json!({"resourceType": "Practitioner", "id": "dr", "identifier": [{"value": "DR-1"}]}),
            json!({"resourceType": "Procedure", "id": "pr1", "status": "completed", "subject": {"reference": "urn:uuid:p1"},
                   "encounter": {"reference": "urn:uuid:e1"},
                   "performer": [{"actor": {"reference": "Practitioner/dr"}}],
                   "code": {"coding": [{"system": SNOMED, "code": "80146002", "display": "Appendectomy"},
                                       {"system": "http://www.ama-assn.org/go/cpt", "code": "44950"}], "text": "Appendix out"},
                   "performedPeriod": {"start": "2024-01-02T08:00:00Z", "end": "2024-01-02T09:30:00Z"}}),
            json!({"resourceType": "Procedure", "id": "pr2", "status": "in-progress", "subject": {"reference": "urn:uuid:p1"},
                   "code": {"coding": [{"system": SNOMED, "code": "80146002"}]}, "performedDateTime": "2024-01-03T08:00:00Z"}),
            json!({"resourceType": "Procedure", "id": "no", "status": "not-done", "subject": {"reference": "urn:uuid:p1"},
                   "code": {"coding": [{"system": SNOMED, "code": "80146002"}]}}),
            json!({"resourceType": "Procedure", "id": "undated", "status": "completed", "subject": {"reference": "urn:uuid:p1"},
                   "code": {"coding": [{"system": SNOMED, "code": "80146002"}]}}),
        ]);
        let px: Vec<(&ClinicalEvent, &pb::ProcedurePerformed)> = m
            .events
            .iter()
            .filter_map(|e| match &e.payload {
                Some(Payload::Procedure(p)) => Some((e, p)),
                _ => None,
            })
            .collect();
        assert_eq!(px.len(), 2);
        let (e, p) = px[0];
        assert_eq!(e.event_id, "Procedure/pr1");
        assert_eq!(e.occurred_at.unwrap().seconds, 1_704_182_400);
        assert_eq!(p.ended_at.unwrap().seconds, 1_704_187_800);
        // CPT is preferred; its coding has no display, so the concept's text names it.
        assert_eq!(
            (p.code.as_str(), p.code_system, p.display.as_str()),
            ("44950", CodeSystem::Cpt as i32, "Appendix out")
        );
        assert_eq!((p.encounter_id.as_str(), p.performer.as_str()), ("e1", "DR-1"));
        let (e, p) = px[1];
        assert_eq!((e.occurred_at.unwrap().seconds, p.ended_at), (1_704_268_800, None));
        assert_eq!(m.summary.of("Procedure").skipped["Procedure status not-done"], 1);
        assert_eq!(
            m.summary.errors[0].to_string(),
            "Procedure/undated: performedDateTime and performedPeriod.start missing"
        );
    }

    #[test]
    fn deletes_are_counted_not_dropped() {
        let b = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "DELETE", "url": "Patient/p9"}},
            {"request": {"method": "DELETE", "url": "Observation?identifier=x"}}]});
        let m = map_bundle("d.json", &serde_json::to_vec(&b).unwrap(), &FhirOptions::default()).unwrap();
        assert_eq!(m.summary.deletes.len(), 2);
        assert_eq!(m.summary.deletes[0].url, "Patient/p9");
        assert_eq!(m.summary.of("Observation").deleted, 1);
    }

    #[test]
    fn bad_input_is_an_error_never_a_panic() {
        let e = map_bundle(
            "t.json",
            b"{\"resourceType\": \"Bundle\", \"entry\": [",
            &FhirOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(e, FhirError::Json { line: 1, .. }), "{e}");
        let e = map_bundle("t.json", br#"{"resourceType": "Patient"}"#, &FhirOptions::default()).unwrap_err();
        assert_eq!(e.to_string(), "t.json: resourceType is not Bundle");
        for junk in [
            &b"[]"[..],
            b"null",
            b"{\"resourceType\":\"Bundle\",\"entry\":[1]}",
            b"\xff",
        ] {
            let _ = map_bundle("j", junk, &FhirOptions::default());
        }
        let m = map_ndjson(
            "x.ndjson",
            b"{\"resourceType\":\"Observation\",\"id\":1,\"category\":[{\"coding\":[{\"code\":\"laboratory\"}]}],\"subject\":7}\n[]\n",
            &FhirOptions::default(),
        );
        assert_eq!(m.summary.errors.len(), 2);
        assert_eq!(parse_date("1970-02-30"), None);
        assert_eq!(
            parse_date("1970-02"),
            Some(pb::Date {
                year: 1970,
                month: 2,
                day: 0
            })
        );
        assert!(parse_instant("2024-01-01T00:00:00").is_err());
    }
}
