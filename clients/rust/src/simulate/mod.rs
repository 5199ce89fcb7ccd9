//! `hospital simulate`: a synthetic hospital that produces the canonical events its
//! systems would send, deterministic for a seed.
//!
//! A discrete-event simulation: a queue of timed actions (an arrival, a triage, a ward
//! round dose, a set of observations...) is processed in time order, and each action
//! emits the events of that moment and schedules what follows. The [`Simulator`] is an
//! iterator of events in the order they are sent, which is non-decreasing `occurred_at`
//! except for theatre procedures (recorded when the operation ends, dated at its
//! start), so a caller can stream a past period at full speed or release each event
//! when the wall clock reaches it; memory is bounded by the patients in the hospital,
//! not by the length of the period. A period starts with an empty hospital (the wards
//! fill over the first week or so) unless [`SimOptions::warm_up_days`] runs it first and
//! sends a go-live snapshot at the start.
//!
//! The hospital ([`hospital`]): 176 beds on seven wards (an acute medical unit,
//! respiratory, cardiology, elderly care, general surgery, orthopaedics, ICU) and an
//! emergency department.
//! - Emergency arrivals follow a real ED's hourly and weekly pattern ([`arrivals`]),
//!   scaled to [`SimOptions::ed_arrivals_per_day`]; 15% are returning patients. Each
//!   brings a presenting problem (complaint, ICD-10 diagnosis, acuity range, admission
//!   chance, ward, length of stay, drugs). Triage comes after a wait that grows with the
//!   number of patients in the department; minor problems go home after a few hours.
//! - Admitted patients wait in the ED for a bed (boarding) when the wards are full: the
//!   acute medical unit first for medical problems, then the specialty ward; outliers
//!   go to another ward of the same department. Beds are cleaned after each patient and
//!   now and then blocked for maintenance.
//! - Elective surgical admissions arrive on weekday mornings; when no bed is free the
//!   operation is cancelled (counted in [`SimStats`]).
//! - Length of stay is log-normal around the problem's median; discharges happen in the
//!   daytime.
//! - Each patient has baseline vital signs and laboratory values; illness severity
//!   (0..1) starts from the triage acuity and settles with treatment. Some patients have
//!   a deterioration episode: severity climbs over hours, observations become hourly,
//!   and it ends in recovery (antibiotics, a longer stay), an ICU transfer and step-down,
//!   or death. Vital signs move with severity the way NEWS2 parameters do (respiratory
//!   and heart rate up, SpO2 and blood pressure down, fever, new confusion), so a NEWS2
//!   score catches the episodes. COPD patients are on SpO2 scale 2.
//! - Blood tests (FBC, U&E, CRP, lactate) in the ED and every morning on the wards, with
//!   results an hour or so after collection; medication orders on admission, a pharmacy
//!   dispense, and administrations on the ward round times with the odd omitted dose.
//! - Charges at discharge: ED attendance by acuity, bed days by ward kind, laboratory
//!   panels, administered doses and theatre procedures, priced by payer.
//!
//! Events come from the systems that would send them: `<prefix>-adt`, `-eobs` (vital
//! signs), `-lis` (laboratory), `-pharmacy`, `-emar` (administrations), `-billing`,
//! `-beds` and `-ref` (reference data, sent once at the start). Event, encounter and
//! MRN ids include a tag of (seed, start), so two different periods never collide and
//! a re-run of the same period is absorbed by the platform's dedup.

pub mod arrivals;
pub mod hospital;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use hospital_proto::events::{self as pb, clinical_event::Payload, reference_data::Item};
use prost_types::Timestamp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Normal, Poisson};

use arrivals::{weekday_hour, Arrivals};
use hospital::{
    bed_day_charge, drug_by_code, Frequency, Problem, WardKind, AMU, ED_ATTENDANCE, ED_DEPARTMENT, ED_PROBLEMS,
    ELECTIVES, FORMULARY, ICU, PANELS, PAYERS, WARDS,
};

/// Long-term conditions coded as secondary diagnoses: ICD-10, from what age, how often.
const COMORBIDITIES: &[(&str, i32, f64)] = &[
    ("I10", 50, 0.35),
    ("E11.9", 45, 0.15),
    ("N18.3", 65, 0.12),
    ("I48.9", 65, 0.10),
    ("J44.9", 55, 0.08),
    ("F03.9", 80, 0.15),
];

const MINUTE: i64 = 60;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub seed: u64,
    /// Start of the period, seconds since the Unix epoch (UTC is local time here).
    pub start_secs: i64,
    /// End of the period (exclusive); `None` runs for ever (a live feed).
    pub end_secs: Option<i64>,
    /// Emergency arrivals on an average day.
    pub ed_arrivals_per_day: f64,
    /// Planned surgical admissions per weekday.
    pub electives_per_weekday: f64,
    /// Prefix of the source system names (`sim` -> `sim-adt`, `sim-lis`, ...).
    pub source_prefix: String,
    /// Days the hospital runs before the period without sending anything, so that the
    /// period starts with full wards. At the start it sends what a go-live snapshot
    /// would: every patient registered so far, and for each patient in hospital the
    /// stay so far (ED arrival and triage, admission, transfers, diagnoses, medication
    /// orders), dated when it happened; then the bed states. 0: an empty hospital.
    pub warm_up_days: u32,
}

impl Default for SimOptions {
    fn default() -> Self {
        // 2026-01-05T00:00:00Z, a Monday.
        let start_secs = 1_767_571_200;
        Self {
            seed: 42,
            start_secs,
            end_secs: Some(start_secs + 14 * DAY),
            ed_arrivals_per_day: 90.0,
            electives_per_weekday: 6.0,
            source_prefix: "sim".into(),
            warm_up_days: 0,
        }
    }
}

/// What happened in the simulated period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    pub events: u64,
    pub ed_arrivals: u64,
    pub ed_discharges: u64,
    pub emergency_admissions: u64,
    pub elective_admissions: u64,
    pub electives_cancelled: u64,
    /// Emergency admissions that waited in the ED for a bed, and the total wait.
    pub boarded: u64,
    pub boarding_minutes: u64,
    pub transfers: u64,
    pub deteriorations: u64,
    pub icu_admissions: u64,
    pub deaths: u64,
    pub discharges: u64,
    pub beds_blocked: u64,
    pub max_occupied_beds: u64,
    /// Patients in hospital (ED or a bed) when the period ended.
    pub in_hospital_at_end: u64,
}

/// The simulated hospital: an iterator of canonical events in time order.
pub struct Simulator {
    opts: SimOptions,
    rng: StdRng,
    now: i64,
    queue: BinaryHeap<Scheduled>,
    next_seq: u64,
    out: VecDeque<pb::ClinicalEvent>,
    event_seq: u64,
    tag: String,
    arrivals: Arrivals,
    people: Vec<Person>,
    stays: BTreeMap<u64, Stay>,
    next_stay: u64,
    beds: Vec<Vec<Bed>>,
    in_ed: u64,
    stats: SimStats,
    finished: bool,
    /// Before the period (warm-up): stays' events are kept here, by encounter, not sent.
    warming: bool,
    warm_stays: BTreeMap<String, Vec<pb::ClinicalEvent>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bed {
    Available,
    Occupied,
    Cleaning,
    Blocked,
}

struct Person {
    mrn: String,
    registered_at: i64,
    demographics: pb::PatientDemographics,
    age: i32,
    in_hospital: bool,
    deceased: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Recover,
    Icu,
    Death,
}

#[derive(Debug, Clone)]
struct Episode {
    onset: i64,
    peak_at: i64,
    peak: f64,
    /// When severity starts to fall, and over how long (None: it does not).
    resolve: Option<(i64, i64)>,
    outcome: Outcome,
}

struct Baseline {
    rr: f64,
    spo2: f64,
    sbp: f64,
    hr: f64,
    temp: f64,
    /// One per test of [`PANELS`], in order.
    labs: Vec<f64>,
    fahrenheit: bool,
}

struct Order {
    id: String,
    drug: &'static hospital::Drug,
    ends_at: Option<i64>,
}

struct Stay {
    person: usize,
    encounter: String,
    problem: &'static Problem,
    elective: bool,
    acuity: u32,
    arrived: i64,
    payer: usize,
    /// Current bed (ward index, bed index); None while in the ED.
    bed: Option<(usize, usize)>,
    bed_since: i64,
    admitted_at: Option<i64>,
    wants_bed_since: Option<i64>,
    discharge_at: i64,
    s0: f64,
    baseline: Baseline,
    episode: Option<Episode>,
    orders: Vec<Order>,
    vitals_generation: u32,
    /// Charge accumulators.
    bed_secs: [i64; 3],
    panels: BTreeMap<&'static str, u32>,
    doses: BTreeMap<&'static str, u32>,
    lab_orders: u32,
}

impl Stay {
    fn severity(&self, t: i64) -> f64 {
        let settled = self.s0 * (-((t - self.arrived).max(0) as f64) / (1.5 * DAY as f64)).exp();
        let episode = self.episode.as_ref().map_or(0.0, |e| {
            if t < e.onset {
                0.0
            } else if t < e.peak_at {
                e.peak * (t - e.onset) as f64 / (e.peak_at - e.onset).max(1) as f64
            } else {
                match e.resolve {
                    Some((from, over)) if t >= from => e.peak * (1.0 - (t - from) as f64 / over.max(1) as f64).max(0.0),
                    _ => e.peak,
                }
            }
        });
        (settled + episode).clamp(0.0, 1.0)
    }

    fn ward_kind(&self) -> Option<WardKind> {
        self.bed.map(|(w, _)| WARDS[w].kind)
    }
}

#[derive(Debug, Clone, Copy)]
enum Action {
    NextEdArrival,
    DayStart,
    ElectiveArrival(usize),
    Triage(u64),
    EdDecision(u64),
    SeekBed(u64),
    Vitals(u64, u32),
    Bloods(u64, bool),
    Results(u64, i64, u8),
    Dispense(u64, usize),
    Dose(u64, usize),
    Operation(u64, i64),
    Deterioration(u64),
    Escalate(u64),
    IcuTransfer(u64),
    StepDown(u64),
    LeaveAssessmentUnit(u64),
    Discharge(u64),
    Death(u64),
    BedReady(usize, usize),
    GoLive,
}

struct Scheduled {
    at: i64,
    seq: u64,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Earliest first in a max-heap.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Panels as a bit set over [`PANELS`].
const FBC: u8 = 1;
const UE: u8 = 2;
const CRP: u8 = 4;
const LACTATE: u8 = 8;

impl Simulator {
    pub fn new(opts: SimOptions) -> Self {
        let mix = opts.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
            ^ (opts.start_secs as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        let tag = format!("{:06X}", (mix ^ (mix >> 29)) & 0xFF_FFFF);
        let mut sim = Self {
            rng: StdRng::seed_from_u64(opts.seed),
            now: opts.start_secs,
            queue: BinaryHeap::new(),
            next_seq: 0,
            out: VecDeque::new(),
            event_seq: 0,
            tag,
            arrivals: Arrivals::new(opts.ed_arrivals_per_day),
            people: Vec::new(),
            stays: BTreeMap::new(),
            next_stay: 0,
            beds: WARDS.iter().map(|w| vec![Bed::Available; w.beds as usize]).collect(),
            in_ed: 0,
            stats: SimStats::default(),
            finished: false,
            warming: false,
            warm_stays: BTreeMap::new(),
            opts,
        };
        let period = sim.opts.start_secs;
        let start = period - i64::from(sim.opts.warm_up_days) * DAY;
        if start < period {
            sim.now = start;
            sim.warming = true;
            // First at the period's start (lowest sequence number among equal times).
            sim.schedule(period, Action::GoLive);
        } else {
            sim.reference_data();
        }
        sim.schedule(start, Action::NextEdArrival);
        let first_midnight = start.div_euclid(DAY) * DAY + if start.rem_euclid(DAY) == 0 { 0 } else { DAY };
        sim.schedule(first_midnight, Action::DayStart);
        sim
    }

    /// What has happened so far.
    pub fn stats(&self) -> SimStats {
        let mut s = self.stats.clone();
        s.in_hospital_at_end = self.stays.len() as u64;
        s
    }

    /// The source system names events come from.
    pub fn source_systems(prefix: &str) -> Vec<String> {
        ["adt", "eobs", "lis", "pharmacy", "emar", "billing", "beds", "ref"]
            .iter()
            .map(|s| format!("{prefix}-{s}"))
            .collect()
    }

    fn schedule(&mut self, at: i64, action: Action) {
        self.next_seq += 1;
        self.queue.push(Scheduled {
            at: at.max(self.now),
            seq: self.next_seq,
            action,
        });
    }

    fn source(&self, system: &str) -> String {
        format!("{}-{system}", self.opts.source_prefix)
    }

    fn emit(&mut self, system: &str, person: Option<usize>, payload: Payload) {
        let event_id = self.next_event_id();
        self.push_event(event_id, system, person, payload);
    }

    fn next_event_id(&mut self) -> String {
        self.event_seq += 1;
        format!("{}{}-{:09}", self.opts.source_prefix, self.tag, self.event_seq)
    }

    fn push_event(&mut self, event_id: String, system: &str, person: Option<usize>, payload: Payload) {
        let at = self.now;
        self.push_event_at(event_id, system, person, payload, at);
    }

    fn push_event_at(&mut self, event_id: String, system: &str, person: Option<usize>, payload: Payload, at: i64) {
        let patient = person.map(|p| pb::PatientRef {
            mrn: self.people[p].mrn.clone(),
            assigning_authority: "HOSP".into(),
        });
        let event = pb::ClinicalEvent {
            event_id,
            source_system: self.source(system),
            occurred_at: Some(Timestamp { seconds: at, nanos: 0 }),
            patient,
            payload: Some(payload),
        };
        if self.warming {
            self.keep_for_snapshot(event);
        } else {
            self.stats.events += 1;
            self.out.push_back(event);
        }
    }

    /// During warm-up: what a go-live snapshot needs of a stay, by encounter. Vital
    /// signs, results, administrations, bed states and charges before the period are
    /// not sent; registrations are sent from the people at go-live.
    fn keep_for_snapshot(&mut self, event: pb::ClinicalEvent) {
        let encounter = match &event.payload {
            Some(Payload::EdArrival(a)) => &a.encounter_id,
            Some(Payload::EdTriage(t)) => &t.encounter_id,
            Some(Payload::Admission(a)) => &a.encounter_id,
            Some(Payload::Transfer(t)) => &t.encounter_id,
            Some(Payload::Diagnosis(d)) => &d.encounter_id,
            Some(Payload::Procedure(p)) => &p.encounter_id,
            Some(Payload::MedicationOrder(o)) => &o.encounter_id,
            Some(Payload::Discharge(d)) => {
                self.warm_stays.remove(&d.encounter_id);
                return;
            }
            _ => return,
        };
        self.warm_stays.entry(encounter.clone()).or_default().push(event);
    }

    /// The period starts: reference data, every patient registered so far, the stays
    /// of those in hospital, the beds that are not available; counts start from here.
    fn go_live(&mut self) {
        self.warming = false;
        self.stats = SimStats::default();
        self.reference_data();
        for p in 0..self.people.len() {
            let (at, demographics) = (self.people[p].registered_at, self.people[p].demographics.clone());
            let id = self.next_event_id();
            self.push_event_at(id, "adt", Some(p), Payload::PatientRegistered(demographics), at);
        }
        let active: Vec<String> = self.stays.values().map(|s| s.encounter.clone()).collect();
        for encounter in active {
            for event in self.warm_stays.remove(&encounter).unwrap_or_default() {
                self.stats.events += 1;
                self.out.push_back(event);
            }
        }
        self.warm_stays.clear();
        for w in 0..self.beds.len() {
            for b in 0..self.beds[w].len() {
                let state = match self.beds[w][b] {
                    Bed::Available => continue,
                    Bed::Occupied => pb::BedState::Occupied,
                    Bed::Cleaning => pb::BedState::Cleaning,
                    Bed::Blocked => pb::BedState::Blocked,
                };
                self.bed_status(w, b, state);
            }
        }
        self.stats.max_occupied_beds = self.beds.iter().flatten().filter(|b| **b == Bed::Occupied).count() as u64;
    }

    /// Wards, formulary and payers, with ids that do not depend on the run: every run
    /// sends the same reference data and the platform keeps one copy.
    fn reference_data(&mut self) {
        let mut items: Vec<(String, Item)> = Vec::new();
        for w in WARDS {
            items.push((
                format!("ward/{}", w.code),
                Item::Ward(pb::Ward {
                    department_code: w.department.into(),
                    department_name: w.department_name.into(),
                    ward_code: w.code.into(),
                    ward_name: w.name.into(),
                    bed_count: w.beds,
                }),
            ));
        }
        for d in FORMULARY {
            items.push((
                format!("drug/RxNorm/{}", d.rxnorm),
                Item::Drug(pb::Drug {
                    code: d.rxnorm.into(),
                    code_system: "RxNorm".into(),
                    name: d.name.into(),
                    drug_class: d.class.into(),
                    ..Default::default()
                }),
            ));
        }
        for (code, name, kind, _, _) in PAYERS {
            items.push((
                format!("payer/{code}"),
                Item::Payer(pb::Payer {
                    code: (*code).into(),
                    name: (*name).into(),
                    payer_type: (*kind).into(),
                }),
            ));
        }
        for (id, item) in items {
            let event_id = format!("{}-ref/{id}", self.opts.source_prefix);
            self.push_event(
                event_id,
                "ref",
                None,
                Payload::ReferenceData(pb::ReferenceData { item: Some(item) }),
            );
        }
    }

    fn step(&mut self) -> bool {
        let Some(next) = self.queue.peek() else {
            return false;
        };
        if self.opts.end_secs.is_some_and(|end| next.at >= end) {
            return false;
        }
        let Some(Scheduled { at, action, .. }) = self.queue.pop() else {
            return false;
        };
        self.now = at;
        self.run(action);
        true
    }

    fn run(&mut self, action: Action) {
        match action {
            Action::NextEdArrival => self.ed_arrival(),
            Action::DayStart => self.day_start(),
            Action::ElectiveArrival(i) => self.elective_arrival(i),
            Action::Triage(id) => self.triage(id),
            Action::EdDecision(id) => self.ed_decision(id),
            Action::SeekBed(id) => self.seek_bed(id),
            Action::Vitals(id, generation) => self.vitals(id, generation),
            Action::Bloods(id, daily) => self.bloods(id, daily),
            Action::Results(id, collected, panels) => self.results(id, collected, panels),
            Action::Dispense(id, order) => self.dispense(id, order),
            Action::Dose(id, order) => self.dose(id, order),
            Action::Operation(id, start) => self.operation(id, start),
            Action::Deterioration(id) => self.deterioration(id),
            Action::Escalate(id) => self.escalate(id),
            Action::IcuTransfer(id) => self.icu_transfer(id),
            Action::StepDown(id) => self.step_down(id),
            Action::LeaveAssessmentUnit(id) => self.leave_assessment_unit(id),
            Action::Discharge(id) => self.discharge(id, false),
            Action::Death(id) => self.discharge(id, true),
            Action::GoLive => self.go_live(),
            Action::BedReady(w, b) => {
                if matches!(self.beds[w][b], Bed::Cleaning | Bed::Blocked) {
                    self.beds[w][b] = Bed::Available;
                    self.bed_status(w, b, pb::BedState::Available);
                }
            }
        }
    }

    // ---- people and arrivals ----

    /// A returning patient (15%) or a new one registered now.
    fn person(&mut self, ages: (i32, i32)) -> usize {
        if !self.people.is_empty() && self.rng.random_bool(0.15) {
            for _ in 0..5 {
                let p = self.rng.random_range(0..self.people.len());
                if !self.people[p].in_hospital && !self.people[p].deceased {
                    self.people[p].in_hospital = true;
                    // One in ten has moved since the last visit.
                    if self.rng.random_bool(0.1) {
                        let postal_code = postal_code(&mut self.rng);
                        let demographics = &mut self.people[p].demographics;
                        demographics.postal_code = postal_code;
                        let updated = demographics.clone();
                        self.emit("adt", Some(p), Payload::PatientUpdated(updated));
                    }
                    return p;
                }
            }
        }
        let rng = &mut self.rng;
        let age = rng.random_range(ages.0..=ages.1);
        let female = rng.random_bool(0.5);
        let given = if female {
            hospital::GIVEN_FEMALE[rng.random_range(0..hospital::GIVEN_FEMALE.len())]
        } else {
            hospital::GIVEN_MALE[rng.random_range(0..hospital::GIVEN_MALE.len())]
        };
        let family = hospital::FAMILY[rng.random_range(0..hospital::FAMILY.len())];
        let year = 1970 + (self.now / (365.2425 * DAY as f64) as i64) as i32 - age;
        let demographics = pb::PatientDemographics {
            given_name: given.into(),
            family_name: family.into(),
            birth_date: Some(pb::Date {
                year: year - 1,
                month: rng.random_range(1..=12),
                day: rng.random_range(1..=28),
            }),
            sex: if female {
                pb::AdministrativeSex::Female
            } else {
                pb::AdministrativeSex::Male
            } as i32,
            postal_code: postal_code(rng),
            deceased_at: None,
        };
        let mrn = format!("M{}{:06}", self.tag, self.people.len() + 1);
        self.people.push(Person {
            mrn,
            demographics: demographics.clone(),
            age,
            in_hospital: true,
            deceased: false,
            registered_at: self.now,
        });
        let p = self.people.len() - 1;
        self.emit("adt", Some(p), Payload::PatientRegistered(demographics));
        p
    }

    fn pick_payer(&mut self) -> usize {
        let x: f64 = self.rng.random();
        let mut acc = 0.0;
        for (i, p) in PAYERS.iter().enumerate() {
            acc += p.3;
            if x < acc {
                return i;
            }
        }
        0
    }

    fn pick_problem(&mut self, list: &'static [Problem]) -> &'static Problem {
        let total: f64 = list.iter().map(|p| p.weight).sum();
        let mut x = self.rng.random::<f64>() * total;
        for p in list {
            if x < p.weight {
                return p;
            }
            x -= p.weight;
        }
        &list[list.len() - 1]
    }

    fn new_stay(&mut self, person: usize, problem: &'static Problem, elective: bool, acuity: u32) -> u64 {
        self.next_stay += 1;
        let id = self.next_stay;
        let rng = &mut self.rng;
        let age = self.people[person].age as f64;
        let mut labs = Vec::new();
        for panel in PANELS {
            for t in panel.tests {
                labs.push(rng.random_range(t.baseline.0..t.baseline.1));
            }
        }
        let baseline = Baseline {
            rr: rng.random_range(13.0..18.0),
            spo2: if problem.spo2_scale_2 {
                rng.random_range(88.0..92.0)
            } else {
                rng.random_range(95.0..99.5)
            },
            sbp: rng.random_range(108.0..128.0) + (age - 40.0).max(0.0) * 0.35,
            hr: rng.random_range(62.0..86.0),
            temp: rng.random_range(36.4..37.2),
            labs,
            fahrenheit: rng.random_bool(0.15),
        };
        // Initial severity from acuity: 1 -> about 0.5, 2 -> 0.35, 5 -> 0.
        let s0 = ((5 - acuity as i32) as f64 * 0.12 + rng.random_range(-0.05..0.05)).clamp(0.0, 0.9);
        let stay = Stay {
            person,
            encounter: format!("E{}{:07}", self.tag, id),
            problem,
            elective,
            acuity,
            arrived: self.now,
            payer: self.pick_payer(),
            bed: None,
            bed_since: self.now,
            admitted_at: None,
            wants_bed_since: None,
            discharge_at: i64::MAX,
            s0,
            baseline,
            episode: None,
            orders: Vec::new(),
            vitals_generation: 0,
            bed_secs: [0; 3],
            panels: BTreeMap::new(),
            doses: BTreeMap::new(),
            lab_orders: 0,
        };
        self.stays.insert(id, stay);
        id
    }

    fn ed_arrival(&mut self) {
        let problem = self.pick_problem(ED_PROBLEMS);
        let person = self.person(problem.ages);
        let acuity = self.rng.random_range(problem.acuity.0..=problem.acuity.1);
        let id = self.new_stay(person, problem, false, acuity);
        self.stats.ed_arrivals += 1;
        self.in_ed += 1;
        let ambulance = self.rng.random_bool(match acuity {
            1 | 2 => 0.7,
            3 => 0.35,
            _ => 0.08,
        });
        let encounter = self.stays[&id].encounter.clone();
        self.emit(
            "adt",
            Some(person),
            Payload::EdArrival(pb::EdArrival {
                encounter_id: encounter,
                arrival_mode: if ambulance {
                    pb::ArrivalMode::Ambulance
                } else {
                    pb::ArrivalMode::WalkIn
                } as i32,
                chief_complaint: problem.complaint.into(),
                department_code: ED_DEPARTMENT.into(),
            }),
        );
        // Time to initial assessment: short for the sickest, and longer the busier the
        // department is.
        let busy = 1.0 + self.in_ed as f64 / 25.0;
        let median = match acuity {
            1 => 2.0,
            2 => 8.0,
            _ => 15.0 * busy,
        };
        let wait = self.lognormal(median, 0.5) * MINUTE as f64;
        self.schedule(self.now + wait as i64, Action::Triage(id));
        if let Some(next) = self.arrivals.next(self.now, &mut self.rng) {
            self.schedule(next, Action::NextEdArrival);
        }
    }

    fn triage(&mut self, id: u64) {
        let Some(stay) = self.stays.get(&id) else { return };
        let (person, encounter, acuity) = (stay.person, stay.encounter.clone(), stay.acuity);
        self.emit(
            "adt",
            Some(person),
            Payload::EdTriage(pb::EdTriage {
                encounter_id: encounter,
                acuity,
            }),
        );
        self.schedule_vitals(id, self.now + 5 * MINUTE);
        let problem = self.stays[&id].problem;
        if acuity <= 3 && problem.admit_share > 0.1 {
            self.schedule(self.now + 20 * MINUTE, Action::Bloods(id, false));
        }
        // Treatment given at once in the department (e.g. adrenaline).
        for code in problem.drugs {
            if drug_by_code(code).frequency == Frequency::Once && acuity <= 2 {
                self.order(id, code);
            }
        }
        // Time to a decision: longer for sicker patients (more tests).
        let median_hours = match acuity {
            1 | 2 => 2.5,
            3 => 3.0,
            _ => 1.5,
        };
        let decision = self.lognormal(median_hours, 0.45) * HOUR as f64;
        self.schedule(self.now + decision as i64, Action::EdDecision(id));
    }

    fn ed_decision(&mut self, id: u64) {
        let Some(stay) = self.stays.get(&id) else { return };
        let share = stay.problem.admit_share * if stay.acuity <= 2 { 1.2 } else { 1.0 };
        if self.rng.random_bool(share.min(1.0)) {
            self.stays.get_mut(&id).expect("stay").wants_bed_since = Some(self.now);
            self.seek_bed(id);
        } else {
            self.stats.ed_discharges += 1;
            self.discharge(id, false);
        }
    }

    fn day_start(&mut self) {
        let (weekday, _) = weekday_hour(self.now);
        if weekday < 5 && self.opts.electives_per_weekday > 0.0 {
            let n = Poisson::new(self.opts.electives_per_weekday)
                .map(|p| p.sample(&mut self.rng) as u64)
                .unwrap_or(0);
            for _ in 0..n {
                let at = self.now + 7 * HOUR + self.rng.random_range(0..2 * HOUR);
                let which = self.rng.random_range(0..ELECTIVES.len());
                self.schedule(at, Action::ElectiveArrival(which));
            }
        }
        // Now and then a bed is closed for a few hours (maintenance, infection control).
        if self.rng.random_bool(0.3) {
            let w = self.rng.random_range(0..WARDS.len());
            if let Some(b) = self.beds[w].iter().position(|b| *b == Bed::Available) {
                self.beds[w][b] = Bed::Blocked;
                self.stats.beds_blocked += 1;
                self.bed_status(w, b, pb::BedState::Blocked);
                let reopen = self.now + self.rng.random_range(4 * HOUR..36 * HOUR);
                self.schedule(reopen, Action::BedReady(w, b));
            }
        }
        self.schedule(self.now + DAY, Action::DayStart);
    }

    fn elective_arrival(&mut self, which: usize) {
        let problem = &ELECTIVES[which];
        let target = problem.ward;
        let Some(bed) = self.free_bed(target, true) else {
            self.stats.electives_cancelled += 1;
            return;
        };
        let person = self.person(problem.ages);
        let id = self.new_stay(person, problem, true, 5);
        self.stats.elective_admissions += 1;
        self.admit(id, bed);
    }

    // ---- beds ----

    /// A free bed on `ward`, else (`outlier`) on another general ward of the same
    /// department.
    fn free_bed(&mut self, ward: usize, outlier: bool) -> Option<(usize, usize)> {
        let mut candidates = vec![ward];
        if outlier {
            candidates.extend((0..WARDS.len()).filter(|&w| {
                w != ward && WARDS[w].department == WARDS[ward].department && WARDS[w].kind == WardKind::General
            }));
        }
        for w in candidates {
            let n = self.beds[w].len();
            let start = self.rng.random_range(0..n);
            if let Some(b) = (0..n)
                .map(|k| (start + k) % n)
                .find(|&b| self.beds[w][b] == Bed::Available)
            {
                return Some((w, b));
            }
        }
        None
    }

    fn location(w: usize, b: usize) -> pb::Location {
        pb::Location {
            department_code: WARDS[w].department.into(),
            ward_code: WARDS[w].code.into(),
            bed_code: format!("{}-{:02}", WARDS[w].code, b + 1),
        }
    }

    fn bed_status(&mut self, w: usize, b: usize, state: pb::BedState) {
        self.emit(
            "beds",
            None,
            Payload::BedStatus(pb::BedStatus {
                location: Some(Self::location(w, b)),
                state: state as i32,
            }),
        );
    }

    fn occupy(&mut self, id: u64, (w, b): (usize, usize)) {
        self.beds[w][b] = Bed::Occupied;
        self.bed_status(w, b, pb::BedState::Occupied);
        let occupied = self.beds.iter().flatten().filter(|b| **b == Bed::Occupied).count() as u64;
        self.stats.max_occupied_beds = self.stats.max_occupied_beds.max(occupied);
        let now = self.now;
        let stay = self.stays.get_mut(&id).expect("stay");
        stay.bed = Some((w, b));
        stay.bed_since = now;
    }

    /// Leaves the current bed (to be cleaned), adding its time to the charges.
    fn vacate(&mut self, id: u64) {
        let now = self.now;
        let stay = self.stays.get_mut(&id).expect("stay");
        let Some((w, b)) = stay.bed.take() else { return };
        let kind = WARDS[w].kind as usize;
        stay.bed_secs[kind] += now - stay.bed_since;
        self.beds[w][b] = Bed::Cleaning;
        self.bed_status(w, b, pb::BedState::Cleaning);
        let ready = now + self.rng.random_range(30 * MINUTE..90 * MINUTE);
        self.schedule(ready, Action::BedReady(w, b));
    }

    fn seek_bed(&mut self, id: u64) {
        let Some(stay) = self.stays.get(&id) else { return };
        let problem = stay.problem;
        let first = if problem.via_amu { AMU } else { problem.ward };
        let bed = self
            .free_bed(first, false)
            .or_else(|| self.free_bed(problem.ward, true));
        match bed {
            Some(bed) => self.admit(id, bed),
            // Boarding in the ED: try again when beds may have been cleaned.
            None => self.schedule(self.now + 30 * MINUTE, Action::SeekBed(id)),
        }
    }

    fn transfer(&mut self, id: u64, to: (usize, usize)) {
        let from = self.stays[&id].bed.expect("in a bed");
        self.vacate(id);
        self.occupy(id, to);
        self.stats.transfers += 1;
        let stay = &self.stays[&id];
        let (person, encounter) = (stay.person, stay.encounter.clone());
        self.emit(
            "adt",
            Some(person),
            Payload::Transfer(pb::Transfer {
                encounter_id: encounter,
                from: Some(Self::location(from.0, from.1)),
                to: Some(Self::location(to.0, to.1)),
            }),
        );
    }

    // ---- the stay ----

    fn admit(&mut self, id: u64, bed: (usize, usize)) {
        let now = self.now;
        let from_ed = !self.stays[&id].elective;
        if from_ed {
            self.in_ed -= 1;
            self.stats.emergency_admissions += 1;
            let since = self.stays[&id].wants_bed_since.unwrap_or(now);
            if now > since {
                self.stats.boarded += 1;
                self.stats.boarding_minutes += ((now - since) / MINUTE) as u64;
            }
        }
        self.occupy(id, bed);
        let attending = format!("DR{:03}", self.rng.random_range(1..60));
        let stay = self.stays.get_mut(&id).expect("stay");
        stay.admitted_at = Some(now);
        let (person, encounter, problem, payer) = (stay.person, stay.encounter.clone(), stay.problem, stay.payer);
        self.emit(
            "adt",
            Some(person),
            Payload::Admission(pb::Admission {
                encounter_id: encounter,
                encounter_class: pb::EncounterClass::Inpatient as i32,
                admission_type: if from_ed {
                    pb::AdmissionType::Emergency
                } else {
                    pb::AdmissionType::Elective
                } as i32,
                location: Some(Self::location(bed.0, bed.1)),
                attending_practitioner: attending,
                payer_code: PAYERS[payer].0.into(),
                admitting_diagnosis: problem.icd10.into(),
            }),
        );
        self.diagnosis(id, problem.icd10, pb::DiagnosisRole::Admitting, 1);
        if problem.procedure.is_some() {
            // Theatre a couple of hours after admission; recorded when it ends.
            let start = now + self.rng.random_range(2 * HOUR..4 * HOUR);
            let end = start + self.rng.random_range(60 * MINUTE..150 * MINUTE);
            self.schedule(end, Action::Operation(id, start));
        }
        // Length of stay, ending in the daytime.
        let los = self.lognormal(problem.los_days, 0.5) * DAY as f64;
        let discharge_at = daytime(now + (los as i64).max(6 * HOUR), &mut self.rng);
        // Deterioration: more likely for the old and the sick.
        let age = self.people[person].age;
        let acuity = self.stays[&id].acuity;
        let p = 0.10 + if age >= 75 { 0.08 } else { 0.0 } + if acuity <= 2 { 0.08 } else { 0.0 };
        let episode = if self.rng.random_bool(p) {
            let onset = now + ((discharge_at - now) as f64 * self.rng.random_range(0.1..0.7)) as i64;
            let peak_at = onset + self.rng.random_range(3 * HOUR..10 * HOUR);
            let peak: f64 = self.rng.random_range(0.45..0.95);
            let outcome = if peak >= 0.8 {
                let death = if age >= 80 { 0.4 } else { 0.15 };
                if self.rng.random_bool(death) {
                    Outcome::Death
                } else if self.rng.random_bool(0.75) {
                    Outcome::Icu
                } else {
                    Outcome::Recover
                }
            } else if peak >= 0.65 && self.rng.random_bool(0.25) {
                Outcome::Icu
            } else {
                Outcome::Recover
            };
            Some(Episode {
                onset,
                peak_at,
                peak,
                resolve: None,
                outcome,
            })
        } else {
            None
        };
        let stay = self.stays.get_mut(&id).expect("stay");
        stay.discharge_at = discharge_at;
        if let Some(e) = &episode {
            self.schedule(e.onset, Action::Deterioration(id));
        }
        let stay = self.stays.get_mut(&id).expect("stay");
        stay.episode = episode;
        self.schedule(discharge_at, Action::Discharge(id));
        for code in problem.drugs {
            if drug_by_code(code).frequency != Frequency::Once {
                self.order(id, code);
            }
        }
        if bed.0 == AMU {
            let leave = now + self.rng.random_range(12 * HOUR..40 * HOUR);
            self.schedule(leave, Action::LeaveAssessmentUnit(id));
        }
        self.schedule_vitals(id, now + 15 * MINUTE);
        self.schedule(next_hour_of_day(now + HOUR, 6), Action::Bloods(id, true));
    }

    /// The operation of a surgical admission, recorded when it ends (`occurred_at` is its
    /// start, so this one event is older than the moment it is sent).
    fn operation(&mut self, id: u64, start: i64) {
        let Some(stay) = self.stays.get(&id) else { return };
        let Some((code, description, _)) = stay.problem.procedure else {
            return;
        };
        let (person, encounter) = (stay.person, stay.encounter.clone());
        let surgeon = format!("DR{:03}", self.rng.random_range(1..60));
        let end = self.now;
        let event_id = self.next_event_id();
        let procedure = Payload::Procedure(pb::ProcedurePerformed {
            encounter_id: encounter,
            code: code.into(),
            code_system: pb::CodeSystem::Cpt as i32,
            display: description.into(),
            ended_at: Some(Timestamp { seconds: end, nanos: 0 }),
            rank: 1,
            performer: surgeon,
        });
        self.push_event_at(event_id, "adt", Some(person), procedure, start);
    }

    fn leave_assessment_unit(&mut self, id: u64) {
        let Some(stay) = self.stays.get(&id) else { return };
        if stay.bed.is_none_or(|(w, _)| w != AMU) {
            return;
        }
        if stay.discharge_at <= self.now + 12 * HOUR {
            return; // going home from the unit
        }
        let target = stay.problem.ward;
        match self.free_bed(target, true) {
            Some(bed) => self.transfer(id, bed),
            None => self.schedule(self.now + 2 * HOUR, Action::LeaveAssessmentUnit(id)),
        }
    }

    fn deterioration(&mut self, id: u64) {
        let Some(stay) = self.stays.get(&id) else { return };
        let Some(e) = stay.episode.clone() else { return };
        self.stats.deteriorations += 1;
        // A nurse's concern brings the next observations forward.
        self.schedule_vitals(id, self.now + (e.peak_at - e.onset) / 2);
        let delay = self.rng.random_range(0..HOUR);
        self.schedule(e.peak_at + delay, Action::Escalate(id));
    }

    /// The team responds to a deteriorating patient.
    fn escalate(&mut self, id: u64) {
        let Some(stay) = self.stays.get(&id) else { return };
        let Some(e) = stay.episode.clone() else { return };
        if !stay.orders.iter().any(|o| o.drug.rxnorm == "1659149") {
            self.order(id, "1659149");
        }
        self.schedule(self.now + 10 * MINUTE, Action::Bloods(id, false));
        match e.outcome {
            Outcome::Recover => {
                let from = self.now + self.rng.random_range(4 * HOUR..12 * HOUR);
                let over = self.rng.random_range(24 * HOUR..48 * HOUR);
                let extra = self.rng.random_range(2 * DAY..4 * DAY);
                let stay = self.stays.get_mut(&id).expect("stay");
                if let Some(ep) = stay.episode.as_mut() {
                    ep.resolve = Some((from, over));
                }
                stay.discharge_at = stay.discharge_at.max(from + over) + extra;
                let at = daytime(stay.discharge_at, &mut self.rng);
                self.stays.get_mut(&id).expect("stay").discharge_at = at;
                self.schedule(at, Action::Discharge(id));
            }
            Outcome::Icu => self.icu_transfer(id),
            Outcome::Death => {
                let at = self.now + self.rng.random_range(4 * HOUR..36 * HOUR);
                self.schedule(at, Action::Death(id));
            }
        }
    }

    fn icu_transfer(&mut self, id: u64) {
        let Some(stay) = self.stays.get(&id) else { return };
        if stay.bed.is_none_or(|(w, _)| w == ICU) {
            return;
        }
        let Some(bed) = self.free_bed(ICU, false) else {
            self.schedule(self.now + HOUR, Action::IcuTransfer(id));
            return;
        };
        self.transfer(id, bed);
        self.stats.icu_admissions += 1;
        let from = self.now + self.rng.random_range(36 * HOUR..96 * HOUR);
        let step_down = from + DAY;
        let home = step_down + self.rng.random_range(2 * DAY..5 * DAY);
        let stay = self.stays.get_mut(&id).expect("stay");
        if let Some(ep) = stay.episode.as_mut() {
            ep.resolve = Some((from, DAY));
        }
        let at = daytime(stay.discharge_at.max(home), &mut self.rng);
        self.stays.get_mut(&id).expect("stay").discharge_at = at;
        // Some do not survive intensive care.
        if self.rng.random_bool(0.15) {
            let death = self.now + self.rng.random_range(12 * HOUR..72 * HOUR);
            self.schedule(death, Action::Death(id));
        }
        self.schedule(step_down, Action::StepDown(id));
        self.schedule(at, Action::Discharge(id));
    }

    fn step_down(&mut self, id: u64) {
        let Some(stay) = self.stays.get(&id) else { return };
        if stay.bed.is_none_or(|(w, _)| w != ICU) {
            return;
        }
        let target = stay.problem.ward;
        match self.free_bed(target, true) {
            Some(bed) => self.transfer(id, bed),
            None => self.schedule(self.now + 2 * HOUR, Action::StepDown(id)),
        }
    }

    fn discharge(&mut self, id: u64, died: bool) {
        let Some(stay) = self.stays.get(&id) else { return };
        // An inpatient's discharge that is no longer due (the stay was extended), or of a
        // patient still too unwell or in intensive care: not yet. (Sending home from the
        // ED is the ED's decision, made already.)
        if !died && stay.admitted_at.is_some() {
            if self.now < stay.discharge_at {
                return;
            }
            if stay.bed.is_some_and(|(w, _)| w == ICU) || stay.severity(self.now) > 0.35 {
                let at = daytime(self.now + DAY, &mut self.rng);
                self.stays.get_mut(&id).expect("stay").discharge_at = at;
                self.schedule(at, Action::Discharge(id));
                return;
            }
        }
        if stay.bed.is_none() && stay.admitted_at.is_none() {
            self.in_ed -= 1;
        }
        self.vacate(id);
        let stay = self.stays.remove(&id).expect("stay");
        let person = stay.person;
        let age = self.people[person].age;
        let disposition = if died {
            self.stats.deaths += 1;
            pb::DischargeDisposition::Deceased
        } else if stay.admitted_at.is_some() && age >= 80 && self.rng.random_bool(0.3) {
            pb::DischargeDisposition::CareFacility
        } else if stay.admitted_at.is_none() && self.rng.random_bool(0.02) {
            pb::DischargeDisposition::LeftAgainstAdvice
        } else {
            pb::DischargeDisposition::Home
        };
        self.stats.discharges += 1;
        if stay.admitted_at.is_some() {
            // Coded at discharge: the principal diagnosis and the patient's long-term
            // conditions.
            let encounter = stay.encounter.clone();
            self.coded_diagnosis(person, &encounter, stay.problem.icd10, pb::DiagnosisRole::Principal, 1);
            let mut rank = 2;
            for (code, from_age, share) in COMORBIDITIES {
                if age >= *from_age && self.rng.random_bool(*share) {
                    self.coded_diagnosis(person, &encounter, code, pb::DiagnosisRole::Secondary, rank);
                    rank += 1;
                }
            }
        }
        self.charges(&stay);
        self.emit(
            "adt",
            Some(person),
            Payload::Discharge(pb::Discharge {
                encounter_id: stay.encounter.clone(),
                disposition: disposition as i32,
            }),
        );
        if died {
            let mut d = self.people[person].demographics.clone();
            d.deceased_at = Some(Timestamp {
                seconds: self.now,
                nanos: 0,
            });
            self.people[person].demographics = d.clone();
            self.emit("adt", Some(person), Payload::PatientUpdated(d));
            self.people[person].deceased = true;
        }
        self.people[person].in_hospital = false;
    }

    fn diagnosis(&mut self, id: u64, icd10: &str, role: pb::DiagnosisRole, rank: u32) {
        let Some(stay) = self.stays.get(&id) else { return };
        let (person, encounter) = (stay.person, stay.encounter.clone());
        self.coded_diagnosis(person, &encounter, icd10, role, rank);
    }

    fn coded_diagnosis(&mut self, person: usize, encounter: &str, icd10: &str, role: pb::DiagnosisRole, rank: u32) {
        self.emit(
            "adt",
            Some(person),
            Payload::Diagnosis(pb::Diagnosis {
                encounter_id: encounter.into(),
                code: icd10.into(),
                code_system: pb::CodeSystem::Icd10 as i32,
                role: role as i32,
                rank,
                clinical_status: pb::ConditionStatus::Active as i32,
                ..Default::default()
            }),
        );
    }

    fn charges(&mut self, stay: &Stay) {
        let (_, _, _, _, factor) = PAYERS[stay.payer];
        let payer = PAYERS[stay.payer].0;
        let mut lines: Vec<(String, &str, String, f64, i64)> = Vec::new();
        if !stay.elective {
            let (code, description, price) = ED_ATTENDANCE[(stay.acuity.clamp(1, 5) - 1) as usize];
            lines.push((code.into(), code, description.into(), 1.0, price));
        }
        for kind in [WardKind::Assessment, WardKind::General, WardKind::Intensive] {
            let secs = stay.bed_secs[kind as usize];
            if secs > 0 {
                let (code, description, price) = bed_day_charge(kind);
                let days = (secs as f64 / DAY as f64).ceil().max(1.0);
                lines.push((code.into(), code, description.into(), days, price));
            }
        }
        for panel in PANELS {
            if let Some(n) = stay.panels.get(panel.code) {
                lines.push((
                    panel.cpt.into(),
                    panel.cpt,
                    panel.name.into(),
                    *n as f64,
                    panel.price_minor,
                ));
            }
        }
        for (rxnorm, n) in &stay.doses {
            let d = drug_by_code(rxnorm);
            lines.push((
                format!("0250-{rxnorm}"),
                "0250",
                d.name.into(),
                *n as f64,
                d.price_minor,
            ));
        }
        if let Some((code, description, price)) = stay.problem.procedure {
            lines.push((code.into(), code, description.into(), 1.0, price));
        }
        for (key, code, description, quantity, price) in lines {
            self.emit(
                "billing",
                Some(stay.person),
                Payload::ChargeLine(pb::ChargeLine {
                    charge_id: format!("{}-{key}", stay.encounter),
                    encounter_id: stay.encounter.clone(),
                    code: code.into(),
                    description,
                    quantity,
                    unit_price_minor: (price as f64 * factor).round() as i64,
                    currency: "GBP".into(),
                    payer_code: payer.into(),
                }),
            );
        }
    }

    // ---- observations ----

    fn schedule_vitals(&mut self, id: u64, at: i64) {
        let Some(stay) = self.stays.get_mut(&id) else { return };
        stay.vitals_generation += 1;
        let generation = stay.vitals_generation;
        self.schedule(at, Action::Vitals(id, generation));
    }

    fn vitals(&mut self, id: u64, generation: u32) {
        let now = self.now;
        let Some(stay) = self.stays.get(&id) else { return };
        if stay.vitals_generation != generation {
            return;
        }
        let s = stay.severity(now);
        let b = &stay.baseline;
        let noise = |rng: &mut StdRng, sd: f64| Normal::new(0.0, sd).map_or(0.0, |n| n.sample(rng));
        let rng = &mut self.rng;
        let on_oxygen = s > 0.4;
        let rr = (b.rr + 14.0 * s + noise(rng, 1.0)).round().max(6.0);
        let mut spo2 = b.spo2 - 9.0 * s + noise(rng, 0.8);
        if on_oxygen {
            spo2 += 2.0;
        }
        let spo2 = spo2.round().clamp(70.0, 100.0);
        let sbp = (b.sbp - 45.0 * s + noise(rng, 6.0)).round().max(60.0);
        let hr = (b.hr + 45.0 * s + noise(rng, 4.0)).round().max(35.0);
        let temp_c = b.temp + 2.0 * s + noise(rng, 0.2);
        let consciousness = if s > 0.9 && rng.random_bool(0.25) {
            pb::Consciousness::Voice
        } else if s > 0.7 && rng.random_bool(0.35) {
            pb::Consciousness::NewConfusion
        } else {
            pb::Consciousness::Alert
        };
        let (temp, temp_unit) = if b.fahrenheit {
            ((temp_c * 9.0 / 5.0 + 32.0) * 10.0, "[degF]")
        } else {
            (temp_c * 10.0, "Cel")
        };
        let obs = |code: &str, value: f64, unit: &str| pb::Observation {
            loinc_code: code.into(),
            value,
            unit: unit.into(),
        };
        let vitals = pb::VitalSigns {
            encounter_id: stay.encounter.clone(),
            observations: vec![
                obs("9279-1", rr, "/min"),
                obs("59408-5", spo2, "%"),
                obs("8480-6", sbp, "mm[Hg]"),
                obs("8867-4", hr, "/min"),
                obs("8310-5", temp.round() / 10.0, temp_unit),
            ],
            consciousness: consciousness as i32,
            supplemental_oxygen: Some(on_oxygen),
            spo2_scale: if stay.problem.spo2_scale_2 {
                pb::Spo2Scale::Spo2Scale2
            } else {
                pb::Spo2Scale::Spo2Scale1
            } as i32,
        };
        let person = stay.person;
        // Observation frequency follows how unwell the patient is (hourly in ICU).
        let interval = if stay.ward_kind() == Some(WardKind::Intensive) || s >= 0.45 {
            HOUR
        } else if s >= 0.25 || stay.bed.is_none() {
            4 * HOUR
        } else {
            6 * HOUR
        };
        self.emit("eobs", Some(person), Payload::VitalSigns(vitals));
        let jitter = self.rng.random_range(-10 * MINUTE..10 * MINUTE);
        self.schedule_vitals(id, now + interval + jitter);
    }

    /// Blood samples taken now; `daily` ones repeat each morning.
    fn bloods(&mut self, id: u64, daily: bool) {
        let Some(stay) = self.stays.get(&id) else { return };
        let deteriorating = stay.episode.as_ref().is_some_and(|e| self.now >= e.onset);
        let panels = if daily {
            FBC | UE | CRP
        } else if stay.acuity <= 2 || deteriorating {
            FBC | UE | CRP | LACTATE
        } else {
            FBC | UE | CRP
        };
        let turnaround = self.rng.random_range(45 * MINUTE..120 * MINUTE);
        self.schedule(self.now + turnaround, Action::Results(id, self.now, panels));
        if daily {
            let jitter = self.rng.random_range(-30 * MINUTE..30 * MINUTE);
            self.schedule(self.now + DAY + jitter, Action::Bloods(id, true));
        }
    }

    fn results(&mut self, id: u64, collected: i64, panels: u8) {
        let Some(stay) = self.stays.get_mut(&id) else { return };
        stay.lab_orders += 1;
        let order_id = format!("{}-L{:03}", stay.encounter, stay.lab_orders);
        let s = stay.severity(collected);
        let mut results = Vec::new();
        let mut index = 0;
        for (bit, panel) in PANELS.iter().enumerate() {
            let chosen = panels & (1 << bit) != 0;
            if chosen {
                *stay.panels.entry(panel.code).or_default() += 1;
            }
            for t in panel.tests {
                if chosen {
                    let base = stay.baseline.labs[index];
                    let sd = (t.high - t.low).abs() * 0.03;
                    let noise = Normal::new(0.0, sd).map_or(0.0, |n| n.sample(&mut self.rng));
                    let scale = 10f64.powi(t.decimals);
                    let value = ((base + t.per_severity * s + noise).max(0.0) * scale).round() / scale;
                    results.push((t, value));
                }
                index += 1;
            }
        }
        let (person, encounter) = (stay.person, stay.encounter.clone());
        for (t, value) in results {
            let flag = if (t.loinc == "2524-7" && value >= 4.0) || (t.loinc == "2823-3" && value >= 6.0) {
                pb::AbnormalFlag::CriticalHigh
            } else if value > t.high {
                pb::AbnormalFlag::High
            } else if value < t.low {
                pb::AbnormalFlag::Low
            } else {
                pb::AbnormalFlag::Normal
            };
            self.emit(
                "lis",
                Some(person),
                Payload::LabResult(pb::LabResult {
                    encounter_id: encounter.clone(),
                    order_id: order_id.clone(),
                    loinc_code: t.loinc.into(),
                    display: t.display.into(),
                    value: Some(value),
                    value_text: String::new(),
                    unit: t.unit.into(),
                    reference_low: Some(t.low),
                    reference_high: Some(t.high),
                    abnormal_flag: flag as i32,
                    specimen_collected_at: Some(Timestamp {
                        seconds: collected,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
            );
        }
    }

    // ---- medication ----

    fn order(&mut self, id: u64, rxnorm: &str) {
        let drug = drug_by_code(rxnorm);
        let now = self.now;
        let Some(stay) = self.stays.get_mut(&id) else { return };
        let id_str = format!("{}-RX{}", stay.encounter, stay.orders.len() + 1);
        let ends_at = (drug.days > 0).then(|| now + drug.days as i64 * DAY);
        stay.orders.push(Order {
            id: id_str.clone(),
            drug,
            ends_at,
        });
        let index = stay.orders.len() - 1;
        let (person, encounter) = (stay.person, stay.encounter.clone());
        self.emit(
            "pharmacy",
            Some(person),
            Payload::MedicationOrder(pb::MedicationOrder {
                order_id: id_str,
                encounter_id: encounter,
                drug_code: drug.rxnorm.into(),
                drug_name: drug.name.into(),
                dose_value: drug.dose,
                dose_unit: drug.unit.into(),
                route: drug.route.into(),
                frequency: drug.frequency.code().into(),
                starts_at: Some(Timestamp { seconds: now, nanos: 0 }),
                ends_at: ends_at.map(|seconds| Timestamp { seconds, nanos: 0 }),
            }),
        );
        if drug.frequency == Frequency::Once {
            self.schedule(now + 10 * MINUTE, Action::Dose(id, index));
        } else {
            let dispense = now + self.rng.random_range(30 * MINUTE..2 * HOUR);
            self.schedule(dispense, Action::Dispense(id, index));
            self.schedule(next_dose(dispense, drug.frequency), Action::Dose(id, index));
        }
    }

    fn medication_event(&self, id: u64, index: usize) -> Option<(usize, pb::MedicationEvent)> {
        let stay = self.stays.get(&id)?;
        let order = stay.orders.get(index)?;
        Some((
            stay.person,
            pb::MedicationEvent {
                order_id: order.id.clone(),
                encounter_id: stay.encounter.clone(),
                drug_code: order.drug.rxnorm.into(),
                dose_value: order.drug.dose,
                dose_unit: order.drug.unit.into(),
                route: order.drug.route.into(),
            },
        ))
    }

    fn dispense(&mut self, id: u64, index: usize) {
        if let Some((person, event)) = self.medication_event(id, index) {
            self.emit("pharmacy", Some(person), Payload::MedicationDispense(event));
        }
    }

    fn dose(&mut self, id: u64, index: usize) {
        let Some((person, event)) = self.medication_event(id, index) else {
            return;
        };
        let order = &self.stays[&id].orders[index];
        if order.ends_at.is_some_and(|end| self.now >= end) {
            return;
        }
        let (rxnorm, frequency) = (order.drug.rxnorm, order.drug.frequency);
        // About one dose in forty is omitted (patient away, nil by mouth, refused).
        if self.rng.random_bool(0.975) {
            *self.stays.get_mut(&id).expect("stay").doses.entry(rxnorm).or_default() += 1;
            self.emit("emar", Some(person), Payload::MedicationAdministration(event));
        }
        if frequency != Frequency::Once {
            let jitter = self.rng.random_range(0..20 * MINUTE);
            self.schedule(next_dose(self.now + HOUR, frequency) + jitter, Action::Dose(id, index));
        }
    }

    // ---- helpers ----

    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        LogNormal::new(median.max(1e-6).ln(), sigma).map_or(median, |d| d.sample(&mut self.rng))
    }
}

impl Iterator for Simulator {
    type Item = pb::ClinicalEvent;

    fn next(&mut self) -> Option<pb::ClinicalEvent> {
        loop {
            if let Some(e) = self.out.pop_front() {
                return Some(e);
            }
            if self.finished || !self.step() {
                self.finished = true;
                return None;
            }
        }
    }
}

/// A Leeds-style postcode.
fn postal_code(rng: &mut StdRng) -> String {
    format!(
        "LS{} {}{}{}",
        rng.random_range(1..30),
        rng.random_range(1..10),
        (b'A' + rng.random_range(0..26u8)) as char,
        (b'A' + rng.random_range(0..26u8)) as char
    )
}

/// The first time at or after `t` that is `hour`:00.
fn next_hour_of_day(t: i64, hour: i64) -> i64 {
    let day = t.div_euclid(DAY) * DAY;
    let candidate = day + hour * HOUR;
    if candidate >= t {
        candidate
    } else {
        candidate + DAY
    }
}

/// The next ward-round time of `frequency` at or after `t`.
fn next_dose(t: i64, frequency: Frequency) -> i64 {
    frequency
        .hours()
        .iter()
        .map(|&h| next_hour_of_day(t, h))
        .min()
        .unwrap_or(t)
}

/// `t` moved into the discharge window (10:00-18:00), the same day or the next.
fn daytime(t: i64, rng: &mut StdRng) -> i64 {
    let (_, hour) = weekday_hour(t);
    if (10..18).contains(&hour) {
        t
    } else {
        next_hour_of_day(t, 10) + rng.random_range(0..8 * HOUR)
    }
}

/// How many events of each kind (for summaries), from a slice or straight from a
/// running simulator.
pub fn count_by_kind<E: std::borrow::Borrow<pb::ClinicalEvent>>(
    events: impl IntoIterator<Item = E>,
) -> BTreeMap<&'static str, u64> {
    let mut counts = BTreeMap::new();
    for e in events {
        if let Some(p) = &e.borrow().payload {
            *counts.entry(p.kind()).or_default() += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests;
