//! Ingest over real gRPC sockets into a real ClickHouse: acks, rejections, duplicates,
//! restarts of the platform and of ClickHouse.

mod common;

use std::collections::{BTreeMap, HashSet};

use common::*;
use hospital_client::sender::{send_events, SenderOptions};
use hospital_proto::events::clinical_event::Payload;
use hospital_proto::events::ClinicalEvent;
use hospital_proto::ingest::IngestRequest;
use prost_types::Timestamp;
use tonic::Code;
use tonic_types::StatusExt;

/// Breaks an event in one of several ways; returns the field the rejection must name.
fn break_event(e: &mut ClinicalEvent, how: usize) -> &'static str {
    match how % 4 {
        0 => {
            e.patient = None;
            "patient"
        }
        1 => {
            e.occurred_at = Some(Timestamp {
                seconds: now_secs() + 86_400,
                nanos: 0,
            });
            "occurred_at"
        }
        2 => {
            e.event_id = String::new();
            "event_id"
        }
        _ => {
            e.payload = Some(Payload::VitalSigns(hospital_proto::events::VitalSigns {
                observations: vec![hospital_proto::events::Observation {
                    loinc_code: "8867-4".into(),
                    value: 80.0,
                    unit: "Hz".into(),
                }],
                ..Default::default()
            }));
            "vital_signs.observations[0].unit"
        }
    }
}

/// Distinct valid events by kind, the way the warehouse must count them.
fn kinds(events: &[ClinicalEvent]) -> BTreeMap<&'static str, usize> {
    let mut seen = HashSet::new();
    let mut by_kind = BTreeMap::new();
    for e in events {
        if seen.insert((e.source_system.clone(), e.event_id.clone())) {
            let kind = hospital_platform::ingest::kind_of(e.payload.as_ref().unwrap());
            *by_kind.entry(kind).or_insert(0) += 1;
        }
    }
    by_kind
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_duplicates_and_bad_events_gets_exact_acks_and_staging_rows() {
    let ch = clickhouse();
    let platform = start_platform(&ch).await;
    let good = simulated(3, 100.0, 1, "sim");
    assert!(good.len() > 5_000, "a stream of thousands: {}", good.len());

    // Requests of 250: the good events in order, every 7th request also resends 40
    // events of an earlier request, and every request carries 2 broken events.
    let mut requests: Vec<IngestRequest> = Vec::new();
    let mut expected_rejections: Vec<(String, u32, &'static str)> = Vec::new();
    let mut sent_valid = 0usize;
    let mut how = 0;
    for (i, chunk) in good.chunks(250).enumerate() {
        let mut evs = chunk.to_vec();
        if i % 7 == 6 {
            evs.extend_from_slice(&good[(i - 5) * 250..(i - 5) * 250 + 40]);
        }
        for k in 0..2 {
            let mut bad = chunk.iter().filter(|e| e.patient.is_some()).nth(k * 3).unwrap().clone();
            bad.event_id = format!("bad-{i}-{k}");
            let field = break_event(&mut bad, how);
            how += 1;
            let at = (k * 100).min(evs.len());
            evs.insert(at, bad);
            expected_rejections.push((i.to_string(), at as u32, field));
        }
        sent_valid += evs.len() - 2;
        requests.push(request(i, &evs));
    }

    let (tx, mut acks) = open_stream(platform.local_addr()).await;
    let sender = tokio::spawn(async move {
        for r in requests {
            tx.send(r).await.unwrap();
        }
    });
    let mut got_rejections = Vec::new();
    let mut duplicates = 0usize;
    let mut committed = 0usize;
    let mut last_position = 0;
    let mut next_request = 0usize;
    while let Some(ack) = acks.message().await.expect("stream stays healthy") {
        assert_eq!(ack.request_id, next_request.to_string(), "acks come in request order");
        next_request += 1;
        assert!(ack.committed_position >= last_position, "positions never go back");
        last_position = ack.committed_position;
        committed += ack.committed_event_ids.len();
        for d in &ack.duplicates {
            assert!(!d.content_differs, "a resend of the same content: {d:?}");
            assert!(d.first_position > 0 && d.first_position <= ack.committed_position);
            assert!(
                ack.committed_event_ids.contains(&d.event_id),
                "a duplicate is durable too"
            );
        }
        duplicates += ack.duplicates.len();
        for r in ack.rejections {
            assert_eq!(r.violations.len(), 1, "{r:?}");
            got_rejections.push((ack.request_id.clone(), r.index, r.violations[0].field.clone()));
            assert!(!r.violations[0].description.is_empty());
        }
        if next_request == good.chunks(250).len() {
            break;
        }
    }
    sender.await.unwrap();
    assert_eq!(
        committed, sent_valid,
        "every valid event is acknowledged, duplicates included"
    );
    let expected: Vec<_> = expected_rejections
        .iter()
        .map(|(r, i, f)| (r.clone(), *i, f.to_string()))
        .collect();
    assert_eq!(
        got_rejections, expected,
        "each bad event is rejected alone, naming its field"
    );

    assert_eq!(
        duplicates,
        sent_valid - good.len(),
        "every resent event is answered as a duplicate of its first copy"
    );
    assert_eq!(
        count(&ch, "SELECT count() FROM staging.events"),
        good.len() as u64,
        "first commit wins: one staged copy of each event"
    );
    assert_eq!(
        count(&ch, "SELECT uniqExact(source_system, event_id) FROM staging.events"),
        good.len() as u64
    );
    assert_eq!(count(&ch, "SELECT max(position) FROM staging.events"), last_position);
    assert_eq!(
        count(&ch, "SELECT count() FROM staging.events WHERE event_id LIKE 'bad-%'"),
        0
    );

    // The warehouse counts each event once; running the load again changes nothing.
    run_warehouse_load(platform.local_addr(), false).await;
    warehouse_counts_match(&ch, &good, &kinds(&good));
    run_warehouse_load(platform.local_addr(), true).await;
    warehouse_counts_match(&ch, &good, &kinds(&good));
    platform.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_batch_commits_the_good_and_names_the_bad() {
    let ch = clickhouse();
    let platform = start_platform(&ch).await;
    let mut client = ingest_client(platform.local_addr()).await;
    let mut evs: Vec<_> = simulated(1, 5.0, 2, "sim")
        .into_iter()
        .filter(|e| e.patient.is_some())
        .take(10)
        .collect();
    let mut bad = evs[4].clone();
    bad.event_id = "bad-1".into();
    break_event(&mut bad, 0);
    evs.insert(4, bad.clone());

    let ack = client
        .ingest_batch(request("mixed", &evs))
        .await
        .expect("mixed batch is accepted")
        .into_inner();
    assert_eq!(ack.committed_event_ids.len(), 10);
    assert_eq!(ack.rejections.len(), 1);
    assert_eq!(
        (ack.rejections[0].index, ack.rejections[0].event_id.as_str()),
        (4, "bad-1")
    );
    assert_eq!(count(&ch, "SELECT count() FROM staging.events"), 10);

    // All invalid: INVALID_ARGUMENT with google.rpc.BadRequest naming event and field.
    let mut bad2 = evs[0].clone();
    bad2.event_id = "bad-2".into();
    break_event(&mut bad2, 3);
    let status = client.ingest_batch(request("bad", &[bad, bad2])).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status.get_error_details();
    let fields: Vec<_> = details
        .bad_request()
        .expect("BadRequest details")
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    assert_eq!(
        fields,
        vec!["events[0].patient", "events[1].vital_signs.observations[0].unit"]
    );
    assert_eq!(
        count(&ch, "SELECT count() FROM staging.events"),
        10,
        "nothing of it was staged"
    );

    // Too many events in one request: the request as a whole is refused.
    let big = vec![evs[0].clone(); 10_001];
    let status = client.ingest_batch(request("big", &big)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    platform.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_down_gives_unavailable_without_ack_then_recovers() {
    let mut ch = clickhouse();
    let platform = start_platform(&ch).await;
    let evs = simulated(2, 10.0, 3, "sim");
    let (first, rest) = evs.split_at(200);

    let (tx, mut acks) = open_stream(platform.local_addr()).await;
    tx.send(request("0", first)).await.unwrap();
    let ack = acks.message().await.unwrap().unwrap();
    assert_eq!(ack.committed_event_ids.len(), 200);

    ch.stop().unwrap();
    tx.send(request("1", &rest[..100])).await.unwrap();
    let err = acks.message().await.expect_err("no ack while ClickHouse is down");
    assert_eq!(err.code(), Code::Unavailable, "{err}");

    // Health reports the ingest service NOT_SERVING while staging cannot be written.
    let channel = hospital_client::connect(&endpoint(platform.local_addr()))
        .await
        .unwrap();
    let health = |channel: tonic::transport::Channel| async move {
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: "hospital.ingest.v1.IngestService".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status
    };
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    let mut status = health(channel.clone()).await;
    for _ in 0..100 {
        if status == not_serving {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        status = health(channel.clone()).await;
    }
    assert_eq!(status, not_serving, "health follows ClickHouse down");

    ch.restart().unwrap();
    // The sender resends what was not acknowledged; it commits once ClickHouse is back.
    let report = send_events(
        rest.to_vec(),
        &SenderOptions {
            endpoint: endpoint(platform.local_addr()),
            batch_size: 100,
            ..Default::default()
        },
        |_| {},
    )
    .await
    .expect("ingest recovers");
    assert_eq!(report.committed, rest.len());
    assert_eq!(
        count(&ch, "SELECT uniqExact(event_id) FROM staging.events"),
        evs.len() as u64,
        "everything acknowledged is staged"
    );
    let mut status = health(channel.clone()).await;
    for _ in 0..100 {
        if status == serving {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        status = health(channel.clone()).await;
    }
    assert_eq!(status, serving, "health follows ClickHouse back");
    platform.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_killed_mid_stream_loses_nothing_acked_and_resend_adds_no_duplicates() {
    let ch = clickhouse();
    let port = hospital_testkit::free_port();
    let mut proc = PlatformProcess::spawn(&ch, port);
    let evs = simulated(2, 100.0, 4, "sim");

    let (tx, mut acks) = open_stream(proc.addr).await;
    let requests: Vec<_> = evs.chunks(100).enumerate().map(|(i, c)| request(i, c)).collect();
    let total_requests = requests.len();
    let feeder = tokio::spawn(async move {
        for r in requests {
            if tx.send(r).await.is_err() {
                break;
            }
        }
    });
    let mut acked: Vec<String> = Vec::new();
    while let Some(ack) = acks.message().await.unwrap() {
        acked.extend(ack.committed_event_ids);
        if acked.len() >= 1_500 {
            break;
        }
    }
    proc.kill();
    feeder.abort();
    assert!(
        acked.len() < evs.len(),
        "killed mid-stream ({} of {total_requests} requests)",
        acked.len() / 100
    );

    // Everything acknowledged before the kill is durable.
    let staged = ch
        .query("SELECT DISTINCT event_id FROM staging.events FORMAT TabSeparated")
        .unwrap();
    let staged: HashSet<&str> = staged.lines().collect();
    let lost: Vec<_> = acked.iter().filter(|id| !staged.contains(id.as_str())).collect();
    assert!(lost.is_empty(), "acknowledged but not staged: {lost:?}");

    // Restart, resend everything (an at-least-once sender does not know what landed).
    let proc = PlatformProcess::spawn(&ch, port);
    let report = send_events(
        evs.clone(),
        &SenderOptions {
            endpoint: endpoint(proc.addr),
            batch_size: 500,
            ..Default::default()
        },
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.committed, evs.len());
    assert_eq!(
        count(&ch, "SELECT uniqExact(event_id) FROM staging.events"),
        evs.len() as u64
    );

    // The warehouse counts every event once.
    run_warehouse_load(proc.addr, false).await;
    let by_kind = kinds(&evs);
    warehouse_counts_match(&ch, &evs, &by_kind);
}

/// The warehouse holds each distinct event once, whatever was resent.
fn warehouse_counts_match(
    ch: &hospital_testkit::ClickHouseServer,
    evs: &[ClinicalEvent],
    by_kind: &BTreeMap<&str, usize>,
) {
    // An encounter is any encounter id of an encounter event: ED attendances that never
    // became admissions count too, and patients still in hospital have no discharge.
    let mut encounters = HashSet::new();
    let mut admitted = HashSet::new();
    let mut discharged = HashSet::new();
    for e in evs {
        match &e.payload {
            Some(Payload::Admission(a)) => {
                encounters.insert(&a.encounter_id);
                admitted.insert(&a.encounter_id);
            }
            Some(Payload::Discharge(d)) => {
                encounters.insert(&d.encounter_id);
                discharged.insert(&d.encounter_id);
            }
            Some(Payload::Transfer(t)) => {
                encounters.insert(&t.encounter_id);
            }
            Some(Payload::EdArrival(a)) => {
                encounters.insert(&a.encounter_id);
            }
            Some(Payload::EdTriage(t)) => {
                encounters.insert(&t.encounter_id);
            }
            _ => {}
        }
    }
    assert!(
        !admitted.is_empty() && admitted.len() < encounters.len() && !discharged.is_empty(),
        "admissions, ED-only attendances and discharges: {} {} {}",
        admitted.len(),
        encounters.len(),
        discharged.len()
    );
    assert_eq!(
        count(
            ch,
            "SELECT count() FROM warehouse.fact_encounter FINAL WHERE is_deleted = 0"
        ),
        encounters.len() as u64,
        "one encounter row per encounter"
    );
    assert_eq!(
        count(
            ch,
            "SELECT countIf(admitted_at_ms IS NOT NULL) FROM warehouse.fact_encounter FINAL WHERE is_deleted = 0"
        ),
        admitted.len() as u64
    );
    assert_eq!(
        count(
            ch,
            "SELECT countIf(discharged_at_ms IS NOT NULL) FROM warehouse.fact_encounter FINAL WHERE is_deleted = 0"
        ),
        discharged.len() as u64
    );
    let observations: usize = evs
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::VitalSigns(v)) => Some(v.observations.len()),
            _ => None,
        })
        .sum();
    assert_eq!(
        count(
            ch,
            "SELECT count() FROM warehouse.fact_vital_sign FINAL WHERE is_deleted = 0"
        ),
        observations as u64
    );
    assert_eq!(
        count(
            ch,
            "SELECT count() FROM warehouse.fact_lab_result FINAL WHERE is_deleted = 0"
        ),
        by_kind["lab_result"] as u64
    );
    assert_eq!(
        count(
            ch,
            "SELECT count() FROM warehouse.fact_charge FINAL WHERE is_deleted = 0"
        ),
        by_kind["charge_line"] as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_answers_or_refuses_every_request_and_flushes() {
    let ch = clickhouse();
    let platform = start_platform(&ch).await;
    let evs = simulated(2, 40.0, 5, "sim");
    let (tx, mut acks) = open_stream(platform.local_addr()).await;
    let n = evs.chunks(50).len();
    for (i, c) in evs.chunks(50).enumerate() {
        tx.send(request(i, c)).await.unwrap();
    }
    let first = acks.message().await.unwrap().unwrap();
    let mut acked: Vec<String> = first.committed_event_ids;
    platform.shutdown().await.unwrap();
    let mut ended_with = None;
    loop {
        match acks.message().await {
            Ok(Some(ack)) => acked.extend(ack.committed_event_ids),
            Ok(None) => break,
            Err(status) => {
                ended_with = Some(status.code());
                break;
            }
        }
    }
    if acked.len() < evs.len() {
        assert_eq!(
            ended_with,
            Some(Code::Unavailable),
            "{} of {n} requests answered; the rest are refused as retryable",
            acked.len() / 50
        );
    }
    let staged = ch
        .query("SELECT event_id FROM staging.events FORMAT TabSeparated")
        .unwrap();
    let staged: HashSet<&str> = staged.lines().collect();
    assert!(
        acked.iter().all(|id| staged.contains(id.as_str())),
        "every acknowledged event is staged after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_and_health_are_served() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha as alpha;

    let ch = clickhouse();
    let platform = start_platform(&ch).await;
    let channel = hospital_client::connect(&endpoint(platform.local_addr()))
        .await
        .unwrap();
    for service in [
        "",
        "hospital.ingest.v1.IngestService",
        "hospital.batch.v1.BatchService",
        "hospital.realtime.v1.AlertService",
        "hospital.realtime.v1.CensusService",
        "hospital.realtime.v1.ChangeFeedService",
    ] {
        let status = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = replies.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let mut names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "hospital.batch.v1.BatchService",
            "hospital.ingest.v1.IngestService",
            "hospital.realtime.v1.AlertService",
            "hospital.realtime.v1.CensusService",
            "hospital.realtime.v1.ChangeFeedService",
        ]
    );

    // grpcurl 1.8.6 speaks v1alpha only.
    let request = alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
            "hospital.events.v1.ClinicalEvent".into(),
        )),
    };
    let mut replies = alpha::server_reflection_client::ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    assert!(
        matches!(
            reply.message_response,
            Some(alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
        ),
        "{reply:?}"
    );
    platform.shutdown().await.unwrap();
}
