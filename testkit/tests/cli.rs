//! Tests of the `hospital-clickhouse` demo binary.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hospital_testkit::{free_port, ping};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_hospital-clickhouse");

#[test]
fn runs_in_foreground_refuses_a_busy_port_and_stops_on_sigterm() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join(".hospital/clickhouse");
    let (http, tcp) = (free_port(), free_port());
    let args = [
        "--dir".to_string(),
        dir.display().to_string(),
        "--http-port".to_string(),
        http.to_string(),
        "--tcp-port".to_string(),
        tcp.to_string(),
    ];

    let mut child = Command::new(BIN)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim_end(), format!("clickhouse ready on http://127.0.0.1:{http}"));
    assert!(ping(http));

    // A second instance on the same port says so and fails.
    let second = Command::new(BIN).args(&args).output().unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("already answering"), "{stderr}");
    assert!(ping(http), "the first server must survive");

    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "hospital-clickhouse did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(!ping(http));
    assert!(dir.join("data/metadata").is_dir(), "data dir not kept");
}
