//! HL7 v2 text results end to end: a real ORU^R01 with numeric and text results (the
//! NIST CBC sample of FHIR-Converter) sent over MLLP is accepted (AA) whole, and after a
//! warehouse load every result is in `fact_lab_result`, the text ones with their text,
//! code and coding system. Messages that cannot be taken name the fitting HL7 table 0357
//! error, not 207 (application internal error).

mod common;

use std::net::SocketAddr;

use common::*;
use hospital_platform::server::mllp::{Frame, FrameDecoder};
use hospital_sources::hl7v2::{parse_message, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn sample(name: &str) -> Vec<u8> {
    let path = shared_data("hl7v2/microsoft_FHIR-Converter/messages").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Sends one MLLP frame and reads the ACK.
async fn send(addr: SocketAddr, body: &[u8]) -> Message {
    let mut stream = TcpStream::connect(addr).await.expect("connect to MLLP");
    let mut bytes = vec![0x0B];
    bytes.extend_from_slice(body);
    bytes.extend_from_slice(&[0x1C, 0x0D]);
    stream.write_all(&bytes).await.unwrap();
    let mut decoder = FrameDecoder::new(1 << 20);
    let mut buf = vec![0u8; 8192];
    loop {
        if let Some(Frame::Message(ack)) = decoder.next_frame() {
            return parse_message(&ack).expect("the ACK parses");
        }
        let n = tokio::time::timeout(std::time::Duration::from_secs(30), stream.read(&mut buf))
            .await
            .expect("ACK within 30 s")
            .unwrap();
        assert!(n > 0, "connection closed before the ACK");
        decoder.push(&buf[..n]);
    }
}

/// (MSA-1, the table 0357 code: ERR-3.1 from 2.5, ERR-1.4.1 before).
fn answer(ack: &Message) -> (String, String) {
    let code = ack.get("ERR-3-1").or_else(|| ack.get("ERR-1-4-1"));
    (
        ack.get("MSA-1").unwrap_or_default().into_owned(),
        code.unwrap_or_default().into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_results_reach_the_warehouse_and_refusals_name_their_error() {
    let ch = clickhouse();
    let mut c = config(&ch);
    c.mllp.listen = Some("127.0.0.1:0".parse().unwrap());
    let platform = hospital_platform::server::start(c).await.expect("platform starts");
    let addr = platform.mllp_addr().expect("MLLP listener configured");

    // The sample's hemoglobin is "12.5 g/mL", a unit the door refuses for 718-7 (a
    // hemoglobin of 12.5 g/mL is not plausible: the sample means g/dL), so the message
    // would be refused whole; sent with that unit corrected.
    let cbc = String::from_utf8(sample("LRI_2.0-NG_CBC_Typ_Message.hl7"))
        .unwrap()
        .replacen(
            "|12.5|g/mL^grams per milliliter^UCUM|",
            "|12.5|g/dL^grams per deciliter^UCUM|",
            1,
        );
    assert!(cbc.contains("|12.5|g/dL^"));
    let cbc = cbc.into_bytes();
    let ack = send(addr, &cbc).await;
    assert_eq!(answer(&ack), ("AA".to_owned(), String::new()), "{:?}", ack.get("ERR-8"));

    // ORU-R01-01's organism result is mapped now, but its OBX-3 is in system "XYZ", not
    // LOINC: the door finds the result's LOINC code missing (101), the message is not taken.
    let ack = send(addr, &sample("ORU-R01-01.hl7")).await;
    assert_eq!(answer(&ack), ("AE".to_owned(), "101".to_owned()));
    assert!(ack.get("ERR-8").unwrap_or_default().contains("lab_result.loinc_code"));
    // A missing visit number: 101; a type the platform does not take: AR 200.
    let ack = send(addr, &sample("ADT01-28.hl7")).await;
    assert_eq!(answer(&ack), ("AE".to_owned(), "101".to_owned()));
    let ack = send(addr, &sample("SIU-S12-01.hl7")).await;
    assert_eq!(answer(&ack), ("AR".to_owned(), "200".to_owned()));

    run_warehouse_load(platform.local_addr(), false).await;
    let q = |sql: &str| count(&ch, sql);
    let rows = "FROM warehouse.fact_lab_result FINAL WHERE is_deleted = 0";
    assert_eq!(q(&format!("SELECT count() {rows}")), 28);
    assert_eq!(q(&format!("SELECT count() {rows} AND value IS NOT NULL")), 19);
    assert_eq!(
        q(&format!("SELECT count() {rows} AND value IS NULL AND value_text != ''")),
        9
    );
    assert_eq!(
        q(&format!(
            "SELECT count() {rows} AND loinc_code = '38892-6' AND value_text = 'Moderate Anisocytosis' \
             AND value_code = '260348001' AND value_code_system = 'SCT'"
        )),
        1
    );
    assert_eq!(
        q(&format!(
            "SELECT count() {rows} AND loinc_code = '6742-1' AND value_text = 'Many spherocytes present.' AND value_code = ''"
        )),
        1
    );
    platform.shutdown().await.unwrap();
}
