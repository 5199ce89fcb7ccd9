//! The sidecar end to end on the MIMIC-III demo (100 patients, 129 admissions, mostly
//! ICU stays), loaded through the platform's ingest: both training sets built and every
//! candidate point accounted for against the warehouse, the models trained where the set
//! allows, and their metrics printed as they are, however small the set.

mod common;

use common::*;
use hospital_proto::ml as pb;
use hospital_proto::ml::model_service_client::ModelServiceClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mimic_demo_through_the_sidecar() {
    let dir = hospital_testkit::shared_data("mimic3_demo");
    let extract = hospital_client::load::mimic(&dir).expect("the tables read");
    let r = rig_with(extract.events).await;
    let n = |sql: &str| -> u64 { r.ch.query(sql).unwrap().trim().parse().unwrap() };

    // Readmission: one candidate per inpatient discharge alive; each a row or censored.
    let readmission = build_progress(r.ml, "mimic_readmission", pb::Task::Readmission30d).await;
    let alive = n(
        "SELECT count() FROM warehouse.fact_encounter FINAL WHERE is_deleted = 0 \
                   AND encounter_class = 'inpatient' AND isNotNull(discharged_at_ms) \
                   AND isNotNull(admitted_at_ms) AND discharge_disposition != 'deceased'",
    );
    assert_eq!(alive, 129 - 40, "MIMIC's 129 admissions, 40 of them ending in death");
    assert_eq!(
        readmission.rows_written + readmission.censored + readmission.out_of_range,
        alive,
        "{readmission:?}"
    );
    // Deterioration: one candidate per vital-signs set; MIMIC's are nearly all in ICUs.
    let deterioration = build_progress(r.ml, "mimic_deterioration", pb::Task::Deterioration24h).await;
    let sets = n("SELECT count() FROM warehouse.fact_vital_sign_set FINAL WHERE is_deleted = 0");
    assert_eq!(
        deterioration.rows_written + deterioration.censored + deterioration.not_on_a_ward + deterioration.out_of_range,
        sets,
        "{deterioration:?}"
    );
    assert!(
        deterioration.not_on_a_ward > deterioration.rows_written,
        "MIMIC charts in ICUs: {deterioration:?}"
    );
    eprintln!("MIMIC readmission set: {readmission:?}");
    eprintln!("MIMIC deterioration set: {deterioration:?}");

    // Train each where it can; a set too small or with one class is refused with the
    // reason, not trained on.
    let mut models = ModelServiceClient::new(channel(r.ml).await);
    for (name, task, built) in [
        ("mimic_readmission", pb::Task::Readmission30d, &readmission),
        ("mimic_deterioration", pb::Task::Deterioration24h, &deterioration),
    ] {
        let trained = models
            .train(pb::TrainRequest {
                task: task as i32,
                training_set: name.into(),
                training_set_version: 0,
                l2: 0.0,
            })
            .await;
        match trained {
            Ok(m) => {
                let m = m.into_inner();
                let (model, baseline) = (m.model.unwrap(), m.baseline.unwrap());
                assert_eq!(model.rows, baseline.rows);
                eprintln!(
                    "MIMIC {name}: {} rows ({} positives); held out {} rows ({} positives): model AUROC {:.3}, \
                     {} AUROC {:.3}",
                    built.rows_written,
                    built.positives,
                    model.rows,
                    model.positives,
                    model.auroc,
                    m.baseline_name,
                    baseline.auroc
                );
            }
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
                eprintln!("MIMIC {name}: not trained: {}", status.message());
            }
        }
    }
    r.platform.shutdown().await.unwrap();
}
