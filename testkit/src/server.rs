//! The [`ClickHouseServer`] process wrapper.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::config::{self, ConfigParams};
use crate::error::TestkitError;
use crate::http;

/// Environment variable that overrides which ClickHouse executable is run.
pub const BINARY_ENV: &str = "HOSPITAL_CLICKHOUSE_BIN";

/// How often readiness is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Timeout of a single `/ping` probe.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// How long [`ClickHouseServer::stop`] waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Timeout of a single query (connect, send, and reading the whole answer).
const QUERY_TIMEOUT: Duration = Duration::from_secs(300);
/// Start attempts with freshly picked ports when a port turns out to be taken.
const START_ATTEMPTS: u32 = 3;
/// At most this many lines of each log go into an error's `log_tail`.
const TAIL_LINES: usize = 20;
/// At most this many trailing bytes of each log are read for `log_tail`.
const TAIL_BYTES: u64 = 64 * 1024;

/// Options for [`ClickHouseServer::start_with`]. `Default` gives what
/// [`ClickHouseServer::start`] uses: a new temporary directory (removed on drop),
/// free ports, log level `warning`, 30 s startup timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// Server directory (config, `data/`, `log/`). `None`: a new temporary
    /// directory. A directory given here is created if missing and is always
    /// kept on drop, so a later server started on it sees the same data.
    pub dir: Option<PathBuf>,
    /// Keep the temporary directory on drop too (for debugging a test).
    pub keep_dir: bool,
    /// Fixed HTTP port; `None` picks a free one.
    pub http_port: Option<u16>,
    /// Fixed native-protocol (TCP) port; `None` picks a free one.
    pub tcp_port: Option<u16>,
    /// ClickHouse logger level: `none`, `fatal`, `critical`, `error`, `warning`,
    /// `notice`, `information`, `debug` or `trace`.
    pub log_level: String,
    /// ClickHouse executable; `None` uses `$HOSPITAL_CLICKHOUSE_BIN`, else
    /// `clickhouse-server` or `clickhouse` from `PATH`, `/usr/sbin`, `/usr/bin`.
    pub binary: Option<PathBuf>,
    /// How long to wait for `/ping` to answer `Ok.`.
    pub startup_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            dir: None,
            keep_dir: false,
            http_port: None,
            tcp_port: None,
            log_level: "warning".to_string(),
            binary: None,
            startup_timeout: Duration::from_secs(30),
        }
    }
}

impl ServerOptions {
    /// Use (and keep) this server directory.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }
    /// Keep the temporary directory on drop.
    pub fn keep_dir(mut self, keep: bool) -> Self {
        self.keep_dir = keep;
        self
    }
    /// Listen for HTTP on this port.
    pub fn http_port(mut self, port: u16) -> Self {
        self.http_port = Some(port);
        self
    }
    /// Listen for the native protocol on this port.
    pub fn tcp_port(mut self, port: u16) -> Self {
        self.tcp_port = Some(port);
        self
    }
    /// ClickHouse logger level (default `warning`).
    pub fn log_level(mut self, level: impl Into<String>) -> Self {
        self.log_level = level.into();
        self
    }
    /// Run this ClickHouse executable.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }
    /// Wait at most this long for the server to answer `/ping`.
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }
}

/// Return a port that is free on 127.0.0.1 right now (bind `127.0.0.1:0`, read the
/// port, release it). Another process may take it before it is used, which is
/// why [`ClickHouseServer::start`] retries with new ports on "Address already in use".
///
/// # Panics
/// If binding an ephemeral port on the loopback interface fails.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

/// Whether something on `127.0.0.1:{http_port}` answers `GET /ping` with `Ok.`
/// (i.e. a ClickHouse server is already running there).
pub fn ping(http_port: u16) -> bool {
    http::request(http_port, "GET", "/ping", b"", PING_TIMEOUT)
        .is_ok_and(|r| r.status == 200 && r.body.trim_ascii() == b"Ok.")
}

/// The executable and how to invoke it.
#[derive(Debug, Clone)]
struct Binary {
    path: PathBuf,
    /// The all-in-one `clickhouse` binary, which needs the `server` subcommand.
    multi_call: bool,
}

impl Binary {
    fn new(path: PathBuf) -> Self {
        let multi_call = path.file_name().is_some_and(|n| n == "clickhouse");
        Self { path, multi_call }
    }
}

fn resolve_binary(explicit: Option<&Path>) -> Result<Binary, TestkitError> {
    let from_env = std::env::var_os(BINARY_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    if let Some(path) = explicit.map(Path::to_path_buf).or(from_env) {
        return if path.is_file() {
            Ok(Binary::new(path))
        } else {
            Err(TestkitError::BinaryNotFound {
                searched: path.display().to_string(),
            })
        };
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from));
    let mut searched = Vec::new();
    for name in ["clickhouse-server", "clickhouse"] {
        for dir in &dirs {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(Binary::new(candidate));
            }
        }
        searched.push(name);
    }
    Err(TestkitError::BinaryNotFound {
        searched: format!("{} in PATH, /usr/sbin, /usr/bin", searched.join(", ")),
    })
}

/// A unique display name per spawned server process.
fn unique_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("hospital-testkit-{}-{n}-{nanos:08x}", std::process::id())
}

/// Byte offsets of the log files at spawn time, so that `log_tail` shows only
/// what this start attempt wrote (the files are appended to across restarts).
#[derive(Debug, Clone, Copy, Default)]
struct LogOffsets {
    stderr: u64,
    errlog: u64,
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Read `path` from `offset` (at most the last `TAIL_BYTES`), lossily as UTF-8.
fn read_from(path: &Path, offset: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = offset.max(len.saturating_sub(TAIL_BYTES)).min(len);
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Last `TAIL_LINES` interesting lines: skips blanks and stack-trace frames
/// (`12. /lib/...`), which ClickHouse 18.16 writes after every exception.
fn tail_lines(text: &str) -> Vec<&str> {
    let is_frame = |l: &str| {
        let digits = l.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0 && l[digits..].starts_with(". ")
    };
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !is_frame(l))
        .collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].to_vec()
}

/// A real ClickHouse server process for tests and the local demo.
///
/// Dropping it kills the process (a server on a kept directory is stopped
/// gracefully instead) and removes the temporary directory unless it is kept.
#[derive(Debug)]
pub struct ClickHouseServer {
    binary: Binary,
    root: PathBuf,
    /// The temporary directory we own (`None` for a caller-given directory).
    temp: Option<tempfile::TempDir>,
    keep: bool,
    http_port: u16,
    tcp_port: u16,
    log_level: String,
    startup_timeout: Duration,
    child: Option<Child>,
    /// Log sizes when the current (or last) process was spawned.
    log_offsets: LogOffsets,
}

impl ClickHouseServer {
    /// Start a fresh server in a new temp dir on free ports; waits until
    /// `GET /ping` answers `Ok.`.
    pub fn start() -> Result<Self, TestkitError> {
        Self::start_with(ServerOptions::default())
    }

    /// Start with options (fixed ports, a persistent data dir that is kept on
    /// drop, log level). With free ports, a start that fails with "Address already
    /// in use" is retried with new ports (3 attempts in all). With a fixed HTTP
    /// port on which a server already answers, fails with
    /// [`TestkitError::AlreadyRunning`].
    pub fn start_with(opts: ServerOptions) -> Result<Self, TestkitError> {
        if !config::LOG_LEVELS.contains(&opts.log_level.as_str()) {
            return Err(TestkitError::InvalidOptions(format!(
                "unknown log level {:?} (expected one of {})",
                opts.log_level,
                config::LOG_LEVELS.join(", ")
            )));
        }
        if opts.http_port == Some(0) || opts.tcp_port == Some(0) {
            return Err(TestkitError::InvalidOptions(
                "port 0 is not allowed; leave the port unset to pick a free one".into(),
            ));
        }
        if opts.http_port.is_some() && opts.http_port == opts.tcp_port {
            return Err(TestkitError::InvalidOptions(
                "http_port and tcp_port must differ".into(),
            ));
        }
        let binary = resolve_binary(opts.binary.as_deref())?;

        let (root, temp) = match &opts.dir {
            Some(dir) => {
                fs::create_dir_all(dir)
                    .map_err(|e| TestkitError::io(format!("create server dir {}", dir.display()), e))?;
                let root = std::path::absolute(dir)
                    .map_err(|e| TestkitError::io(format!("absolute path of {}", dir.display()), e))?;
                (root, None)
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("hospital-clickhouse-")
                    .tempdir()
                    .map_err(|e| TestkitError::io("create temporary server dir", e))?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };

        let mut server = Self {
            binary,
            root,
            temp,
            keep: opts.dir.is_some() || opts.keep_dir,
            http_port: 0,
            tcp_port: 0,
            log_level: opts.log_level.clone(),
            startup_timeout: opts.startup_timeout,
            child: None,
            log_offsets: LogOffsets::default(),
        };
        let ports_fixed = opts.http_port.is_some() && opts.tcp_port.is_some();
        let mut attempt = 1;
        loop {
            server.http_port = opts.http_port.unwrap_or_else(free_port);
            server.tcp_port = match opts.tcp_port {
                Some(port) => port,
                None => loop {
                    let port = free_port();
                    if port != server.http_port {
                        break port;
                    }
                },
            };
            if opts.http_port.is_some() && ping(server.http_port) {
                return Err(TestkitError::AlreadyRunning { url: server.url() });
            }
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                Err(TestkitError::AddressInUse { .. }) if !ports_fixed && attempt < START_ATTEMPTS => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The HTTP port.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The native-protocol (TCP) port.
    pub fn tcp_port(&self) -> u16 {
        self.tcp_port
    }

    /// `http://127.0.0.1:{http_port}`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The server directory: `config.xml`, `users.xml`, `data/` (ClickHouse's
    /// `<path>`) and `log/`.
    pub fn data_dir(&self) -> &Path {
        &self.root
    }

    /// The process id of the running server, if any.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stop the server process (SIGTERM, wait up to 10 s, then SIGKILL); data
    /// stays. Idempotent.
    pub fn stop(&mut self) -> Result<(), TestkitError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let exited = child
            .try_wait()
            .map_err(|e| TestkitError::io("check clickhouse process", e))?
            .is_some();
        if !exited {
            // The child is not reaped yet, so its pid cannot have been reused.
            let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
            match signal::kill(pid, Signal::SIGTERM) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => return Err(TestkitError::io("send SIGTERM to clickhouse", e.into())),
            }
            let deadline = Instant::now() + STOP_GRACE;
            loop {
                let done = child
                    .try_wait()
                    .map_err(|e| TestkitError::io("wait for clickhouse", e))?
                    .is_some();
                if done {
                    break;
                }
                if Instant::now() >= deadline {
                    return self.kill();
                }
                sleep(POLL_INTERVAL);
            }
        }
        self.child = None;
        Ok(())
    }

    /// Kill the server with SIGKILL (simulating a crash); data stays. Idempotent.
    pub fn kill(&mut self) -> Result<(), TestkitError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        // `Child::kill` on an exited (but not yet reaped) child is harmless.
        child.kill().map_err(|e| TestkitError::io("kill clickhouse", e))?;
        child
            .wait()
            .map_err(|e| TestkitError::io("wait for killed clickhouse", e))?;
        self.child = None;
        Ok(())
    }

    /// Start again on the same ports and directory (after [`stop`](Self::stop)
    /// or [`kill`](Self::kill); a running server is stopped first); waits for
    /// `/ping`.
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        self.stop()?;
        self.spawn_and_wait()
    }

    /// Run a query over HTTP (SQL as the POST body) and return the response body.
    /// A non-200 answer becomes [`TestkitError::Query`] with the server's message.
    ///
    /// The query is sent with `wait_end_of_query=1`, so an error that happens
    /// while the result is produced still yields a non-200 status.
    pub fn query(&self, sql: &str) -> Result<String, TestkitError> {
        let response = http::request(
            self.http_port,
            "POST",
            "/?wait_end_of_query=1",
            sql.as_bytes(),
            QUERY_TIMEOUT,
        )
        .map_err(|source| TestkitError::Http {
            url: self.url(),
            source,
        })?;
        let body = String::from_utf8_lossy(&response.body).into_owned();
        if response.status == 200 {
            Ok(body)
        } else {
            Err(TestkitError::Query {
                status: response.status,
                message: body.trim_end().to_string(),
            })
        }
    }

    /// Whether the server process is alive (reaps it if it has exited).
    pub fn is_running(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(_)) | Err(_) => {
                self.child = None;
                false
            }
        }
    }

    /// The last lines the server wrote to stderr and its error log since it was
    /// last (re)started, for diagnosing a server that died.
    pub fn log_tail(&self) -> String {
        self.log_tail_since(self.log_offsets)
    }

    fn log_dir(&self) -> PathBuf {
        self.root.join("log")
    }

    fn stderr_path(&self) -> PathBuf {
        self.log_dir().join("stderr.log")
    }

    fn errlog_path(&self) -> PathBuf {
        self.log_dir().join("clickhouse-server.err.log")
    }

    fn log_tail_since(&self, offsets: LogOffsets) -> String {
        let stderr = read_from(&self.stderr_path(), offsets.stderr);
        let errlog = read_from(&self.errlog_path(), offsets.errlog);
        let mut out = String::new();
        for (name, text) in [("stderr", &stderr), ("error log", &errlog)] {
            let lines = tail_lines(text);
            if !lines.is_empty() {
                out.push_str(&format!("--- clickhouse {name} ---\n"));
                for line in lines {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        if out.is_empty() {
            out = format!("(no output; see {})\n", self.log_dir().display());
        }
        out
    }

    /// Write the config, spawn the server, and wait for it to answer `/ping`.
    fn spawn_and_wait(&mut self) -> Result<(), TestkitError> {
        debug_assert!(self.child.is_none());
        let token = unique_token();
        let log_dir = self.log_dir();
        fs::create_dir_all(&log_dir).map_err(|e| TestkitError::io(format!("create {}", log_dir.display()), e))?;
        let config_path = self.root.join("config.xml");
        let params = ConfigParams {
            root: &self.root,
            http_port: self.http_port,
            tcp_port: self.tcp_port,
            log_level: &self.log_level,
            display_name: &token,
        };
        write_file(&config_path, &config::config_xml(&params))?;
        write_file(&self.root.join("users.xml"), &config::users_xml())?;

        let offsets = LogOffsets {
            stderr: file_len(&self.stderr_path()),
            errlog: file_len(&self.errlog_path()),
        };
        self.log_offsets = offsets;
        let stdout = append(&log_dir.join("stdout.log"))?;
        let stderr = append(&self.stderr_path())?;

        let mut cmd = Command::new(&self.binary.path);
        if self.binary.multi_call {
            cmd.arg("server");
        }
        cmd.arg(format!("--config-file={}", config_path.display()))
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = cmd
            .spawn()
            .map_err(|e| TestkitError::io(format!("spawn {}", self.binary.path.display()), e))?;
        self.child = Some(child);

        let started = Instant::now();
        let result = self.wait_ready(&token, offsets, started);
        if result.is_err() {
            let _ = self.kill();
        }
        result
    }

    fn wait_ready(&mut self, token: &str, offsets: LogOffsets, started: Instant) -> Result<(), TestkitError> {
        loop {
            let child = self.child.as_mut().expect("spawned child");
            let status = child
                .try_wait()
                .map_err(|e| TestkitError::io("check clickhouse process", e))?;
            if let Some(status) = status {
                self.child = None;
                let log_tail = self.log_tail_since(offsets);
                return Err(if log_tail.contains("Address already in use") {
                    TestkitError::AddressInUse {
                        http_port: self.http_port,
                        tcp_port: self.tcp_port,
                        log_tail,
                    }
                } else {
                    TestkitError::StartFailed {
                        status: status.to_string(),
                        log_tail,
                    }
                });
            }
            if ping(self.http_port) {
                // Make sure it is *our* server answering, not another one that
                // grabbed the port (ours would then die with "Address in use").
                if let Ok(r) = http::request(self.http_port, "POST", "/", b"SELECT 1", PING_TIMEOUT) {
                    let name = r.header("X-ClickHouse-Server-Display-Name");
                    if r.status == 200 && name == Some(token) {
                        return Ok(());
                    }
                    return Err(TestkitError::AddressInUse {
                        http_port: self.http_port,
                        tcp_port: self.tcp_port,
                        log_tail: format!("another server (display name {name:?}) answers on {}\n", self.url()),
                    });
                }
            }
            if started.elapsed() >= self.startup_timeout {
                return Err(TestkitError::StartTimeout {
                    http_port: self.http_port,
                    waited: started.elapsed(),
                    log_tail: self.log_tail_since(offsets),
                });
            }
            sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for ClickHouseServer {
    fn drop(&mut self) {
        if self.keep {
            // A kept directory will be used again: shut down cleanly.
            let _ = self.stop();
        } else {
            let _ = self.kill();
        }
        if let Some(temp) = self.temp.take() {
            if self.keep {
                let _ = temp.keep();
            }
            // Otherwise dropping `temp` removes the directory.
        }
    }
}

fn write_file(path: &Path, contents: &str) -> Result<(), TestkitError> {
    fs::write(path, contents).map_err(|e| TestkitError::io(format!("write {}", path.display()), e))
}

fn append(path: &Path) -> Result<File, TestkitError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| TestkitError::io(format!("open {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_skips_stack_frames_and_blank_lines() {
        let text = "a <Error> boom, Stack trace:\n\n0. /lib/x.so(f+1)\n12. /lib/y.so\nnext\n";
        assert_eq!(tail_lines(text), vec!["a <Error> boom, Stack trace:", "next"]);
        let many: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let tail = tail_lines(&many);
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.last(), Some(&"line 99"));
    }

    #[test]
    fn free_ports_are_free_and_vary() {
        // A port in use is never offered; an offered port can be bound.
        let held = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let held_port = held.local_addr().unwrap().port();
        let ports: Vec<u16> = (0..20).map(|_| free_port()).collect();
        assert!(
            ports.iter().all(|&p| p != 0 && p != held_port),
            "{ports:?} vs {held_port}"
        );
        let bound = TcpListener::bind((Ipv4Addr::LOCALHOST, ports[0])).expect("an offered port is bindable");
        assert_eq!(bound.local_addr().unwrap().port(), ports[0]);
        // Successive calls do not keep offering one port (two servers would collide).
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert!(distinct.len() > 1, "{ports:?}");
    }

    #[test]
    fn rejects_bad_options() {
        let bad_level = ServerOptions::default().log_level("loud");
        assert!(matches!(
            ClickHouseServer::start_with(bad_level),
            Err(TestkitError::InvalidOptions(_))
        ));
        let same_ports = ServerOptions::default().http_port(40000).tcp_port(40000);
        assert!(matches!(
            ClickHouseServer::start_with(same_ports),
            Err(TestkitError::InvalidOptions(_))
        ));
    }

    #[test]
    fn multi_call_binary_is_detected() {
        assert!(Binary::new("/usr/bin/clickhouse".into()).multi_call);
        assert!(!Binary::new("/usr/sbin/clickhouse-server".into()).multi_call);
    }
}
