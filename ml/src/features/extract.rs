//! Reads patients' facts from the warehouse (a read-only client on the `warehouse`
//! database) into [`History`]: SQL fetches raw facts with their staging positions and
//! nothing else; every aggregate is computed in Rust ([`super::features`]).
//!
//! Reads go a slice of patients at a time (`patient_key IN (...)`, [`KEYS_PER_QUERY`]
//! keys per query), so memory holds one slice's facts. ReplacingMergeTree tables are
//! read with FINAL and without tombstones, as the warehouse's own readers do.

use std::collections::HashMap;

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};

use super::{Diagnosis, Encounter, History, Reading, Transfer, VitalSet};

/// Patient keys per `IN` list.
pub const KEYS_PER_QUERY: usize = 500;

/// The warehouse load pipeline whose watermark a training set records.
pub const PIPELINE: &str = "staging_to_warehouse";

pub type Result<T> = std::result::Result<T, clickhouse::error::Error>;

struct InList<'a>(&'a [String]);

impl Serialize for InList<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = serializer.serialize_tuple(self.0.len())?;
        for k in self.0 {
            t.serialize_element(k)?;
        }
        t.end()
    }
}

async fn by_keys<T>(client: &Client, sql: &str, keys: &[String]) -> Result<Vec<T>>
where
    T: clickhouse::RowOwned + clickhouse::RowRead,
{
    let mut out = Vec::new();
    for slice in keys.chunks(KEYS_PER_QUERY) {
        out.extend(
            client
                .query(sql)
                .bind(InList(slice))
                .with_setting("max_query_size", "10000000")
                .fetch_all::<T>()
                .await?,
        );
    }
    Ok(out)
}

/// Every patient with an encounter, as `toString(patient_key)`, in key order.
pub async fn patients_with_encounters(client: &Client) -> Result<Vec<String>> {
    #[derive(Row, Deserialize)]
    struct K {
        k: String,
    }
    Ok(client
        .query("SELECT DISTINCT toString(patient_key) AS k FROM fact_encounter FINAL WHERE is_deleted = 0 ORDER BY k")
        .fetch_all::<K>()
        .await?
        .into_iter()
        .map(|k| k.k)
        .collect())
}

/// The patient key of (assigning authority, MRN), if the warehouse knows the patient.
pub async fn patient_key(client: &Client, authority: &str, mrn: &str) -> Result<Option<String>> {
    #[derive(Row, Deserialize)]
    struct K {
        k: String,
    }
    Ok(client
        .query("SELECT toString(patient_key) AS k FROM patient_identity FINAL WHERE assigning_authority = ? AND mrn = ? LIMIT 1")
        .bind(authority)
        .bind(mrn)
        .fetch_all::<K>()
        .await?
        .into_iter()
        .next()
        .map(|k| k.k))
}

/// The patient keys of (assigning authority, MRN) pairs the warehouse knows.
pub async fn patient_keys(client: &Client, patients: &[(String, String)]) -> Result<HashMap<(String, String), String>> {
    #[derive(Row, Deserialize)]
    struct K {
        authority: String,
        mrn: String,
        k: String,
    }
    let mut mrns: Vec<String> = patients.iter().map(|(_, m)| m.clone()).collect();
    mrns.sort();
    mrns.dedup();
    let rows: Vec<K> = by_keys(
        client,
        "SELECT DISTINCT assigning_authority AS authority, mrn, toString(patient_key) AS k \
         FROM patient_identity FINAL WHERE mrn IN ?",
        &mrns,
    )
    .await?;
    let wanted: std::collections::HashSet<&(String, String)> = patients.iter().collect();
    Ok(rows
        .into_iter()
        .map(|r| ((r.authority, r.mrn), r.k))
        .filter(|(id, _)| wanted.contains(id))
        .collect())
}

/// The lowest staging position of the vital-signs sets taken in the `window_ms` before
/// the newest one; `None` without sets.
pub async fn first_set_position_within(client: &Client, window_ms: i64) -> Result<Option<u64>> {
    #[derive(Row, Deserialize)]
    struct P {
        n: u64,
        p: u64,
    }
    let r = client
        .query(
            "SELECT count() AS n, min(source_position) AS p FROM fact_vital_sign_set FINAL \
             WHERE is_deleted = 0 AND taken_at_ms >= (SELECT max(taken_at_ms) FROM fact_vital_sign_set) - ?",
        )
        .bind(window_ms)
        .fetch_one::<P>()
        .await?;
    Ok((r.n > 0).then_some(r.p))
}

/// The warehouse load watermark: every staged event at or below it is in the warehouse.
pub async fn watermark(client: &Client) -> Result<u64> {
    #[derive(Row, Deserialize)]
    struct W {
        pos: u64,
    }
    Ok(client
        .query("SELECT argMax(position, version) AS pos FROM load_watermark WHERE pipeline = ?")
        .bind(PIPELINE)
        .fetch_one::<W>()
        .await?
        .pos)
}

/// The newest time the warehouse has facts for (vital-signs sets, admissions,
/// discharges): outcomes after it are not known yet.
pub async fn horizon_ms(client: &Client) -> Result<i64> {
    #[derive(Row, Deserialize)]
    struct H {
        h: i64,
    }
    Ok(client
        .query(
            "SELECT greatest(greatest( \
               (SELECT max(taken_at_ms) FROM fact_vital_sign_set), \
               (SELECT max(ifNull(admitted_at_ms, 0)) FROM fact_encounter)), \
               (SELECT max(ifNull(discharged_at_ms, 0)) FROM fact_encounter)) AS h",
        )
        .fetch_one::<H>()
        .await?
        .h)
}

#[derive(Row, Deserialize)]
struct PatientRow {
    k: String,
    birth_date: String,
    sex: String,
    deceased_at_ms: Option<i64>,
}

#[derive(Row, Deserialize)]
struct ReadingRow {
    k: String,
    code: String,
    v: f64,
    at_ms: i64,
    position: u64,
}

#[derive(Row, Deserialize)]
struct SetRow {
    k: String,
    source_event_id: String,
    encounter_id: String,
    at_ms: i64,
    position: u64,
    consciousness: String,
    supplemental_oxygen: Option<u8>,
    spo2_scale: String,
}

#[derive(Row, Deserialize)]
struct EncounterRow {
    k: String,
    encounter_id: String,
    encounter_class: String,
    admission_type: String,
    admitted_at_ms: Option<i64>,
    admission_position: u64,
    admission_department_code: String,
    admission_ward_code: String,
    discharged_at_ms: Option<i64>,
    discharge_position: u64,
    discharge_disposition: String,
    ed_arrival_at_ms: Option<i64>,
    ed_arrival_position: u64,
}

#[derive(Row, Deserialize)]
struct TransferRow {
    encounter_id: String,
    at_ms: i64,
    position: u64,
    department: String,
    ward: String,
}

#[derive(Row, Deserialize)]
struct DiagnosisRow {
    k: String,
    code: String,
    at_ms: i64,
    position: u64,
}

#[derive(Row, Deserialize)]
struct IcuRow {
    k: String,
    intime_ms: i64,
}

fn add_readings(
    out: &mut HashMap<String, History>,
    rows: Vec<ReadingRow>,
    list: fn(&mut History) -> &mut Vec<Reading>,
) {
    for r in rows {
        if let Some(h) = out.get_mut(&r.k) {
            list(h).push(Reading {
                code: r.code,
                value: r.v,
                at_ms: r.at_ms,
                position: r.position,
            });
        }
    }
}

fn parse_date(s: &str) -> Option<(i32, u32, u32)> {
    let mut parts = s.splitn(3, '-');
    Some((
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.get(..2)?.parse().ok()?,
    ))
}

const PATIENTS_SQL: &str = "SELECT toString(patient_key) AS k, birth_date, sex, deceased_at_ms FROM dim_patient FINAL \
         WHERE is_current = 1 AND is_deleted = 0 AND patient_key IN ?";
const VITALS_SQL: &str = "SELECT toString(patient_key) AS k, loinc_code AS code, value AS v, taken_at_ms AS at_ms, source_position AS position \
         FROM fact_vital_sign FINAL WHERE is_deleted = 0 AND patient_key IN ?";
const LABS_SQL: &str =
    "SELECT toString(patient_key) AS k, loinc_code AS code, assumeNotNull(value) AS v, resulted_at_ms AS at_ms, \
         source_position AS position FROM fact_lab_result FINAL \
         WHERE is_deleted = 0 AND isNotNull(value) AND patient_key IN ?";
const SETS_SQL: &str = "SELECT toString(patient_key) AS k, source_event_id, encounter_id, taken_at_ms AS at_ms, \
         source_position AS position, consciousness, supplemental_oxygen, spo2_scale \
         FROM fact_vital_sign_set FINAL WHERE is_deleted = 0 AND patient_key IN ?";
const ENCOUNTERS_SQL: &str =
    "SELECT toString(patient_key) AS k, encounter_id, encounter_class, admission_type, admitted_at_ms, \
         admission_position, admission_department_code, admission_ward_code, discharged_at_ms, discharge_position, \
         discharge_disposition, ed_arrival_at_ms, ed_arrival_position \
         FROM fact_encounter FINAL WHERE is_deleted = 0 AND patient_key IN ?";
const TRANSFERS_SQL: &str =
    "SELECT toString(patient_key) AS k, encounter_id, transferred_at_ms AS at_ms, source_position AS position, \
             to_department_code AS department, to_ward_code AS ward \
             FROM fact_transfer FINAL WHERE is_deleted = 0 AND patient_key IN ?";
const DIAGNOSES_SQL: &str = "SELECT toString(patient_key) AS k, code, ifNull(recorded_at_ms, onset_at_ms) AS at_ms, source_position AS position \
         FROM fact_diagnosis FINAL WHERE is_deleted = 0 AND patient_key IN ?";
const ICU_SQL: &str =
    "SELECT toString(patient_key) AS k, intime_ms FROM fact_icu_stay FINAL WHERE is_deleted = 0 AND patient_key IN ?";

/// Every query [`histories`] runs, each with `patient_key IN ?`.
pub const HISTORY_SQL: [&str; 8] = [
    PATIENTS_SQL,
    VITALS_SQL,
    LABS_SQL,
    SETS_SQL,
    ENCOUNTERS_SQL,
    TRANSFERS_SQL,
    DIAGNOSES_SQL,
    ICU_SQL,
];

/// The bytes of the rows [`histories`] reads for `keys`, fetched as RowBinary and not
/// decoded: the limit its benchmark (`ml/benches/sidecar.rs`) compares a build with.
pub async fn history_bytes(client: &Client, keys: &[String]) -> Result<u64> {
    let mut bytes = 0u64;
    for sql in HISTORY_SQL {
        for slice in keys.chunks(KEYS_PER_QUERY) {
            let mut cursor = client
                .query(sql)
                .bind(InList(slice))
                .with_setting("max_query_size", "10000000")
                .fetch_bytes("RowBinary")?;
            while let Some(chunk) = cursor.next().await? {
                bytes += chunk.len() as u64;
            }
        }
    }
    Ok(bytes)
}

/// The facts of `keys` (patient keys as strings), and each one's ICU stay starts (for
/// labels).
pub async fn histories(
    client: &Client,
    keys: &[String],
) -> Result<(HashMap<String, History>, HashMap<String, Vec<i64>>)> {
    let mut out: HashMap<String, History> = keys.iter().map(|k| (k.clone(), History::default())).collect();
    let patients: Vec<PatientRow> = by_keys(client, PATIENTS_SQL, keys).await?;
    for p in patients {
        if let Some(h) = out.get_mut(&p.k) {
            h.birth = parse_date(&p.birth_date);
            h.sex = p.sex;
            h.deceased_at_ms = p.deceased_at_ms;
        }
    }
    let vitals: Vec<ReadingRow> = by_keys(client, VITALS_SQL, keys).await?;
    add_readings(&mut out, vitals, |h| &mut h.vitals);
    let labs: Vec<ReadingRow> = by_keys(client, LABS_SQL, keys).await?;
    add_readings(&mut out, labs, |h| &mut h.labs);
    let sets: Vec<SetRow> = by_keys(client, SETS_SQL, keys).await?;
    for s in sets {
        if let Some(h) = out.get_mut(&s.k) {
            h.sets.push(VitalSet {
                source_event_id: s.source_event_id,
                encounter_id: s.encounter_id,
                at_ms: s.at_ms,
                position: s.position,
                consciousness: s.consciousness,
                supplemental_oxygen: s.supplemental_oxygen.map(|o| o != 0),
                spo2_scale: s.spo2_scale,
            });
        }
    }
    let encounters: Vec<EncounterRow> = by_keys(client, ENCOUNTERS_SQL, keys).await?;
    let transfers: Vec<(String, TransferRow)> = {
        #[derive(Row, Deserialize)]
        struct T {
            k: String,
            encounter_id: String,
            at_ms: i64,
            position: u64,
            department: String,
            ward: String,
        }
        by_keys::<T>(client, TRANSFERS_SQL, keys)
            .await?
            .into_iter()
            .map(|t| {
                (
                    t.k,
                    TransferRow {
                        encounter_id: t.encounter_id,
                        at_ms: t.at_ms,
                        position: t.position,
                        department: t.department,
                        ward: t.ward,
                    },
                )
            })
            .collect()
    };
    let mut by_encounter: HashMap<(String, String), Vec<Transfer>> = HashMap::new();
    for (k, t) in transfers {
        by_encounter
            .entry((k, t.encounter_id))
            .or_default()
            .push((t.at_ms, t.position, t.department, t.ward));
    }
    for e in encounters {
        let transfers = by_encounter
            .remove(&(e.k.clone(), e.encounter_id.clone()))
            .unwrap_or_default();
        if let Some(h) = out.get_mut(&e.k) {
            h.encounters.push(Encounter {
                encounter_id: e.encounter_id,
                encounter_class: e.encounter_class,
                admission_type: e.admission_type,
                admitted_at_ms: e.admitted_at_ms,
                admission_position: e.admission_position,
                admission_ward: e.admission_ward_code,
                admission_department: e.admission_department_code,
                discharged_at_ms: e.discharged_at_ms,
                discharge_position: e.discharge_position,
                discharge_disposition: e.discharge_disposition,
                ed_arrival_at_ms: e.ed_arrival_at_ms,
                ed_arrival_position: e.ed_arrival_position,
                transfers,
            });
        }
    }
    let diagnoses: Vec<DiagnosisRow> = by_keys(client, DIAGNOSES_SQL, keys).await?;
    for d in diagnoses {
        if let Some(h) = out.get_mut(&d.k) {
            h.diagnoses.push(Diagnosis {
                code: d.code,
                at_ms: d.at_ms,
                position: d.position,
            });
        }
    }
    let icu: Vec<IcuRow> = by_keys(client, ICU_SQL, keys).await?;
    let mut icu_starts: HashMap<String, Vec<i64>> = HashMap::new();
    for r in icu {
        icu_starts.entry(r.k).or_default().push(r.intime_ms);
    }
    // Deterministic order, whatever order the server returned.
    for h in out.values_mut() {
        h.vitals
            .sort_by(|a, b| (a.at_ms, a.position, &a.code).cmp(&(b.at_ms, b.position, &b.code)));
        h.labs
            .sort_by(|a, b| (a.at_ms, a.position, &a.code).cmp(&(b.at_ms, b.position, &b.code)));
        h.sets.sort_by_key(|s| (s.at_ms, s.position));
        h.encounters
            .sort_by(|a, b| (a.admitted_at_ms, &a.encounter_id).cmp(&(b.admitted_at_ms, &b.encounter_id)));
        for e in &mut h.encounters {
            e.transfers.sort();
        }
        h.diagnoses
            .sort_by(|a, b| (a.at_ms, a.position, &a.code).cmp(&(b.at_ms, b.position, &b.code)));
    }
    Ok((out, icu_starts))
}
