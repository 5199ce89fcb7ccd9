//! The sidecar end to end against real servers: a ClickHouse, the platform (in-process,
//! to fill the warehouse from a simulated hospital), and the sidecar over a socket.
//! Training set -> model -> scores; online features equal the offline rows; a late
//! fact never leaks into an earlier row.

mod common;

use common::*;
use futures::StreamExt;
use hospital_ml::store::TrainingSetStore;
use hospital_proto::events::{self as ev, clinical_event::Payload, ClinicalEvent};
use hospital_proto::ml as pb;
use hospital_proto::ml::feature_store_service_client::FeatureStoreServiceClient;
use hospital_proto::ml::model_service_client::ModelServiceClient;
use hospital_proto::ml::risk_service_client::RiskServiceClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_set_model_and_scores_over_real_servers() {
    let r = rig(8).await;
    let set = build(r.ml, "deterioration", pb::Task::Deterioration24h).await;
    assert!(set.rows > 100, "{set:?}");
    assert!(set.positives > 0, "the simulated week has deteriorations: {set:?}");
    assert_eq!(set.version, 1);

    // Train: metrics beside the NEWS2 baseline on the same held-out rows.
    let mut models = ModelServiceClient::new(channel(r.ml).await);
    let m = models
        .train(pb::TrainRequest {
            task: pb::Task::Deterioration24h as i32,
            training_set: "deterioration".into(),
            training_set_version: 0,
            l2: 0.0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(m.promoted, "the first version is promoted");
    eprintln!("hyperparameters: {}", m.hyperparameters);
    // Parity: scikit-learn on the same Lance set version, split as the registry splits it.
    let l2 = serde_json::from_str::<serde_json::Value>(&m.hyperparameters).unwrap()["l2"]
        .as_f64()
        .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/parity/parity.py");
    let dataset = r.data.path().join("training_sets/deterioration.lance");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(&dataset)
        .args(["--version", "1", "--l2", &l2.to_string(), "--repeat", "3"])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "parity.py (scripts/setup.sh installs scikit-learn and pylance): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sk: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let linfa_auroc = m.model.as_ref().unwrap().auroc;
    let sk_auroc = sk["auroc"].as_f64().unwrap();
    eprintln!(
        "parity on the Lance set: linfa AUROC {linfa_auroc:.4} (fit {:.3} s, this build), scikit-learn {sk_auroc:.4} \
         (fit {:.3} s)",
        m.fit_seconds,
        sk["fit_seconds"].as_f64().unwrap()
    );
    assert!(
        (linfa_auroc - sk_auroc).abs() <= 0.01,
        "linfa {linfa_auroc} vs scikit-learn {sk_auroc}"
    );
    let (model, baseline) = (m.model.unwrap(), m.baseline.unwrap());
    assert_eq!(model.rows, baseline.rows, "model and baseline on the same rows");
    assert!(model.auroc.is_finite() || model.positives == 0, "{model:?}");
    eprintln!(
        "deterioration: model {model:?}\nbaseline {}: {baseline:?}",
        m.baseline_name
    );

    // Online features of a row's patient as of the row's point equal the row: the same
    // code on the same facts.
    let store = TrainingSetStore::new(r.data.path().join("training_sets"));
    let offline = rows(&store, "deterioration", 1).await;
    let ids = identity(&r.ch);
    let mut fs = FeatureStoreServiceClient::new(channel(r.ml).await);
    let mut checked = 0;
    for (patient, cut, pos, features) in offline.iter().step_by((offline.len() / 25).max(1)) {
        let online = fs
            .get_online_features(pb::GetOnlineFeaturesRequest {
                patient: Some(ids[patient].clone()),
                as_of_position: *pos,
                as_of: Some(prost_types::Timestamp {
                    seconds: cut.div_euclid(1000),
                    nanos: (cut.rem_euclid(1000) * 1_000_000) as i32,
                }),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            same(&online.values, features),
            "online != offline for {patient} at {cut}/{pos}"
        );
        checked += 1;
    }
    assert!(checked >= 10);

    // Scores: by patient (as of everything in the warehouse) and by vector; a stream
    // keeps order and answers a bad request in place.
    let (patient, _, _, features) = offline.last().unwrap().clone();
    let mut risk = RiskServiceClient::new(channel(r.ml).await);
    let by_vector = risk
        .score_one(pb::ScoreRequest {
            request_id: "v".into(),
            task: pb::Task::Deterioration24h as i32,
            input: Some(pb::score_request::Input::Features(pb::FeatureVector {
                values: features.clone(),
            })),
            model_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!((0.0..=1.0).contains(&by_vector.probability));
    assert_eq!(by_vector.contributions.len(), features.len());
    let requests = vec![
        pb::ScoreRequest {
            request_id: "a".into(),
            task: pb::Task::Deterioration24h as i32,
            input: Some(pb::score_request::Input::Patient(pb::PatientAt {
                patient: Some(ids[&patient].clone()),
                as_of_position: 0,
            })),
            model_version: 0,
        },
        pb::ScoreRequest {
            request_id: "bad".into(),
            task: pb::Task::Deterioration24h as i32,
            input: Some(pb::score_request::Input::Features(pb::FeatureVector {
                values: vec![1.0],
            })),
            model_version: 0,
        },
        pb::ScoreRequest {
            request_id: "c".into(),
            task: pb::Task::Deterioration24h as i32,
            input: Some(pb::score_request::Input::Features(pb::FeatureVector {
                values: features.clone(),
            })),
            model_version: 0,
        },
    ];
    let answers: Vec<pb::ScoreResponse> = risk
        .score(futures::stream::iter(requests))
        .await
        .unwrap()
        .into_inner()
        .map(|r| r.unwrap())
        .collect()
        .await;
    let ids_back: Vec<&str> = answers.iter().map(|a| a.request_id.as_str()).collect();
    assert_eq!(ids_back, ["a", "bad", "c"]);
    assert!(answers[0].error.is_empty(), "{:?}", answers[0].error);
    assert!(answers[1].error.contains("features.values"), "{:?}", answers[1].error);
    assert_eq!(answers[2].probability, by_vector.probability);

    // The same model through the Open Inference Protocol.
    use hospital_proto::inference as oip;
    let mut infer = oip::grpc_inference_service_client::GrpcInferenceServiceClient::new(channel(r.ml).await);
    let out = infer
        .model_infer(oip::ModelInferRequest {
            model_name: "deterioration_24h".into(),
            inputs: vec![oip::model_infer_request::InferInputTensor {
                name: "features".into(),
                datatype: "FP64".into(),
                shape: vec![1, features.len() as i64],
                contents: Some(oip::InferTensorContents {
                    fp64_contents: features.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let p = &out.outputs[0].contents.as_ref().unwrap().fp64_contents;
    assert_eq!(p, &vec![by_vector.probability]);
    r.platform.shutdown().await.unwrap();
}

/// A lab resulted before a row's cutoff but sent after it stays out of that row (it had
/// not arrived), and is in the online vector once it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_result_never_reaches_back_into_an_earlier_row() {
    let r = rig(4).await;
    let v1 = build(r.ml, "leak", pb::Task::Deterioration24h).await;
    let store = TrainingSetStore::new(r.data.path().join("training_sets"));
    let before = rows(&store, "leak", v1.version).await;
    let lactate = v1.features.iter().position(|f| f == "lab_lactate_last").unwrap();
    let (patient, cut, pos, features) = before[before.len() / 2].clone();
    let ids = identity(&r.ch);
    let who = ids[&patient].clone();
    // A lactate of 9.9 resulted 30 minutes before the row's cutoff, sent now.
    let late = ClinicalEvent {
        event_id: "late-lactate".into(),
        source_system: "late-lis".into(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: (cut - 1_800_000) / 1000,
            nanos: 0,
        }),
        patient: Some(who.clone()),
        payload: Some(Payload::LabResult(ev::LabResult {
            order_id: "late-order".into(),
            loinc_code: "2524-7".into(),
            display: "Lactate".into(),
            value: Some(9.9),
            unit: "mmol/L".into(),
            ..Default::default()
        })),
    };
    send(r.platform.local_addr(), vec![late]).await;
    warehouse_load(r.platform.local_addr()).await;
    let v2 = build(r.ml, "leak", pb::Task::Deterioration24h).await;
    assert_eq!(v2.version, 2);
    let after = rows(&store, "leak", 2).await;
    let row = after
        .iter()
        .find(|(p, c, q, _)| p == &patient && *c == cut && *q == pos)
        .expect("the same row in the rebuilt set");
    assert!(
        same(&row.3, &features),
        "the late result changed a row whose cutoff came before it arrived"
    );
    assert_ne!(row.3[lactate], 9.9);
    // Online, as of now (it has arrived) at the same time: it counts.
    let mut fs = FeatureStoreServiceClient::new(channel(r.ml).await);
    let now = fs
        .get_online_features(pb::GetOnlineFeaturesRequest {
            patient: Some(who),
            as_of_position: 0,
            as_of: Some(prost_types::Timestamp {
                seconds: cut.div_euclid(1000),
                nanos: (cut.rem_euclid(1000) * 1_000_000) as i32,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.values[lactate], 9.9, "once arrived, the result counts");
    r.platform.shutdown().await.unwrap();
}
