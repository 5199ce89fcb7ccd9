//! Metrics against hand-computed values and scikit-learn, and the baselines' tables.

mod common;

use common::{sigmoid, Rng};
use hospital_ml_models::metrics::{
    self, alert_burden, auprc, auroc, brier, calibration, charlson, charlson_from_icd, lace_index, news2_baseline,
    report, IcdVersion, Report,
};

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn auroc_auprc_and_brier_by_hand() {
    // scikit-learn's documentation example: 3 of the 4 positive-negative pairs in order.
    let (s, y) = ([0.1, 0.4, 0.35, 0.8], [false, false, true, true]);
    assert!(close(auroc(&s, &y), 0.75, 1e-12));
    // Thresholds 0.8: R 1/2 P 1; 0.4: R 1/2 (no step); 0.35: R 1 P 2/3 -> 1/2 + 1/2 * 2/3.
    assert!(close(auprc(&s, &y), 0.5 + 1.0 / 3.0, 1e-12));

    // Ties: positives {0.5, 0.9}, negatives {0.5, 0.5}: pairs 1/2 + 1/2 + 1 + 1 of 4.
    let (s, y) = ([0.5, 0.5, 0.5, 0.9], [false, true, false, true]);
    assert!(close(auroc(&s, &y), 0.75, 1e-12));
    // 0.9: R 1/2 P 1; the tied 0.5s together: R 1 P 2/4.
    assert!(close(auprc(&s, &y), 0.5 + 0.5 * 0.5, 1e-12));
    // All tied: chance.
    assert!(close(auroc(&[0.3; 4], &y), 0.5, 1e-12));
    assert!(close(auprc(&[0.3; 4], &y), 0.5, 1e-12));

    // (0.01 + 0.01 + 0.04 + 0.09) / 4
    let b = brier(&[0.1, 0.9, 0.8, 0.3], &[false, true, true, false]);
    assert!(close(b, 0.0375, 1e-12));

    // Undefined: one class, mismatched lengths, NaN scores.
    assert!(auroc(&[0.1, 0.2], &[true, true]).is_nan());
    assert!(auprc(&[0.1, 0.2], &[false, false]).is_nan());
    assert!(auroc(&[0.1], &[true, false]).is_nan());
    assert!(auroc(&[f64::NAN, 0.2], &[true, false]).is_nan());
}

/// Expected values from scikit-learn 1.9.1 on rounded (so heavily tied) random scores:
///
/// ```python
/// import numpy as np
/// from sklearn.metrics import roc_auc_score, average_precision_score, brier_score_loss
/// rng = np.random.default_rng(7)
/// y = rng.random(40) < 0.3
/// s = np.round(np.clip(rng.normal(0.3 + 0.25*y, 0.2), 0, 1), 1)
/// print(roc_auc_score(y, s), average_precision_score(y, s), brier_score_loss(y, s))
/// # 0.6826923076923077 0.5571294307196563 0.20175
/// ```
#[test]
fn auroc_auprc_and_brier_match_scikit_learn_on_a_random_case() {
    let s = [
        0.3, 0.3, 0.3, 0.3, 0.3, 0.6, 0.2, 0.5, 0.3, 0.2, 0.7, 0.7, 0.3, 0.3, 0.4, 0.3, 0.4, 0.3, 0.4, 0.6, 0.4, 0.6,
        0.2, 0.6, 0.3, 0.2, 0.3, 0.5, 0.5, 0.0, 0.1, 0.7, 0.2, 0.5, 0.3, 0.8, 0.4, 0.5, 0.2, 0.5,
    ];
    let y = [
        false, false, false, true, false, false, true, false, false, false, false, true, true, false, false, false,
        false, false, false, false, true, true, false, true, true, false, false, false, false, false, false, true,
        true, true, false, true, false, true, false, true,
    ];
    assert!(close(auroc(&s, &y), 0.6826923076923077, 1e-12));
    assert!(close(auprc(&s, &y), 0.5571294307196563, 1e-12));
    assert!(close(brier(&s, &y), 0.20175, 1e-12));
}

#[test]
fn calibration_of_perfectly_calibrated_probabilities_is_slope_one_intercept_zero() {
    let mut rng = Rng::new(11);
    let n = 200_000;
    let (mut p, mut y, mut over) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let z = -1.5 + 1.5 * rng.normal();
        p.push(sigmoid(z));
        over.push(sigmoid(2.0 * z)); // too extreme: slope 1/2
        y.push(rng.uniform() < sigmoid(z));
    }
    let (slope, intercept) = calibration(&p, &y);
    assert!(close(slope, 1.0, 0.03), "{slope}");
    assert!(close(intercept, 0.0, 0.03), "{intercept}");
    let (slope, intercept) = calibration(&over, &y);
    assert!(close(slope, 0.5, 0.02), "{slope}");
    assert!(close(intercept, 0.0, 0.03), "{intercept}");
}

#[test]
fn alert_burden_counts_alerts_at_or_above_the_threshold() {
    let s = [0.9, 0.5, 0.49, 0.7, 0.1, 0.5];
    let y = [true, false, true, true, false, false];
    let b = alert_burden(&s, &y, 0.5, 200.0);
    assert_eq!(b.alerts, 4);
    assert!(close(b.alerts_per_100_patient_days, 2.0, 1e-12));
    assert!(close(b.ppv, 0.5, 1e-12));
    assert!(close(b.sensitivity, 2.0 / 3.0, 1e-12));
    let none = alert_burden(&s, &y, 0.95, 200.0);
    assert_eq!(none.alerts, 0);
    assert!(none.ppv.is_nan());
}

#[test]
fn reports_survive_json_with_undefined_metrics() {
    let news2 = [0, 3, 5, 7, 2, 9, 4, 5];
    let y = [false, false, true, true, false, true, false, false];
    let r = news2_baseline(&news2, &y, 10.0);
    assert_eq!(r.threshold, 5.0);
    assert_eq!(r.alert_burden.alerts, 4);
    assert!(close(r.alert_burden.ppv, 0.75, 1e-12));
    // 15 pairs, one tied (5 against 5).
    assert!(close(r.auroc, 14.5 / 15.0, 1e-12));
    assert!(r.brier.is_nan() && r.calibration_slope.is_nan());

    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains("\"brier\":null"), "{json}");
    let back: Report = serde_json::from_str(&json).unwrap();
    assert!(back.brier.is_nan());
    assert_eq!(back.alert_burden, r.alert_burden);

    let probs = [0.9, 0.2, 0.6, 0.4];
    let r = report(&probs, &[true, false, true, false], 0.5, 4.0);
    assert!(close(r.brier, (0.01 + 0.04 + 0.16 + 0.16) / 4.0, 1e-12));
    assert!(r.calibration_slope.is_finite());
    assert_eq!(r.n, 4);
    assert_eq!(r.positives, 2);
}

#[test]
fn lace_table_edges() {
    // L: <1 day 0, 1 1, 2 2, 3 3, 4-6 4, 7-13 5, >=14 7 (whole days).
    for (los, l) in [
        (0.0, 0),
        (0.99, 0),
        (1.0, 1),
        (1.99, 1),
        (2.0, 2),
        (3.0, 3),
        (3.99, 3),
        (4.0, 4),
        (6.99, 4),
        (7.0, 5),
        (13.99, 5),
        (14.0, 7),
        (120.0, 7),
        (-1.0, 0),
        (f64::NAN, 0),
    ] {
        assert_eq!(lace_index(los, false, 0, 0), l, "los {los}");
    }
    assert_eq!(lace_index(0.0, true, 0, 0), 3);
    // C: 0-3 as is, >=4 5.
    assert_eq!(lace_index(0.0, false, 3, 0), 3);
    assert_eq!(lace_index(0.0, false, 4, 0), 5);
    assert_eq!(lace_index(0.0, false, 12, 0), 5);
    // E: 0-3 as is, >=4 4.
    assert_eq!(lace_index(0.0, false, 0, 3), 3);
    assert_eq!(lace_index(0.0, false, 0, 4), 4);
    assert_eq!(lace_index(0.0, false, 0, 40), 4);
    // The range is 0-19.
    assert_eq!(lace_index(30.0, true, 9, 9), 19);
}

#[test]
fn charlson_from_icd_codes() {
    assert_eq!(charlson_from_icd(&[]), 0);
    assert_eq!(charlson_from_icd(&["J18.9"]), 0);
    assert_eq!(charlson_from_icd(&["I21.4"]), 1); // MI
    assert_eq!(charlson_from_icd(&["I50.9", "I50.1", "428.0"]), 1); // CHF counts once
    assert_eq!(charlson_from_icd(&["I42.7"]), 1); // CHF range I42.5-I42.9
    assert_eq!(charlson_from_icd(&["I42.1"]), 0); // not in it
    assert_eq!(charlson_from_icd(&["E11.9"]), 1); // diabetes, uncomplicated
    assert_eq!(charlson_from_icd(&["E11.9", "E11.2"]), 2); // complicated replaces it
    assert_eq!(charlson_from_icd(&["C34.1"]), 2); // malignancy
    assert_eq!(charlson_from_icd(&["C34.1", "C78.0"]), 6); // metastatic replaces it
    assert_eq!(charlson_from_icd(&["C44.9"]), 0); // skin, not melanoma
    assert_eq!(charlson_from_icd(&["K70.3", "K72.1"]), 3); // severe liver replaces mild
    assert_eq!(charlson_from_icd(&["N18.5"]), 2); // renal
    assert_eq!(charlson_from_icd(&["B20"]), 6); // HIV
                                                // ICD-9-CM.
    assert_eq!(charlson_from_icd(&["410.01"]), 1);
    assert_eq!(charlson_from_icd(&["250.40"]), 2);
    assert_eq!(charlson_from_icd(&["250.00", "250.60"]), 2);
    assert_eq!(charlson_from_icd(&["195.8"]), 2);
    assert_eq!(charlson_from_icd(&["195.9"]), 0);
    assert_eq!(charlson_from_icd(&["042"]), 6);
    assert_eq!(charlson_from_icd(&["E849.7"]), 0); // an ICD-9 E code is not diabetes
    assert_eq!(charlson_from_icd(&["V42.0"]), 2); // kidney transplant (ICD-9-CM)
                                                  // A mixture: MI 1 + CHF 1 + renal 2 + dementia 1 + COPD 1.
    assert_eq!(charlson_from_icd(&["410.71", "I50.9", "585.9", "F03.90", "J44.1"]), 6);
    // Knowing the revision: ICD-10 V42.0 is a transport accident.
    assert_eq!(charlson(&[(IcdVersion::Icd10, "V42.0")]), 0);
    assert_eq!(charlson(&[(IcdVersion::Icd9, "V42.0")]), 2);
}

#[test]
fn auroc_standard_error_matches_hanley_mcneil() {
    // Hanley & McNeil 1982: A = 0.8 from 50 positives and 50 negatives, about 0.044.
    let se = metrics::auroc_standard_error(0.8, 50, 50);
    assert!((se - 0.0438).abs() < 0.001, "{se}");
    assert!(
        metrics::auroc_standard_error(0.8, 10, 500) > se,
        "fewer positives, wider"
    );
    assert!(metrics::auroc_standard_error(0.8, 0, 5).is_nan());
}
