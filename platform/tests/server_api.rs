//! The gRPC surface and its operations against a real server over real sockets and a
//! real ClickHouse: filters that match nothing, health during a ClickHouse outage,
//! undecodable requests, echoed values that must not grow an answer, ClickHouse server
//! errors, undecodable staged events, and the printed configuration.

mod common;

use std::time::{Duration, Instant};

use bytes::{Buf, BufMut};
use common::*;
use hospital_platform::error::Error;
use hospital_platform::staging::StagedEvent;
use hospital_proto::events::{self as pb, clinical_event::Payload, reference_data::Item};
use hospital_proto::ingest::{IngestRequest, IngestResponse};
use hospital_proto::realtime::alert_service_client::AlertServiceClient;
use hospital_proto::realtime::census_service_client::CensusServiceClient;
use hospital_proto::realtime::{GetCensusRequest, GetScoresRequest, SubscribeAlertsRequest};
use prost::Message;
use prost_types::Timestamp;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_types::StatusExt;

fn event(id: &str, payload: Payload, patient: Option<&str>) -> pb::ClinicalEvent {
    pb::ClinicalEvent {
        event_id: id.into(),
        source_system: "api-test".into(),
        occurred_at: Some(Timestamp {
            seconds: now_secs() - 3600,
            nanos: 0,
        }),
        patient: patient.map(|mrn| pb::PatientRef {
            mrn: mrn.into(),
            assigning_authority: "HOSP".into(),
        }),
        payload: Some(payload),
    }
}

fn ward(id: &str, dept: &str, ward: &str) -> pb::ClinicalEvent {
    let payload = Payload::ReferenceData(pb::ReferenceData {
        item: Some(Item::Ward(pb::Ward {
            department_code: dept.into(),
            department_name: format!("{dept} department"),
            ward_code: ward.into(),
            ward_name: format!("Ward {ward}"),
            bed_count: 4,
        })),
    });
    event(id, payload, None)
}

fn ed_arrival(id: &str, dept: &str, mrn: &str) -> pb::ClinicalEvent {
    let payload = Payload::EdArrival(pb::EdArrival {
        encounter_id: format!("enc-{id}"),
        arrival_mode: pb::ArrivalMode::WalkIn as i32,
        department_code: dept.into(),
        ..Default::default()
    });
    event(id, payload, Some(mrn))
}

/// Polls `check` every 20 ms until it holds or `secs` passed.
async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The filter violations of an INVALID_ARGUMENT: (field, description).
fn violations(status: &Status) -> Vec<(String, String)> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("google.rpc.BadRequest details")
        .field_violations
        .into_iter()
        .map(|v| (v.field, v.description))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_naming_unknown_codes_are_refused_with_the_known_ones() {
    let ch = clickhouse();
    let platform = start_platform(&ch).await;
    let addr = platform.local_addr();
    let ack = ingest_client(addr)
        .await
        .ingest_batch(request(
            "wards",
            &[
                ward("w1", "MED", "W10"),
                ward("w2", "SUR", "W20"),
                ed_arrival("a1", "EM", "P1"),
            ],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.committed_event_ids.len(), 3, "{:?}", ack.rejections);
    let channel = hospital_client::connect(&endpoint(addr)).await.unwrap();
    let mut alerts = AlertServiceClient::new(channel.clone());
    let mut census = CensusServiceClient::new(channel);
    eventually(10, "the census knows the wards", || {
        let mut census = census.clone();
        async move {
            let c = census
                .get_census(GetCensusRequest::default())
                .await
                .unwrap()
                .into_inner();
            c.wards.len() == 2 && c.ed_waiting.len() == 1
        }
    })
    .await;

    // SubscribeAlerts: a typo among good codes is named, with what is known.
    let err = alerts
        .subscribe_alerts(SubscribeAlertsRequest {
            ward_codes: vec!["W10".into(), "W1O".into()],
            department_codes: vec!["MDE".into()],
        })
        .await
        .expect_err("an unknown ward is not a quiet ward");
    assert_eq!(
        violations(&err),
        vec![
            (
                "ward_codes[1]".to_string(),
                "unknown ward code \"W1O\"; known: W10, W20".to_string()
            ),
            (
                "department_codes[0]".to_string(),
                "unknown department code \"MDE\"; known: EM, MED, SUR".to_string()
            ),
        ]
    );
    assert!(err.message().contains("W1O"), "{}", err.message());
    let ok = alerts
        .subscribe_alerts(SubscribeAlertsRequest {
            ward_codes: vec!["W10".into()],
            department_codes: vec!["EM".into()],
        })
        .await
        .expect("known codes are accepted");

    // GetScores.
    let err = alerts
        .get_scores(GetScoresRequest {
            ward_codes: vec!["W99".into()],
        })
        .await
        .expect_err("unknown ward");
    assert_eq!(violations(&err)[0].0, "ward_codes[0]");
    assert!(violations(&err)[0].1.contains("\"W99\""));
    alerts
        .get_scores(GetScoresRequest {
            ward_codes: vec!["W20".into()],
        })
        .await
        .expect("known ward");

    // GetCensus and WatchCensus.
    let bad = GetCensusRequest {
        department_codes: vec!["ICU".into()],
    };
    let err = census.get_census(bad.clone()).await.expect_err("unknown department");
    assert_eq!(
        violations(&err),
        vec![(
            "department_codes[0]".to_string(),
            "unknown department code \"ICU\"; known: EM, MED, SUR".to_string()
        )]
    );
    let err = census.watch_census(bad).await.expect_err("unknown department");
    assert_eq!(violations(&err)[0].0, "department_codes[0]");
    let em = census
        .get_census(GetCensusRequest {
            department_codes: vec!["EM".into()],
        })
        .await
        .expect("a department known from an ED arrival")
        .into_inner();
    assert_eq!(em.ed_waiting.len(), 1);
    census
        .watch_census(GetCensusRequest {
            department_codes: vec!["MED".into()],
        })
        .await
        .expect("known department")
        .into_inner()
        .message()
        .await
        .unwrap()
        .expect("a snapshot first");
    drop(ok);
    platform.shutdown().await.expect("clean shutdown");
}

async fn health_of(client: &mut HealthClient<tonic::transport::Channel>, service: &str) -> ServingStatus {
    let r = client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner();
    ServingStatus::try_from(r.status).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overall_health_follows_clickhouse() {
    let mut ch = clickhouse();
    let platform = start_platform(&ch).await;
    let channel = hospital_client::connect(&endpoint(platform.local_addr()))
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    const INGEST: &str = "hospital.ingest.v1.IngestService";
    const ALERTS: &str = "hospital.realtime.v1.AlertService";
    assert_eq!(health_of(&mut health, "").await, ServingStatus::Serving);
    assert_eq!(health_of(&mut health, INGEST).await, ServingStatus::Serving);

    ch.stop().expect("stop ClickHouse");
    eventually(30, "a default probe sees the outage", || {
        let mut health = health.clone();
        async move { health_of(&mut health, "").await == ServingStatus::NotServing }
    })
    .await;
    assert_eq!(health_of(&mut health, INGEST).await, ServingStatus::NotServing);
    assert_eq!(
        health_of(&mut health, "hospital.batch.v1.BatchService").await,
        ServingStatus::NotServing
    );
    assert_eq!(
        health_of(&mut health, ALERTS).await,
        ServingStatus::Serving,
        "alerts are served from memory"
    );

    ch.restart().expect("restart ClickHouse");
    eventually(30, "health recovers with ClickHouse", || {
        let mut health = health.clone();
        async move {
            health_of(&mut health, "").await == ServingStatus::Serving
                && health_of(&mut health, INGEST).await == ServingStatus::Serving
        }
    })
    .await;
    // No background task died on the way.
    platform.shutdown().await.expect("clean shutdown");
}

/// Sends and receives message bodies as they are: for requests that are not protobuf.
#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

/// Field 1 with wire type 7, which does not exist.
const GARBAGE: &[u8] = &[0x0f, 0xff, 0xff];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_is_not_protobuf_is_invalid_argument() {
    let ch = clickhouse();
    let platform = start_platform(&ch).await;
    let channel = hospital_client::connect(&endpoint(platform.local_addr()))
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    let undecodable = |status: &Status| {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("not a valid protobuf"),
            "{}",
            status.message()
        );
        assert_eq!(violations(status)[0].0, "request");
    };

    // Unary.
    grpc.ready().await.unwrap();
    let status = grpc
        .unary(
            tonic::Request::new(GARBAGE.to_vec()),
            PathAndQuery::from_static("/hospital.ingest.v1.IngestService/IngestBatch"),
            Raw,
        )
        .await
        .expect_err("garbage is refused");
    undecodable(&status);

    // Server streaming.
    grpc.ready().await.unwrap();
    let status = grpc
        .server_streaming(
            tonic::Request::new(GARBAGE.to_vec()),
            PathAndQuery::from_static("/hospital.realtime.v1.AlertService/SubscribeAlerts"),
            Raw,
        )
        .await
        .expect_err("garbage is refused");
    undecodable(&status);

    // Bidirectional: the request before the garbage is acknowledged, then the stream
    // ends with the caller's error (not silently).
    let good = request("r1", &[ward("g1", "MED", "W10")]).encode_to_vec();
    grpc.ready().await.unwrap();
    let mut acks = grpc
        .streaming(
            tonic::Request::new(tokio_stream::iter(vec![good, GARBAGE.to_vec()])),
            PathAndQuery::from_static("/hospital.ingest.v1.IngestService/Ingest"),
            Raw,
        )
        .await
        .expect("stream opens")
        .into_inner();
    let first = IngestResponse::decode(acks.message().await.unwrap().expect("an ack").as_slice()).unwrap();
    assert_eq!(first.committed_event_ids, vec!["g1".to_string()]);
    let status = acks.message().await.expect_err("the garbage is answered");
    undecodable(&status);
    platform.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_event_id_is_quoted_short_and_its_neighbours_are_acknowledged() {
    let ch = clickhouse();
    let platform = start_platform(&ch).await;
    let addr = platform.local_addr();
    let huge = "x".repeat(5 * 1024 * 1024);
    let events = |n: &str| {
        vec![
            ward(&format!("{n}-a"), "MED", "W10"),
            ward(&huge, "MED", "W10"),
            ward(&format!("{n}-b"), "MED", "W10"),
        ]
    };
    let check = |ack: &IngestResponse, n: &str| {
        assert_eq!(ack.committed_event_ids, vec![format!("{n}-a"), format!("{n}-b")]);
        assert_eq!(ack.rejections.len(), 1);
        let r = &ack.rejections[0];
        assert_eq!(r.index, 1);
        assert_eq!(r.event_id, format!("{}... (5242880 bytes)", "x".repeat(64)));
        assert_eq!(r.violations[0].field, "event_id");
        assert_eq!(r.violations[0].description, "longer than 128 bytes (got 5242880)");
        assert!(ack.encoded_len() < 4096, "the ack does not grow with the id");
    };

    // IngestBatch.
    let ack = ingest_client(addr)
        .await
        .ingest_batch(request("b1", &events("batch")))
        .await
        .expect("the neighbours' ack arrives")
        .into_inner();
    check(&ack, "batch");

    // Ingest (stream): the acks of the requests around it arrive too, in order.
    let (tx, mut acks) = open_stream(addr).await;
    tx.send(request("s0", &[ward("s0", "MED", "W10")])).await.unwrap();
    tx.send(request("s1", &events("stream"))).await.unwrap();
    tx.send(request("s2", &[ward("s2", "MED", "W10")])).await.unwrap();
    drop(tx);
    let mut got = Vec::new();
    while let Some(ack) = acks.message().await.expect("no error on the stream") {
        got.push(ack);
    }
    assert_eq!(
        got.iter().map(|a| a.request_id.as_str()).collect::<Vec<_>>(),
        ["s0", "s1", "s2"]
    );
    check(&got[1], "stream");

    // Everything rejected: one INVALID_ARGUMENT whose headers stay small.
    let status = ingest_client(addr)
        .await
        .ingest_batch(request("b2", &[ward(&huge, "MED", "W10")]))
        .await
        .expect_err("nothing valid");
    let v = violations(&status);
    assert_eq!(v[0].0, "events[0].event_id");
    assert!(v[0].1.contains("(5242880 bytes)") && v[0].1.len() < 512, "{}", v[0].1);
    assert!(status.message().len() < 1024);

    // An over-long request id is refused with its limit.
    let status = ingest_client(addr)
        .await
        .ingest_batch(IngestRequest {
            request_id: huge.clone(),
            events: vec![ward("r-ok", "MED", "W10")],
        })
        .await
        .expect_err("request id too long");
    assert_eq!(
        violations(&status),
        vec![("request_id".to_string(), "at most 256 bytes, got 5242880".to_string())]
    );
    platform.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_server_errors_are_retryable_or_not_by_code() {
    let ch = clickhouse();
    let cfg = config(&ch).clickhouse;
    let client = hospital_platform::db::client(&cfg);
    async fn status(client: clickhouse::Client, sql: &str) -> Status {
        let e = client.query(sql).execute().await.expect_err(sql);
        Status::from(Error::from(e))
    }
    // Answered by the server: the memory limit is a state of the server, retry later.
    let small = client.clone().with_setting("max_memory_usage", "1000000");
    let s = status(small, "SELECT groupArray(number) FROM numbers(10000000)").await;
    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
    assert!(s.message().contains("Code: 241"), "{}", s.message());
    // The platform's own mistake: retrying cannot help.
    let s = status(client, "SELECT * FROM default.no_such_table").await;
    assert_eq!(s.code(), Code::Internal, "{s:?}");
    assert!(s.message().contains("Code: 60"), "{}", s.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_staged_event_is_counted_and_recorded() {
    let harness = StagingHarness::start().await;
    let good = ward("after", "MED", "W10");
    let garbage = StagedEvent {
        payload: GARBAGE.to_vec(),
        event_id: "broken".into(),
        ..staged(&ward("broken", "MED", "W10"))
    };
    let broken_at = harness.stage_rows(vec![garbage]).await;
    let good_at = harness.stage(&[good]).await;
    let platform = start_platform(&harness.ch).await;
    let addr = platform.local_addr();
    let channel = hospital_client::connect(&endpoint(addr)).await.unwrap();
    let mut census = CensusServiceClient::new(channel);
    eventually(10, "the processor passes the broken event", || {
        let mut census = census.clone();
        async move {
            census
                .get_census(GetCensusRequest::default())
                .await
                .unwrap()
                .into_inner()
                .position
                >= good_at
        }
    })
    .await;
    assert_eq!(platform.undecodable_events(), 1);
    let sql = format!(
        "SELECT count() FROM warehouse.load_errors FINAL WHERE position = {broken_at} \
         AND event_id = 'broken' AND run_id = 'realtime' AND error LIKE '%does not decode%'"
    );
    eventually(10, "the broken event is in load_errors", || {
        let n = count(&harness.ch, &sql);
        async move { n == 1 }
    })
    .await;
    let c = census
        .get_census(GetCensusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.wards.len(), 1, "the event after it was applied");
    platform.shutdown().await.expect("clean shutdown");
}

#[test]
fn printed_configuration_hides_the_password() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hospital-platform"))
        .arg("--print-config")
        .env("HOSPITAL__CLICKHOUSE__PASSWORD", "s3cret-pw")
        .env("HOSPITAL__CLICKHOUSE__URL", "http://ops:url-pw@127.0.0.1:8123")
        .output()
        .expect("run hospital-platform");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        !printed.contains("s3cret-pw") && !printed.contains("url-pw"),
        "{printed}"
    );
    assert!(printed.contains("password = \"<redacted>\""), "{printed}");
    assert!(
        printed.contains("url = \"http://ops:<redacted>@127.0.0.1:8123\""),
        "{printed}"
    );
}
