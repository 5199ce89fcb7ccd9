//! Integration tests against the real, installed ClickHouse server.

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::time::Instant;

use hospital_testkit::{free_port, ping, ClickHouseServer, ServerOptions, TestkitError};

fn create_and_fill(ch: &ClickHouseServer, rows: &str) {
    ch.query("CREATE TABLE patients (id UInt32, name String) ENGINE = MergeTree ORDER BY id")
        .unwrap();
    ch.query(&format!("INSERT INTO patients VALUES {rows}")).unwrap();
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn create_insert_select() {
    let started = Instant::now();
    let ch = ClickHouseServer::start().unwrap();
    eprintln!("ClickHouseServer::start() took {:?}", started.elapsed());

    assert_eq!(ch.url(), format!("http://127.0.0.1:{}", ch.http_port()));
    assert_ne!(ch.http_port(), ch.tcp_port());
    assert!(ping(ch.http_port()));
    assert!(ch.data_dir().join("data").is_dir());

    create_and_fill(&ch, "(2, 'bob'), (1, 'alice'), (3, 'carol')");
    assert_eq!(
        ch.query("SELECT id, name FROM patients ORDER BY id").unwrap(),
        "1\talice\n2\tbob\n3\tcarol\n"
    );
    assert_eq!(ch.query("SELECT count() FROM patients").unwrap(), "3\n");
    assert_eq!(ch.query("SELECT timezone()").unwrap().trim(), "Etc/UTC");
    // Statements without a result give an empty body.
    assert_eq!(ch.query("DROP TABLE patients").unwrap(), "");
}

#[test]
fn query_errors_carry_the_server_message() {
    let ch = ClickHouseServer::start().unwrap();
    match ch.query("SELECT * FROM no_such_table") {
        Err(TestkitError::Query { status, message }) => {
            assert_ne!(status, 200);
            assert!(message.contains("no_such_table"), "{message}");
        }
        other => panic!("expected a query error, got {other:?}"),
    }
    // An error raised while the result streams still becomes an error status.
    let err = ch
        .query("SELECT throwIf(number = 3) FROM system.numbers LIMIT 10 SETTINGS max_block_size = 1")
        .unwrap_err();
    assert!(matches!(err, TestkitError::Query { .. }), "{err}");
}

#[test]
fn stop_and_restart_keep_the_data() {
    let mut ch = ClickHouseServer::start().unwrap();
    let (http, tcp, dir) = (ch.http_port(), ch.tcp_port(), ch.data_dir().to_path_buf());
    create_and_fill(&ch, "(1, 'alice'), (2, 'bob')");

    ch.stop().unwrap();
    assert!(!ch.is_running());
    ch.stop().unwrap(); // idempotent
    assert!(!ping(http));
    assert!(matches!(ch.query("SELECT 1"), Err(TestkitError::Http { .. })));

    ch.restart().unwrap();
    assert!(ch.is_running());
    assert_eq!((ch.http_port(), ch.tcp_port()), (http, tcp));
    assert_eq!(ch.data_dir(), dir);
    assert_eq!(
        ch.query("SELECT name FROM patients ORDER BY id").unwrap(),
        "alice\nbob\n"
    );
}

#[test]
fn kill_and_restart_keep_the_data() {
    let mut ch = ClickHouseServer::start().unwrap();
    create_and_fill(&ch, "(1, 'alice'), (2, 'bob')");
    let pid = ch.pid().unwrap();

    ch.kill().unwrap();
    assert!(!ch.is_running());
    assert!(!process_exists(pid));
    ch.kill().unwrap(); // idempotent

    ch.restart().unwrap();
    assert_ne!(ch.pid(), Some(pid));
    assert_eq!(ch.query("SELECT count() FROM patients").unwrap(), "2\n");
    ch.query("INSERT INTO patients VALUES (3, 'carol')").unwrap();

    // Restarting a running server stops it first.
    ch.restart().unwrap();
    assert_eq!(ch.query("SELECT count() FROM patients").unwrap(), "3\n");
}

#[test]
fn two_servers_in_parallel() {
    let spawn = |name: &'static str| {
        std::thread::spawn(move || {
            let ch = ClickHouseServer::start().unwrap();
            create_and_fill(&ch, &format!("(1, '{name}')"));
            ch
        })
    };
    let (a, b) = (spawn("a"), spawn("b"));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());

    assert_ne!(a.http_port(), b.http_port());
    assert_ne!(a.tcp_port(), b.tcp_port());
    assert_ne!(a.data_dir(), b.data_dir());
    assert_eq!(a.query("SELECT name FROM patients").unwrap(), "a\n");
    assert_eq!(b.query("SELECT name FROM patients").unwrap(), "b\n");
}

#[test]
fn drop_removes_the_temp_dir_and_the_process() {
    let ch = ClickHouseServer::start().unwrap();
    let (pid, dir, http) = (ch.pid().unwrap(), ch.data_dir().to_path_buf(), ch.http_port());
    assert!(process_exists(pid));
    assert!(dir.join("config.xml").is_file());

    drop(ch);
    assert!(!process_exists(pid), "server process {pid} still exists");
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(!ping(http));
}

#[test]
fn persistent_dir_and_fixed_ports() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("clickhouse");
    let (http, tcp) = (free_port(), free_port());
    let opts = ServerOptions::default()
        .dir(&dir)
        .http_port(http)
        .tcp_port(tcp)
        .log_level("information");

    let ch = ClickHouseServer::start_with(opts.clone()).unwrap();
    assert_eq!((ch.http_port(), ch.tcp_port()), (http, tcp));
    assert_eq!(ch.data_dir(), dir);
    create_and_fill(&ch, "(7, 'kept')");

    // A second server on the same fixed HTTP port is refused up front.
    let other = ServerOptions::default().http_port(http).tcp_port(free_port());
    assert!(matches!(
        ClickHouseServer::start_with(other),
        Err(TestkitError::AlreadyRunning { .. })
    ));

    drop(ch);
    assert!(dir.join("data").is_dir(), "kept dir was removed");
    assert!(!ping(http));
    let log = std::fs::read_to_string(dir.join("log/clickhouse-server.log")).unwrap();
    assert!(log.contains("<Information>"), "log level not applied");

    let ch = ClickHouseServer::start_with(opts).unwrap();
    assert_eq!(ch.query("SELECT id, name FROM patients").unwrap(), "7\tkept\n");
}

#[test]
fn occupied_port_fails_with_the_server_log() {
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let tcp = taken.local_addr().unwrap().port();
    let opts = ServerOptions::default().http_port(free_port()).tcp_port(tcp);
    match ClickHouseServer::start_with(opts) {
        Err(TestkitError::AddressInUse { log_tail, .. }) => {
            assert!(log_tail.contains("Address already in use"), "{log_tail}");
        }
        other => panic!("expected AddressInUse, got {other:?}"),
    }
}

#[test]
fn missing_binary_is_reported() {
    let opts = ServerOptions::default().binary("/nonexistent/clickhouse-server");
    assert!(matches!(
        ClickHouseServer::start_with(opts),
        Err(TestkitError::BinaryNotFound { .. })
    ));
}
