//! HL7 v2 over MLLP into a real ClickHouse, over a real TCP socket, with real messages
//! from shared/data/hl7v2 (FHIR-Converter samples): ACK codes, MSA-2 = MSH-10, rows in
//! staging after AA, malformed and unsupported messages, ClickHouse down and back.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use hospital_platform::config::MllpConfig;
use hospital_platform::server::mllp::{frame, Frame, FrameDecoder};
use hospital_sources::hl7v2::{parse_message, Message};
use hospital_testkit::ClickHouseServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

fn sample(name: &str) -> Vec<u8> {
    let base = std::env::var_os("HOSPITAL_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    let path = base.join("hl7v2/microsoft_FHIR-Converter/messages").join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Check out shared/data beside the repository or set HOSPITAL_SHARED_DATA.",
            path.display()
        )
    })
}

fn control_id(bytes: &[u8]) -> String {
    parse_message(bytes).unwrap().control_id().to_owned()
}

struct Conn {
    stream: TcpStream,
    decoder: FrameDecoder,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.expect("connect to MLLP"),
            decoder: FrameDecoder::new(1 << 20),
        }
    }

    /// Sends one message and reads its ACK.
    async fn send(&mut self, body: &[u8]) -> Message {
        let mut bytes = vec![0x0B];
        bytes.extend_from_slice(body);
        bytes.extend_from_slice(&[0x1C, 0x0D]);
        self.stream.write_all(&bytes).await.unwrap();
        self.read_ack().await.expect("an ACK")
    }

    async fn read_ack(&mut self) -> Option<Message> {
        let mut buf = vec![0u8; 8192];
        loop {
            if let Some(Frame::Message(ack)) = self.decoder.next_frame() {
                return Some(parse_message(&ack).expect("the ACK parses"));
            }
            let n = tokio::time::timeout(std::time::Duration::from_secs(30), self.stream.read(&mut buf))
                .await
                .expect("ACK within 30 s");
            // Closed (or reset) by the server: no ACK.
            let Ok(n @ 1..) = n else {
                return None;
            };
            self.decoder.push(&buf[..n]);
        }
    }
}

fn msa(ack: &Message) -> (String, String) {
    (
        ack.get("MSA-1").unwrap_or_default().into_owned(),
        ack.get("MSA-2").unwrap_or_default().into_owned(),
    )
}

/// The error text: ERR-8 from HL7 2.5, MSA-3 before (the ACK follows the version).
fn err_text(ack: &Message) -> String {
    ack.get("ERR-8")
        .or_else(|| ack.get("MSA-3"))
        .unwrap_or_default()
        .into_owned()
}

fn staged(ch: &ClickHouseServer, event_id: &str) -> u64 {
    count(
        ch,
        &format!("SELECT count() FROM staging.events WHERE event_id = '{event_id}'"),
    )
}

async fn start(ch: &ClickHouseServer) -> hospital_platform::server::Platform {
    start_with(ch, |_| {}).await
}

/// The platform with its MLLP listener, after `tune` has changed its `mllp` section.
async fn start_with(ch: &ClickHouseServer, tune: impl FnOnce(&mut MllpConfig)) -> hospital_platform::server::Platform {
    let mut c = config(ch);
    c.mllp.listen = Some("127.0.0.1:0".parse().unwrap());
    tune(&mut c.mllp);
    // Some samples are dated in 2029 (EVN-2); they are test data, not clock skew.
    c.ingest.max_future_secs = 10 * 365 * 86_400;
    hospital_platform::server::start(c).await.expect("platform starts")
}

/// A timeout short enough for a test to wait for, long enough for a loaded machine to
/// send a few bytes within.
const SHORT_MS: u64 = 300;
const LONG_MS: u64 = 600_000;

/// Reads until the server closes the connection (end of stream, or a reset), within a
/// deadline; returns what it sent before closing.
async fn closed_by_server(stream: &mut TcpStream) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => panic!("the server did not close the connection within 30 s"),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_messages_are_acked_after_staging() {
    let ch = clickhouse();
    let platform = start(&ch).await;
    let addr = platform.mllp_addr().expect("MLLP listener configured");
    let mut conn = Conn::open(addr).await;

    // (file, event ids it makes)
    let cases: [(&str, Vec<String>); 4] = [
        // The admission keeps its bare id; its DG1 is -2.
        ("ADT01-23.hl7", vec!["1|599102".into(), "1|599102-2".into()]),
        ("ADT-A02-01.hl7", vec!["GHHSFacility|MSG00001".into()]),
        (
            "ADT04-28.hl7",
            vec!["RDX|1270326314-1".into(), "RDX|1270326314-2".into()],
        ),
        (
            "LAB-ORU-1.hl7",
            (1..=8).map(|i| format!("SomeSystem|182-{i}")).collect(),
        ),
    ];
    for (name, ids) in &cases {
        let body = sample(name);
        let ack = conn.send(&body).await;
        assert_eq!(
            msa(&ack),
            ("AA".into(), control_id(&body)),
            "{name}: {}",
            err_text(&ack)
        );
        for id in ids {
            assert_eq!(staged(&ch, id), 1, "{name}: {id} staged once");
        }
    }
    let kinds = ch
        .query("SELECT kind, count() FROM staging.events GROUP BY kind ORDER BY kind FORMAT CSV")
        .unwrap();
    assert_eq!(
        kinds.trim(),
        "\"admission\",2\n\"diagnosis\",1\n\"lab_result\",8\n\"patient_registered\",1\n\"transfer\",1"
    );

    // A malformed message gets AR naming its control id; the next good one on the same
    // connection still gets AA.
    let bad = b"MSH|^~\\&|LAB|NORTH|HIS|SOUTH|20240301||ORU^R01|BAD-1|P|2.5\rpid|lower case\r";
    let ack = conn.send(bad).await;
    assert_eq!(msa(&ack), ("AR".into(), "BAD-1".into()));
    assert!(err_text(&ack).contains("pid"), "{}", err_text(&ack));

    // Unsupported type: AR. Missing data: AE naming the field. Nothing staged.
    let siu = sample("SIU-S12-01.hl7");
    let ack = conn.send(&siu).await;
    assert_eq!(msa(&ack), ("AR".into(), control_id(&siu)));
    assert!(err_text(&ack).contains("SIU^S12"), "{}", err_text(&ack));
    let no_visit = sample("ADT01-28.hl7");
    let ack = conn.send(&no_visit).await;
    assert_eq!(msa(&ack), ("AE".into(), control_id(&no_visit)));
    assert_eq!(err_text(&ack), "PV1-19 (visit number) is empty");

    // Ingest validation refuses one of the message's events (the NIST CBC sends
    // hemoglobin in g/mL): AE naming the field, and none of its 19 events is staged.
    let cbc = sample("LRI_2.0-NG_CBC_Typ_Message.hl7");
    let ack = conn.send(&cbc).await;
    assert_eq!(msa(&ack), ("AE".into(), control_id(&cbc)));
    assert!(
        err_text(&ack).contains("NIST-LRI-NG-002.00-2: lab_result.unit"),
        "{}",
        err_text(&ack)
    );
    assert_eq!(staged(&ch, "NIST Lab Facility|NIST-LRI-NG-002.00-1"), 0);

    // A DG1 is part of its message: one the mapping cannot read (no code) or the door
    // refuses (an ICD-9-CM code sent as ICD-10) refuses the whole ADT, admission included.
    let with_dg1 = |control_id: &str, dg1_3: &str| -> Vec<u8> {
        let text = String::from_utf8(sample("ADT01-23.hl7")).unwrap();
        let text = text
            .replace("|599102|", &format!("|{control_id}|"))
            .replace("71596^OSTEOARTHROS NOS-L/LEG ^I9", dg1_3);
        assert!(text.contains(control_id) && text.contains(dg1_3));
        text.into_bytes()
    };
    let ack = conn.send(&with_dg1("DX-1", "^OSTEOARTHROS NOS-L/LEG ^I9")).await;
    assert_eq!(msa(&ack), ("AE".into(), "DX-1".into()));
    assert_eq!(err_text(&ack), "DG1-3 (diagnosis code) is empty");
    let ack = conn.send(&with_dg1("DX-2", "71596^OSTEOARTHROS NOS-L/LEG ^I10")).await;
    assert_eq!(msa(&ack), ("AE".into(), "DX-2".into()));
    assert!(
        err_text(&ack).contains("event 1|DX-2-2: diagnosis.code: \"71596\" is not a ICD-10 code"),
        "{}",
        err_text(&ack)
    );
    assert_eq!(staged(&ch, "1|DX-1") + staged(&ch, "1|DX-2"), 0);

    // A resend of a message already acked: AA again (it is durable, by its first copy);
    // first commit wins, so staging keeps one copy and the warehouse counts it once.
    let body = sample("ADT01-23.hl7");
    let ack = conn.send(&body).await;
    assert_eq!(msa(&ack), ("AA".into(), control_id(&body)));
    assert_eq!((staged(&ch, "1|599102"), staged(&ch, "1|599102-2")), (1, 1));
    assert_eq!(count(&ch, "SELECT count() FROM staging.events"), 13);
    run_warehouse_load(platform.local_addr(), false).await;
    assert_eq!(
        count(
            &ch,
            "SELECT count() FROM warehouse.event_registry FINAL WHERE event_id IN ('1|599102', '1|599102-2')"
        ),
        2
    );

    // An oversize frame: AR, then the connection is closed.
    let mut big = Conn::open(addr).await;
    let mut huge = b"MSH|^~\\&|A|F|B|G|20240301||ADT^A01|HUGE-1|P|2.5\rNTE|1||".to_vec();
    huge.resize((1 << 20) + 10, b'x');
    big.stream
        .write_all(&frame(std::str::from_utf8(&huge).unwrap()))
        .await
        .unwrap();
    let ack = big.read_ack().await.expect("an AR before closing");
    assert_eq!(msa(&ack), ("AR".into(), "HUGE-1".into()));
    assert!(
        big.read_ack().await.is_none(),
        "connection closed after an oversize frame"
    );

    // The first connection is still served.
    let body = sample("ADT-A02-01.hl7");
    assert_eq!(msa(&conn.send(&body).await).0, "AA");
    platform.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_down_gives_ae_then_the_resend_is_acked() {
    let mut ch = clickhouse();
    let platform = start(&ch).await;
    let mut conn = Conn::open(platform.mllp_addr().unwrap()).await;

    let lab = sample("LAB-ORU-1.hl7");
    assert_eq!(msa(&conn.send(&lab).await).0, "AA");

    ch.stop().unwrap();
    let adt = sample("ADT01-23.hl7");
    let ack = conn.send(&adt).await;
    assert_eq!(msa(&ack), ("AE".into(), control_id(&adt)));
    assert_eq!(err_text(&ack), "staging unavailable, resend");

    ch.restart().unwrap();
    assert_eq!(staged(&ch, "1|599102"), 0, "nothing acked, nothing staged");
    let ack = conn.send(&adt).await;
    assert_eq!(msa(&ack), ("AA".into(), control_id(&adt)), "{}", err_text(&ack));
    assert_eq!((staged(&ch, "1|599102"), staged(&ch, "1|599102-2")), (1, 1));
    assert_eq!(count(&ch, "SELECT count() FROM staging.events"), 10);
    platform.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unframed_input_gets_ar_when_it_is_hl7_and_is_closed() {
    let ch = clickhouse();
    let platform = start(&ch).await;
    let addr = platform.mllp_addr().unwrap();

    // An HL7 sender that forgot the framing: AR naming its control id, then closed;
    // nothing staged.
    let mut raw = Conn::open(addr).await;
    let body = sample("ADT-A02-01.hl7");
    raw.stream.write_all(b"\r\n").await.unwrap();
    raw.stream.write_all(&body).await.unwrap();
    let ack = raw.read_ack().await.expect("an AR before closing");
    assert_eq!(msa(&ack), ("AR".into(), control_id(&body)));
    assert!(err_text(&ack).contains("not MLLP framed"), "{}", err_text(&ack));
    closed_by_server(&mut raw.stream).await;
    assert_eq!(staged(&ch, "GHHSFacility|MSG00001"), 0);

    // Not HL7 at all (an HTTP client on the wrong port): closed without an answer.
    let mut http = TcpStream::connect(addr).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert_eq!(closed_by_server(&mut http).await, b"");

    // Whitespace between frames is not unframed input: the same message, framed,
    // after blank lines, is acked and the connection stays open for the next one.
    let mut good = Conn::open(addr).await;
    good.stream.write_all(b"\r\n\n ").await.unwrap();
    assert_eq!(msa(&good.send(&body).await), ("AA".into(), control_id(&body)));
    good.stream.write_all(b"\r\n").await.unwrap();
    let lab = sample("LAB-ORU-1.hl7");
    assert_eq!(msa(&good.send(&lab).await).0, "AA");
    assert_eq!(staged(&ch, "GHHSFacility|MSG00001"), 1);
    platform.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_frames_and_idle_connections_are_closed() {
    let ch = clickhouse();
    let body = sample("ADT-A02-01.hl7");

    // Read timeout short, idle timeout long.
    let platform = start_with(&ch, |m| {
        m.read_timeout_ms = SHORT_MS;
        m.idle_timeout_ms = LONG_MS;
    })
    .await;
    let addr = platform.mllp_addr().unwrap();
    let mut idle = Conn::open(addr).await;
    // A frame started and never ended: closed without an answer.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(&[0x0B]).await.unwrap();
    stalled.write_all(&body[..body.len() / 2]).await.unwrap();
    assert_eq!(closed_by_server(&mut stalled).await, b"");
    // Unframed bytes without a line end run under the same timeout.
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial.write_all(b"MSH|^~").await.unwrap();
    assert_eq!(closed_by_server(&mut partial).await, b"");
    // The connection opened before them, idle all along, is still served.
    assert_eq!(msa(&idle.send(&body).await).0, "AA");
    platform.shutdown().await.unwrap();

    // Idle timeout short, read timeout long.
    let platform = start_with(&ch, |m| {
        m.read_timeout_ms = LONG_MS;
        m.idle_timeout_ms = SHORT_MS;
    })
    .await;
    let addr = platform.mllp_addr().unwrap();
    // A frame under way is not idle: opened first, it outlives the idle connection
    // opened after it, then completes and is acked.
    let mut slow = Conn::open(addr).await;
    slow.stream.write_all(&[0x0B]).await.unwrap();
    slow.stream.write_all(&body[..10]).await.unwrap();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert_eq!(closed_by_server(&mut idle).await, b"", "an idle connection is closed");
    slow.stream.write_all(&body[10..]).await.unwrap();
    slow.stream.write_all(&[0x1C, 0x0D]).await.unwrap();
    let ack = slow.read_ack().await.expect("the slow frame is answered");
    assert_eq!(msa(&ack), ("AA".into(), control_id(&body)));
    // After its answer the connection is idle again, and closed.
    assert!(slow.read_ack().await.is_none(), "closed once idle after its answer");
    platform.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_above_the_cap_are_refused() {
    let ch = clickhouse();
    let platform = start_with(&ch, |m| m.max_connections = 3).await;
    let addr = platform.mllp_addr().unwrap();
    let body = sample("ADT-A02-01.hl7");

    let mut served = Vec::new();
    for _ in 0..3 {
        let mut c = Conn::open(addr).await;
        assert_eq!(msa(&c.send(&body).await).0, "AA");
        served.push(c);
    }
    // The fourth is closed at once, without an answer even to a message.
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let _ = extra.write_all(&frame(std::str::from_utf8(&body).unwrap())).await;
    assert_eq!(
        closed_by_server(&mut extra).await,
        b"",
        "the connection above the cap is closed"
    );
    // The first three are still served.
    for c in &mut served {
        assert_eq!(msa(&c.send(&body).await).0, "AA");
    }
    // One of them leaves: its place is free again (once the server has seen it go).
    drop(served.pop());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = Conn::open(addr).await;
        c.stream
            .write_all(&frame(std::str::from_utf8(&body).unwrap()))
            .await
            .unwrap_or_default();
        if let Some(ack) = c.read_ack().await {
            assert_eq!(msa(&ack).0, "AA");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a freed place is not given to a new connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    platform.shutdown().await.unwrap();
}
