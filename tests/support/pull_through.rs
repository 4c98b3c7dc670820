//! The CNCF registry in proxy mode (a pull-through cache), started by a
//! test in front of one upstream registry.
//!
//! `docker-registry serve` runs with its own `config.yml` (`proxy:
//! remoteurl:` naming the upstream, optionally with the upstream's
//! credentials), storage directory and log, on a free loopback port. The
//! registry's proxy mode serves one upstream only, so each test starts its
//! own. Dropping it (or [`PullThrough::stop`]) kills the process.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the registry gets to answer `GET /v2/`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running pull-through registry.
pub struct PullThrough {
    child: Option<Child>,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl PullThrough {
    /// Starts a pull-through cache of `upstream` (`host:port`, plain HTTP),
    /// logging in there as `credentials` (user, password) when given, and
    /// waits until it answers.
    ///
    /// # Panics
    /// When `docker-registry` is missing or does not come up: the tests
    /// that need it fail rather than skip.
    pub fn start(upstream: &str, credentials: Option<(&str, &str)>) -> PullThrough {
        let dir = tempfile::tempdir().expect("a directory for the pull-through registry");
        let addr = free_port();
        let login = credentials
            .map(|(user, password)| format!("  username: {user}\n  password: {password}\n"))
            .unwrap_or_default();
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n\
             health:\n  storagedriver:\n    enabled: false\n\
             proxy:\n  remoteurl: http://{upstream}\n{login}",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("config.yml written");
        let log = dir.path().join("registry.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(program())
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file clones"))
            .stderr(log_file)
            .spawn()
            .expect("docker-registry starts (Debian package docker-registry)");
        let registry = PullThrough {
            child: Some(child),
            addr,
            log,
            _dir: dir,
        };
        registry.wait_ready();
        registry
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the registry logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the registry: its port then refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Polls `GET /v2/` (raw HTTP over a socket: this runs inside async
    /// tests too) until a distribution registry answers 200.
    fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if probe(self.addr).is_some_and(|head| {
                head.starts_with("HTTP/1.1 200")
                    && head
                        .to_ascii_lowercase()
                        .contains("docker-distribution-api-version")
            }) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the pull-through registry on {} did not come up; its log:\n{}",
            self.addr,
            self.log()
        );
    }
}

/// The response head to one `GET /v2/`, if anything answered.
fn probe(addr: SocketAddr) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let text = String::from_utf8_lossy(&answer);
    Some(text.split("\r\n\r\n").next().unwrap_or_default().to_owned())
}

impl Drop for PullThrough {
    fn drop(&mut self) {
        self.stop();
    }
}

fn program() -> PathBuf {
    ["/usr/bin/docker-registry", "/usr/local/bin/docker-registry"]
        .iter()
        .map(Path::new)
        .find(|path| path.exists())
        .map_or_else(|| PathBuf::from("docker-registry"), Path::to_path_buf)
}

/// A loopback port nothing listens on right now.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
}
