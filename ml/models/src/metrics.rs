//! Quality metrics of a risk score, and the baselines a model is judged beside.
//!
//! Discrimination alone misleads (a sepsis model with a fine AUROC alerted on 18% of
//! inpatients), so a [`Report`] always carries calibration and alert burden beside AUROC.
//!
//! A metric that is undefined for its input (one class only, mismatched lengths, a
//! non-finite score) is `NaN`; in JSON it is `null`.

use serde::{Deserialize, Serialize};

use crate::risk::logistic_1d;

/// NEWS2 alert threshold: a total of 5 or more calls for an urgent response (RCP 2017).
pub const NEWS2_THRESHOLD: f64 = 5.0;
/// LACE threshold: 10 or more is high risk.
pub const LACE_THRESHOLD: f64 = 10.0;

fn usable(scores: &[f64], labels: &[bool]) -> bool {
    scores.len() == labels.len() && scores.iter().all(|s| !s.is_nan())
}

/// Area under the ROC curve: the probability that a random positive scores above a
/// random negative, ties counting one half (Mann-Whitney U with average ranks).
pub fn auroc(scores: &[f64], labels: &[bool]) -> f64 {
    if !usable(scores, labels) {
        return f64::NAN;
    }
    let n_pos = labels.iter().filter(|&&l| l).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return f64::NAN;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their average.
        let avg = (i + j + 2) as f64 / 2.0;
        rank_sum_pos += avg * idx[i..=j].iter().filter(|&&k| labels[k]).count() as f64;
        i = j + 1;
    }
    let u = rank_sum_pos - (n_pos * (n_pos + 1)) as f64 / 2.0;
    u / (n_pos as f64 * n_neg as f64)
}

/// The standard error of an AUROC of `auroc` from `n_pos` positives and `n_neg`
/// negatives (Hanley & McNeil 1982, exponential approximation): what "within one
/// standard error" means when choosing a model by its validation AUROC.
pub fn auroc_standard_error(auroc: f64, n_pos: usize, n_neg: usize) -> f64 {
    if n_pos == 0 || n_neg == 0 || !auroc.is_finite() {
        return f64::NAN;
    }
    let a = auroc;
    let q1 = a / (2.0 - a);
    let q2 = 2.0 * a * a / (1.0 + a);
    let (p, n) = (n_pos as f64, n_neg as f64);
    ((a * (1.0 - a) + (p - 1.0) * (q1 - a * a) + (n - 1.0) * (q2 - a * a)) / (p * n))
        .max(0.0)
        .sqrt()
}

/// Average precision as scikit-learn defines it (`average_precision_score`):
/// `Σₖ (Rₖ − Rₖ₋₁) Pₖ` over the distinct score thresholds from high to low, tied scores
/// taken together, no interpolation.
pub fn auprc(scores: &[f64], labels: &[bool]) -> f64 {
    if !usable(scores, labels) {
        return f64::NAN;
    }
    let n_pos = labels.iter().filter(|&&l| l).count();
    if n_pos == 0 {
        return f64::NAN;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let (mut ap, mut prev_recall) = (0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        for &k in &idx[i..=j] {
            if labels[k] {
                tp += 1;
            } else {
                fp += 1;
            }
        }
        let recall = tp as f64 / n_pos as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
        i = j + 1;
    }
    ap
}

/// Brier score: mean squared difference between probability and outcome.
pub fn brier(probs: &[f64], labels: &[bool]) -> f64 {
    if !usable(probs, labels) || probs.is_empty() {
        return f64::NAN;
    }
    probs
        .iter()
        .zip(labels)
        .map(|(&p, &y)| (p - f64::from(u8::from(y))).powi(2))
        .sum::<f64>()
        / probs.len() as f64
}

/// Calibration slope and intercept: the logistic regression of the label on `logit(p)`
/// (logistic recalibration). Perfect calibration is slope 1, intercept 0; a slope below 1
/// means predictions too extreme. Probabilities are clipped to `[1e-15, 1 - 1e-15]`.
pub fn calibration(probs: &[f64], labels: &[bool]) -> (f64, f64) {
    let n_pos = labels.iter().filter(|&&l| l).count();
    if !usable(probs, labels) || n_pos == 0 || n_pos == labels.len() {
        return (f64::NAN, f64::NAN);
    }
    let logits: Vec<f64> = probs
        .iter()
        .map(|&p| {
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            (p / (1.0 - p)).ln()
        })
        .collect();
    logistic_1d(&logits, labels)
}

/// What alerting at a threshold costs and buys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertBurden {
    /// Rows (scorings) at or above the threshold.
    pub alerts: usize,
    /// Alerts per 100 patient-days of observation.
    #[serde(with = "nan_as_null")]
    pub alerts_per_100_patient_days: f64,
    /// Positive predictive value: alerts that were positives / alerts (`NaN` without
    /// alerts).
    #[serde(with = "nan_as_null")]
    pub ppv: f64,
    /// Sensitivity: positives alerted on / positives (`NaN` without positives).
    #[serde(with = "nan_as_null")]
    pub sensitivity: f64,
}

/// Alerts where `score >= threshold`, over `patient_days` of observation. Mismatched
/// lengths give no alerts and `NaN` rates.
pub fn alert_burden(scores: &[f64], labels: &[bool], threshold: f64, patient_days: f64) -> AlertBurden {
    if scores.len() != labels.len() {
        return AlertBurden {
            alerts: 0,
            alerts_per_100_patient_days: f64::NAN,
            ppv: f64::NAN,
            sensitivity: f64::NAN,
        };
    }
    let (mut alerts, mut tp) = (0usize, 0usize);
    for (&s, &y) in scores.iter().zip(labels) {
        if s >= threshold {
            alerts += 1;
            tp += usize::from(y);
        }
    }
    let positives = labels.iter().filter(|&&l| l).count();
    let ratio = |a: usize, b: usize| if b == 0 { f64::NAN } else { a as f64 / b as f64 };
    AlertBurden {
        alerts,
        alerts_per_100_patient_days: if patient_days > 0.0 {
            100.0 * alerts as f64 / patient_days
        } else {
            f64::NAN
        },
        ppv: ratio(tp, alerts),
        sensitivity: ratio(tp, positives),
    }
}

/// Everything we report about a score on a set of labelled rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Rows.
    pub n: usize,
    /// Positive rows.
    pub positives: usize,
    #[serde(with = "nan_as_null")]
    pub auroc: f64,
    #[serde(with = "nan_as_null")]
    pub auprc: f64,
    /// `NaN` for a score that is not a probability (NEWS2, LACE).
    #[serde(with = "nan_as_null")]
    pub brier: f64,
    /// `NaN` for a score that is not a probability.
    #[serde(with = "nan_as_null")]
    pub calibration_slope: f64,
    /// `NaN` for a score that is not a probability.
    #[serde(with = "nan_as_null")]
    pub calibration_intercept: f64,
    /// The alert threshold the burden is counted at.
    pub threshold: f64,
    pub alert_burden: AlertBurden,
}

/// The full report of probabilities `probs` against `labels`, alerting at `threshold`.
pub fn report(probs: &[f64], labels: &[bool], threshold: f64, patient_days: f64) -> Report {
    let (slope, intercept) = calibration(probs, labels);
    Report {
        brier: brier(probs, labels),
        calibration_slope: slope,
        calibration_intercept: intercept,
        ..ranking_report(probs, labels, threshold, patient_days)
    }
}

/// Discrimination and alert burden of a score that is not a probability.
pub fn ranking_report(scores: &[f64], labels: &[bool], threshold: f64, patient_days: f64) -> Report {
    Report {
        n: labels.len(),
        positives: labels.iter().filter(|&&l| l).count(),
        auroc: auroc(scores, labels),
        auprc: auprc(scores, labels),
        brier: f64::NAN,
        calibration_slope: f64::NAN,
        calibration_intercept: f64::NAN,
        threshold,
        alert_burden: alert_burden(scores, labels, threshold, patient_days),
    }
}

/// The NEWS2 baseline on the same rows: the score is the NEWS2 total (0-20), alerting at
/// 5 or more. Calibration and Brier are `NaN` (a total is not a probability).
pub fn news2_baseline(news2_totals: &[u8], labels: &[bool], patient_days: f64) -> Report {
    let scores: Vec<f64> = news2_totals.iter().map(|&t| f64::from(t)).collect();
    ranking_report(&scores, labels, NEWS2_THRESHOLD, patient_days)
}

/// The LACE baseline on the same rows: the score is the LACE index (0-19), alerting at
/// 10 or more. Calibration and Brier are `NaN`.
pub fn lace_baseline(lace: &[u32], labels: &[bool], patient_days: f64) -> Report {
    let scores: Vec<f64> = lace.iter().map(|&t| f64::from(t)).collect();
    ranking_report(&scores, labels, LACE_THRESHOLD, patient_days)
}

/// The LACE index (van Walraven et al., CMAJ 2010) for 30-day death or unplanned
/// readmission, 0-19:
///
/// - L, length of stay in whole days (`los_days` rounded down; a negative or non-finite
///   stay counts as 0 days): <1: 0, 1: 1, 2: 2, 3: 3, 4-6: 4, 7-13: 5, >=14: 7;
/// - A, emergent (acute) admission: 3;
/// - C, Charlson index: 0-3 as is, >=4: 5;
/// - E, ED visits in the prior 6 months: 0-3 as is, >=4: 4.
pub fn lace_index(los_days: f64, emergent: bool, charlson: u32, ed_visits_6m: u32) -> u32 {
    let days = if los_days.is_finite() && los_days > 0.0 {
        los_days.floor()
    } else {
        0.0
    };
    let l = match days {
        d if d < 1.0 => 0,
        d if d < 4.0 => d as u32, // 1, 2, 3
        d if d < 7.0 => 4,
        d if d < 14.0 => 5,
        _ => 7,
    };
    let a = if emergent { 3 } else { 0 };
    let c = if charlson >= 4 { 5 } else { charlson };
    let e = ed_visits_6m.min(4);
    l + a + c + e
}

/// Which ICD revision a code is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IcdVersion {
    Icd9,
    Icd10,
}

/// Charlson comorbidity index of a list of diagnosis codes, ICD-10 and ICD-9 mixed.
///
/// The revision is read from the code's shape: a code starting with a digit, or `E`
/// with three digits before the dot, is ICD-9-CM; otherwise ICD-10. A `V` code is
/// ambiguous (ICD-9-CM supplementary codes, ICD-10 transport accidents); it is read as
/// ICD-9-CM, since no ICD-10 `V` code belongs to any Charlson condition but some ICD-9
/// `V` codes do (V42.0 kidney transplant). Callers that know each code's system should
/// use [`charlson`].
pub fn charlson_from_icd(codes: &[&str]) -> u32 {
    let coded: Vec<(IcdVersion, &str)> = codes
        .iter()
        .map(|c| {
            let head = c.split('.').next().unwrap_or("");
            let icd9 = head.starts_with(|ch: char| ch.is_ascii_digit())
                || head.starts_with('V')
                || (head.starts_with('E') && head.len() == 4);
            (if icd9 { IcdVersion::Icd9 } else { IcdVersion::Icd10 }, *c)
        })
        .collect();
    charlson(&coded)
}

/// Charlson comorbidity index of codes whose revision is known.
///
/// Conditions: the coding algorithms of Quan H, Sundararajan V, Halfon P, et al. "Coding
/// algorithms for defining comorbidities in ICD-9-CM and ICD-10 administrative data".
/// Med Care 2005;43(11):1130-9, Table 1 (enhanced ICD-9-CM, and ICD-10). Weights: the
/// original Charlson ME, Pompei P, Ales KL, MacKenzie CR. J Chronic Dis
/// 1987;40(5):373-83 (1 for most; 2 for hemiplegia, renal disease, diabetes with
/// complications, any malignancy; 3 for moderate or severe liver disease; 6 for
/// metastatic solid tumour and AIDS/HIV). Each condition counts once; where a severe form
/// is present its mild form is not counted as well (liver, diabetes, cancer).
pub fn charlson(codes: &[(IcdVersion, &str)]) -> u32 {
    let mut present = [false; CONDITIONS];
    for &(version, code) in codes {
        let key: String = code
            .chars()
            .filter(|c| *c != '.')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let table = match version {
            IcdVersion::Icd9 => ICD9,
            IcdVersion::Icd10 => ICD10,
        };
        for (condition, prefixes) in table.iter().enumerate() {
            if prefixes.iter().any(|p| p.matches(&key)) {
                present[condition] = true;
            }
        }
    }
    if present[MODERATE_SEVERE_LIVER] {
        present[MILD_LIVER] = false;
    }
    if present[DIABETES_COMPLICATED] {
        present[DIABETES] = false;
    }
    if present[METASTATIC] {
        present[MALIGNANCY] = false;
    }
    present.iter().zip(WEIGHTS).map(|(&p, w)| if p { w } else { 0 }).sum()
}

const CONDITIONS: usize = 17;
const DIABETES: usize = 9;
const DIABETES_COMPLICATED: usize = 10;
const MILD_LIVER: usize = 8;
const MALIGNANCY: usize = 13;
const MODERATE_SEVERE_LIVER: usize = 14;
const METASTATIC: usize = 15;

/// Original Charlson weights, in the order of the tables below: myocardial infarction,
/// congestive heart failure, peripheral vascular disease, cerebrovascular disease,
/// dementia, chronic pulmonary disease, rheumatic disease, peptic ulcer, mild liver
/// disease, diabetes without chronic complication, diabetes with chronic complication,
/// hemiplegia or paraplegia, renal disease, any malignancy (lymphoma and leukaemia
/// included, skin cancer not), moderate or severe liver disease, metastatic solid tumour,
/// AIDS/HIV.
const WEIGHTS: [u32; CONDITIONS] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 6, 6];

/// A code prefix without the dot, or an inclusive range of same-length prefixes (`R`
/// for `C00`-`C26`).
enum P {
    /// Codes starting with this.
    S(&'static str),
    /// Codes whose first `len` characters lie in the inclusive range.
    R(&'static str, &'static str),
}

impl P {
    fn matches(&self, code: &str) -> bool {
        match *self {
            P::S(p) => code.starts_with(p),
            P::R(lo, hi) => code.get(..lo.len()).is_some_and(|head| head >= lo && head <= hi),
        }
    }
}

use P::{R, S};

/// Quan 2005, Table 1, ICD-10 column.
const ICD10: [&[P]; CONDITIONS] = [
    // Myocardial infarction: I21.x, I22.x, I25.2
    &[S("I21"), S("I22"), S("I252")],
    // Congestive heart failure: I09.9, I11.0, I13.0, I13.2, I25.5, I42.0, I42.5-I42.9,
    // I43.x, I50.x, P29.0
    &[
        S("I099"),
        S("I110"),
        S("I130"),
        S("I132"),
        S("I255"),
        S("I420"),
        R("I425", "I429"),
        S("I43"),
        S("I50"),
        S("P290"),
    ],
    // Peripheral vascular disease: I70.x, I71.x, I73.1, I73.8, I73.9, I77.1, I79.0,
    // I79.2, K55.1, K55.8, K55.9, Z95.8, Z95.9
    &[
        S("I70"),
        S("I71"),
        S("I731"),
        S("I738"),
        S("I739"),
        S("I771"),
        S("I790"),
        S("I792"),
        S("K551"),
        S("K558"),
        S("K559"),
        S("Z958"),
        S("Z959"),
    ],
    // Cerebrovascular disease: G45.x, G46.x, H34.0, I60.x-I69.x
    &[S("G45"), S("G46"), S("H340"), R("I60", "I69")],
    // Dementia: F00.x-F03.x, F05.1, G30.x, G31.1
    &[R("F00", "F03"), S("F051"), S("G30"), S("G311")],
    // Chronic pulmonary disease: I27.8, I27.9, J40.x-J47.x, J60.x-J67.x, J68.4, J70.1,
    // J70.3
    &[
        S("I278"),
        S("I279"),
        R("J40", "J47"),
        R("J60", "J67"),
        S("J684"),
        S("J701"),
        S("J703"),
    ],
    // Rheumatic disease: M05.x, M06.x, M31.5, M32.x-M34.x, M35.1, M35.3, M36.0
    &[
        S("M05"),
        S("M06"),
        S("M315"),
        R("M32", "M34"),
        S("M351"),
        S("M353"),
        S("M360"),
    ],
    // Peptic ulcer disease: K25.x-K28.x
    &[R("K25", "K28")],
    // Mild liver disease: B18.x, K70.0-K70.3, K70.9, K71.3-K71.5, K71.7, K73.x, K74.x,
    // K76.0, K76.2-K76.4, K76.8, K76.9, Z94.4
    &[
        S("B18"),
        R("K700", "K703"),
        S("K709"),
        R("K713", "K715"),
        S("K717"),
        S("K73"),
        S("K74"),
        S("K760"),
        R("K762", "K764"),
        S("K768"),
        S("K769"),
        S("Z944"),
    ],
    // Diabetes without chronic complication: E10-E14 .0, .1, .6, .8, .9
    &[
        S("E100"),
        S("E101"),
        S("E106"),
        S("E108"),
        S("E109"),
        S("E110"),
        S("E111"),
        S("E116"),
        S("E118"),
        S("E119"),
        S("E120"),
        S("E121"),
        S("E126"),
        S("E128"),
        S("E129"),
        S("E130"),
        S("E131"),
        S("E136"),
        S("E138"),
        S("E139"),
        S("E140"),
        S("E141"),
        S("E146"),
        S("E148"),
        S("E149"),
    ],
    // Diabetes with chronic complication: E10-E14 .2-.5, .7
    &[
        R("E102", "E105"),
        S("E107"),
        R("E112", "E115"),
        S("E117"),
        R("E122", "E125"),
        S("E127"),
        R("E132", "E135"),
        S("E137"),
        R("E142", "E145"),
        S("E147"),
    ],
    // Hemiplegia or paraplegia: G04.1, G11.4, G80.1, G80.2, G81.x, G82.x, G83.0-G83.4,
    // G83.9
    &[
        S("G041"),
        S("G114"),
        S("G801"),
        S("G802"),
        S("G81"),
        S("G82"),
        R("G830", "G834"),
        S("G839"),
    ],
    // Renal disease: I12.0, I13.1, N03.2-N03.7, N05.2-N05.7, N18.x, N19.x, N25.0,
    // Z49.0-Z49.2, Z94.0, Z99.2
    &[
        S("I120"),
        S("I131"),
        R("N032", "N037"),
        R("N052", "N057"),
        S("N18"),
        S("N19"),
        S("N250"),
        R("Z490", "Z492"),
        S("Z940"),
        S("Z992"),
    ],
    // Any malignancy: C00.x-C26.x, C30.x-C34.x, C37.x-C41.x, C43.x, C45.x-C58.x,
    // C60.x-C76.x, C81.x-C85.x, C88.x, C90.x-C97.x
    &[
        R("C00", "C26"),
        R("C30", "C34"),
        R("C37", "C41"),
        S("C43"),
        R("C45", "C58"),
        R("C60", "C76"),
        R("C81", "C85"),
        S("C88"),
        R("C90", "C97"),
    ],
    // Moderate or severe liver disease: I85.0, I85.9, I86.4, I98.2, K70.4, K71.1, K72.1,
    // K72.9, K76.5, K76.6, K76.7
    &[
        S("I850"),
        S("I859"),
        S("I864"),
        S("I982"),
        S("K704"),
        S("K711"),
        S("K721"),
        S("K729"),
        S("K765"),
        S("K766"),
        S("K767"),
    ],
    // Metastatic solid tumour: C77.x-C80.x
    &[R("C77", "C80")],
    // AIDS/HIV: B20.x-B22.x, B24.x
    &[R("B20", "B22"), S("B24")],
];

/// Quan 2005, Table 1, enhanced ICD-9-CM column.
const ICD9: [&[P]; CONDITIONS] = [
    // Myocardial infarction: 410.x, 412.x
    &[S("410"), S("412")],
    // Congestive heart failure: 398.91, 402.01, 402.11, 402.91, 404.01, 404.03, 404.11,
    // 404.13, 404.91, 404.93, 425.4-425.9, 428.x
    &[
        S("39891"),
        S("40201"),
        S("40211"),
        S("40291"),
        S("40401"),
        S("40403"),
        S("40411"),
        S("40413"),
        S("40491"),
        S("40493"),
        R("4254", "4259"),
        S("428"),
    ],
    // Peripheral vascular disease: 093.0, 437.3, 440.x, 441.x, 443.1-443.9, 447.1, 557.1,
    // 557.9, V43.4
    &[
        S("0930"),
        S("4373"),
        S("440"),
        S("441"),
        R("4431", "4439"),
        S("4471"),
        S("5571"),
        S("5579"),
        S("V434"),
    ],
    // Cerebrovascular disease: 362.34, 430.x-438.x
    &[S("36234"), R("430", "438")],
    // Dementia: 290.x, 294.1, 331.2
    &[S("290"), S("2941"), S("3312")],
    // Chronic pulmonary disease: 416.8, 416.9, 490.x-505.x, 506.4, 508.1, 508.8
    &[S("4168"), S("4169"), R("490", "505"), S("5064"), S("5081"), S("5088")],
    // Rheumatic disease: 446.5, 710.0-710.4, 714.0-714.2, 714.8, 725.x
    &[S("4465"), R("7100", "7104"), R("7140", "7142"), S("7148"), S("725")],
    // Peptic ulcer disease: 531.x-534.x
    &[R("531", "534")],
    // Mild liver disease: 070.22, 070.23, 070.32, 070.33, 070.44, 070.54, 070.6, 070.9,
    // 570.x, 571.x, 573.3, 573.4, 573.8, 573.9, V42.7
    &[
        S("07022"),
        S("07023"),
        S("07032"),
        S("07033"),
        S("07044"),
        S("07054"),
        S("0706"),
        S("0709"),
        S("570"),
        S("571"),
        S("5733"),
        S("5734"),
        S("5738"),
        S("5739"),
        S("V427"),
    ],
    // Diabetes without chronic complication: 250.0-250.3, 250.8, 250.9
    &[R("2500", "2503"), S("2508"), S("2509")],
    // Diabetes with chronic complication: 250.4-250.7
    &[R("2504", "2507")],
    // Hemiplegia or paraplegia: 334.1, 342.x, 343.x, 344.0-344.6, 344.9
    &[S("3341"), S("342"), S("343"), R("3440", "3446"), S("3449")],
    // Renal disease: 403.01, 403.11, 403.91, 404.02, 404.03, 404.12, 404.13, 404.92,
    // 404.93, 582.x, 583.0-583.7, 585.x, 586.x, 588.0, V42.0, V45.1, V56.x
    &[
        S("40301"),
        S("40311"),
        S("40391"),
        S("40402"),
        S("40403"),
        S("40412"),
        S("40413"),
        S("40492"),
        S("40493"),
        S("582"),
        R("5830", "5837"),
        S("585"),
        S("586"),
        S("5880"),
        S("V420"),
        S("V451"),
        S("V56"),
    ],
    // Any malignancy: 140.x-172.x, 174.x-195.8, 200.x-208.x, 238.6
    &[
        R("140", "172"),
        R("174", "194"),
        R("1950", "1958"),
        R("200", "208"),
        S("2386"),
    ],
    // Moderate or severe liver disease: 456.0-456.2, 572.2-572.8
    &[R("4560", "4562"), R("5722", "5728")],
    // Metastatic solid tumour: 196.x-199.x
    &[R("196", "199")],
    // AIDS/HIV: 042.x-044.x
    &[R("042", "044")],
];

/// Serialises a non-finite `f64` as JSON `null` and reads `null` back as `NaN`
/// (serde_json writes `NaN` as `null` but will not read it back into an `f64`).
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}
