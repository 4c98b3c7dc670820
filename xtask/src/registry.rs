//! The real CNCF distribution registry (`docker-registry serve CONFIG`),
//! started on free loopback ports for the tests and stopped by PID.
//!
//! Two registries run side by side: one anonymous, one behind htpasswd Basic
//! auth with a password made up for this run. Tests find them through the
//! environment variables in [`TestRegistries::env`].

use crate::cmd::Error;
use crate::tools;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Address (`127.0.0.1:PORT`) of the anonymous registry.
pub(crate) const ENV_PLAIN: &str = "CACHECTL_TEST_REGISTRY";
/// Address of the registry that requires htpasswd Basic auth.
pub(crate) const ENV_BASIC: &str = "CACHECTL_TEST_REGISTRY_BASIC";
/// User name accepted by the Basic-auth registry.
pub(crate) const ENV_BASIC_USER: &str = "CACHECTL_TEST_REGISTRY_BASIC_USER";
/// Password accepted by the Basic-auth registry.
pub(crate) const ENV_BASIC_PASSWORD: &str = "CACHECTL_TEST_REGISTRY_BASIC_PASSWORD";

const BASIC_USER: &str = "cachectl";
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The running registries; dropping this stops them and removes their data.
pub(crate) struct TestRegistries {
    dir: PathBuf,
    plain: Registry,
    basic: Registry,
    password: String,
}

struct Registry {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

#[derive(Clone, Copy)]
enum Mode {
    Anonymous,
    Basic,
}

impl TestRegistries {
    /// Starts both registries and waits until each answers `GET /v2/`.
    pub(crate) fn start() -> Result<Self, Error> {
        let program = tools::find("docker-registry")
            .ok_or("docker-registry is not installed (Debian package `docker-registry`)")?;
        let dir = std::env::temp_dir().join(format!("cachectl-test-registry-{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
        }
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let password = random_hex();
        let htpasswd = dir.join("htpasswd");
        let hash = bcrypt::hash(&password, 4).map_err(|e| format!("bcrypt: {e}"))?;
        write(&htpasswd, &format!("{BASIC_USER}:{hash}\n"))?;

        let plain = Registry::start(&program, &dir.join("plain"), Mode::Anonymous, &htpasswd)?;
        let basic = match Registry::start(&program, &dir.join("basic"), Mode::Basic, &htpasswd) {
            Ok(basic) => basic,
            Err(err) => {
                plain.stop();
                return Err(err);
            }
        };
        let registries = TestRegistries {
            dir,
            plain,
            basic,
            password,
        };
        registries.plain.wait_ready(200)?;
        registries.basic.wait_ready(401)?;
        Ok(registries)
    }

    /// The variables that tell tests where the registries are.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (ENV_PLAIN, self.plain.addr.to_string()),
            (ENV_BASIC, self.basic.addr.to_string()),
            (ENV_BASIC_USER, BASIC_USER.to_owned()),
            (ENV_BASIC_PASSWORD, self.password.clone()),
        ]
    }
}

impl Drop for TestRegistries {
    fn drop(&mut self) {
        for registry in [&mut self.plain, &mut self.basic] {
            registry.kill();
        }
        eprintln!(
            "xtask: stopped registries (pids {}, {})",
            self.plain.child.id(),
            self.basic.child.id()
        );
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Registry {
    fn start(program: &Path, dir: &Path, mode: Mode, htpasswd: &Path) -> Result<Self, Error> {
        fs::create_dir_all(dir.join("data"))
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let addr = free_port()?;
        let config = dir.join("config.yml");
        write(&config, &config_yaml(addr, &dir.join("data"), mode, htpasswd))?;
        let log = dir.join("registry.log");
        let log_file =
            fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| format!("cloning {}: {e}", log.display()))?;
        let child = Command::new(program)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", program.display()))?;
        eprintln!(
            "xtask: started docker-registry ({}) on {addr}, pid {}",
            match mode {
                Mode::Anonymous => "anonymous",
                Mode::Basic => "htpasswd basic auth",
            },
            child.id()
        );
        Ok(Registry { child, addr, log })
    }

    /// Polls `GET /v2/` until it answers `expected` from a distribution
    /// registry, or fails with the tail of the registry's log.
    fn wait_ready(&self, expected: u16) -> Result<(), Error> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            match probe(self.addr) {
                Ok((status, true)) if status == expected => return Ok(()),
                Ok((status, is_registry)) => {
                    last = format!("status {status}, distribution header present: {is_registry}");
                }
                Err(err) => last = err,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let tail = fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(format!(
            "registry on {} not ready after {READY_TIMEOUT:?} (expected {expected}; last: {last}); log {}:\n{}",
            self.addr,
            self.log.display(),
            tail.join("\n")
        ))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stop(mut self) {
        self.kill();
    }
}

/// Entry point of `cargo xtask registry`.
pub(crate) fn run_interactive() -> Result<(), Error> {
    crate::tools::ensure_installed()?;
    let registries = TestRegistries::start()?;
    for (name, value) in registries.env() {
        println!("export {name}={value}");
    }
    eprintln!("xtask: registries are running; press Enter to stop them");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(registries);
    Ok(())
}

fn config_yaml(addr: SocketAddr, data: &Path, mode: Mode, htpasswd: &Path) -> String {
    let auth = match mode {
        Mode::Anonymous => String::new(),
        Mode::Basic => format!(
            "auth:\n  htpasswd:\n    realm: cachectl-test\n    path: {}\n",
            htpasswd.display()
        ),
    };
    format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: {addr}\n\
         health:\n  storagedriver:\n    enabled: false\n\
         {auth}",
        data.display()
    )
}

/// Asks the OS for a free loopback port. Another process could take it before
/// the registry binds it; the readiness probe then fails loudly rather than
/// talking to the wrong server (it checks the distribution header).
fn free_port() -> Result<SocketAddr, Error> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding 127.0.0.1:0: {e}"))?;
    listener
        .local_addr()
        .map_err(|e| format!("reading the bound address: {e}"))
}

/// One `GET /v2/`: the status code, and whether the answer came from a
/// distribution registry (`Docker-Distribution-Api-Version` header).
fn probe(addr: SocketAddr) -> Result<(u16, bool), Error> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", text.lines().next()))?;
    let is_registry = text
        .lines()
        .any(|line| line.to_ascii_lowercase().starts_with("docker-distribution-api-version:"));
    Ok((status, is_registry))
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    fs::write(path, contents).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// 128 random bits as hex, from the standard library's per-process random
/// hash keys (enough for a throwaway test password; no extra dependency).
fn random_hex() -> String {
    use std::hash::{BuildHasher, RandomState};
    let a = RandomState::new().hash_one(std::process::id());
    let b = RandomState::new().hash_one(Instant::now());
    format!("{a:016x}{b:016x}")
}
