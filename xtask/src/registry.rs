//! The real CNCF distribution registry (`docker-registry serve CONFIG`),
//! started on free loopback ports for the tests and stopped by PID.
//!
//! Three registries run side by side: one anonymous, one behind htpasswd
//! Basic auth with a password made up for this run, and one in `auth: token`
//! mode trusting the [`TokenIssuer`] that runs in this process. Tests find
//! them through the environment variables in [`TestRegistries::env`].

use crate::cmd::Error;
use crate::token_issuer::{self, TokenIssuer};
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
/// Address of the registry in `auth: token` mode.
pub(crate) const ENV_TOKEN: &str = "CACHECTL_TEST_REGISTRY_TOKEN";
/// Address of the token issuer that registry trusts (`/token`, `/log`).
pub(crate) const ENV_TOKEN_ISSUER: &str = "CACHECTL_TEST_TOKEN_ISSUER";
/// User name the token issuer accepts (Basic auth on the token request).
pub(crate) const ENV_TOKEN_USER: &str = "CACHECTL_TEST_TOKEN_USER";
/// Password the token issuer accepts.
pub(crate) const ENV_TOKEN_PASSWORD: &str = "CACHECTL_TEST_TOKEN_PASSWORD";
/// Service name the token registry announces and the issuer requires.
pub(crate) const ENV_TOKEN_SERVICE: &str = "CACHECTL_TEST_TOKEN_SERVICE";

const BASIC_USER: &str = "cachectl";
const TOKEN_USER: &str = "cachectl";
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The running registries and token issuer; dropping this stops them and
/// removes the registries' data.
pub(crate) struct TestRegistries {
    dir: PathBuf,
    plain: Registry,
    basic: Registry,
    token: Registry,
    // Declared after the registries: dropped (stopped) after them.
    issuer: TokenIssuer,
    password: String,
    token_password: String,
}

/// One `docker-registry serve` process; dropping it kills the process.
struct Registry {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

/// How a registry authenticates clients.
enum Mode<'a> {
    Anonymous,
    Basic {
        htpasswd: &'a Path,
    },
    Token {
        realm: &'a str,
        rootcertbundle: &'a Path,
    },
}

impl Mode<'_> {
    fn describe(&self) -> &'static str {
        match self {
            Mode::Anonymous => "anonymous",
            Mode::Basic { .. } => "htpasswd basic auth",
            Mode::Token { .. } => "token auth",
        }
    }
}

impl TestRegistries {
    /// Starts the token issuer and the three registries and waits until each
    /// registry answers `GET /v2/`. What started is stopped again on failure.
    pub(crate) fn start() -> Result<Self, Error> {
        let program = tools::find("docker-registry")
            .ok_or("docker-registry is not installed (Debian package `docker-registry`)")?;
        let dir =
            std::env::temp_dir().join(format!("cachectl-test-registry-{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
        }
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let password = random_hex();
        let htpasswd = dir.join("htpasswd");
        let hash = bcrypt::hash(&password, 4).map_err(|e| format!("bcrypt: {e}"))?;
        write(&htpasswd, &format!("{BASIC_USER}:{hash}\n"))?;

        let token_password = random_hex();
        let issuer = TokenIssuer::start(TOKEN_USER, &token_password)?;
        let rootcertbundle = dir.join("token-issuer.pem");
        write(&rootcertbundle, issuer.certificate_pem())?;
        let realm = issuer.realm();

        // Each `?` below drops (kills) the registries started before it.
        let plain = Registry::start(&program, &dir.join("plain"), &Mode::Anonymous)?;
        let basic = Registry::start(
            &program,
            &dir.join("basic"),
            &Mode::Basic {
                htpasswd: &htpasswd,
            },
        )?;
        let token_mode = Mode::Token {
            realm: &realm,
            rootcertbundle: &rootcertbundle,
        };
        let token = Registry::start(&program, &dir.join("token"), &token_mode)?;
        let registries = TestRegistries {
            dir,
            plain,
            basic,
            token,
            issuer,
            password,
            token_password,
        };
        registries.plain.wait_ready(200, None)?;
        registries.basic.wait_ready(401, Some("Basic"))?;
        registries.token.wait_ready(401, Some("Bearer"))?;
        Ok(registries)
    }

    /// `127.0.0.1:PORT` of the anonymous registry.
    pub(crate) fn plain_addr(&self) -> String {
        self.plain.addr.to_string()
    }

    /// The variables that tell tests where the registries are.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (ENV_PLAIN, self.plain.addr.to_string()),
            (ENV_BASIC, self.basic.addr.to_string()),
            (ENV_BASIC_USER, BASIC_USER.to_owned()),
            (ENV_BASIC_PASSWORD, self.password.clone()),
            (ENV_TOKEN, self.token.addr.to_string()),
            (ENV_TOKEN_ISSUER, self.issuer.addr().to_string()),
            (ENV_TOKEN_USER, TOKEN_USER.to_owned()),
            (ENV_TOKEN_PASSWORD, self.token_password.clone()),
            (ENV_TOKEN_SERVICE, token_issuer::SERVICE.to_owned()),
        ]
    }
}

impl Drop for TestRegistries {
    fn drop(&mut self) {
        for registry in [&mut self.plain, &mut self.basic, &mut self.token] {
            registry.kill();
        }
        eprintln!(
            "xtask: stopped registries (pids {}, {}, {})",
            self.plain.child.id(),
            self.basic.child.id(),
            self.token.child.id()
        );
        // The issuer stops when its field drops, after this.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Only the anonymous registry, for `cargo xtask bench`: its data lives in
/// a directory chosen by the caller; dropping this stops the process and
/// removes that directory.
pub(crate) struct AnonymousRegistry {
    dir: PathBuf,
    registry: Registry,
}

impl AnonymousRegistry {
    /// Starts an anonymous registry with its config, log and data in `dir`
    /// (emptied first) and waits until it answers `GET /v2/`.
    pub(crate) fn start(dir: &Path) -> Result<Self, Error> {
        let program = tools::find("docker-registry")
            .ok_or("docker-registry is not installed (Debian package `docker-registry`)")?;
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
        }
        let registry = Registry::start(&program, dir, &Mode::Anonymous)?;
        let started = AnonymousRegistry {
            dir: dir.to_owned(),
            registry,
        };
        started.registry.wait_ready(200, None)?;
        Ok(started)
    }

    /// `127.0.0.1:PORT` of the registry.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.registry.addr
    }
}

impl Drop for AnonymousRegistry {
    fn drop(&mut self) {
        self.registry.kill();
        eprintln!("xtask: stopped registry (pid {})", self.registry.child.id());
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Registry {
    fn start(program: &Path, dir: &Path, mode: &Mode<'_>) -> Result<Self, Error> {
        fs::create_dir_all(dir.join("data"))
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let addr = free_port()?;
        let config = dir.join("config.yml");
        write(&config, &config_yaml(addr, &dir.join("data"), mode))?;
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
            mode.describe(),
            child.id()
        );
        Ok(Registry { child, addr, log })
    }

    /// Polls `GET /v2/` until it answers `expected` from a distribution
    /// registry, with a challenge of `scheme` if given, or fails with the
    /// tail of the registry's log.
    fn wait_ready(&self, expected: u16, scheme: Option<&str>) -> Result<(), Error> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            match probe(self.addr) {
                Ok(answer) if answer.is_ready(expected, scheme) => return Ok(()),
                Ok(answer) => {
                    last = format!(
                        "status {}, distribution header present: {}, challenge: {:?}",
                        answer.status, answer.is_registry, answer.challenge
                    );
                }
                Err(err) => last = err,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let tail = fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(format!(
            "registry on {} not ready after {READY_TIMEOUT:?} (expected {expected} {scheme:?}; last: {last}); log {}:\n{}",
            self.addr,
            self.log.display(),
            tail.join("\n")
        ))
    }

    /// Kills the process and reaps it; harmless when already done.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
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
    let plain = registries.plain_addr();
    let out = crate::cmd::target_dir()?.join("fixtures");
    if let Some(summary) = crate::fixtures::build_and_push(&out, Some(&plain), true)? {
        println!(
            "export {}={}",
            crate::fixtures::ENV_FIXTURES,
            summary.display()
        );
    }
    eprintln!("xtask: registries are running; press Enter to stop them");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(registries);
    Ok(())
}

fn config_yaml(addr: SocketAddr, data: &Path, mode: &Mode<'_>) -> String {
    let auth = match mode {
        Mode::Anonymous => String::new(),
        Mode::Basic { htpasswd } => format!(
            "auth:\n  htpasswd:\n    realm: cachectl-test\n    path: {}\n",
            htpasswd.display()
        ),
        Mode::Token {
            realm,
            rootcertbundle,
        } => format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            token_issuer::SERVICE,
            token_issuer::ISSUER_NAME,
            rootcertbundle.display()
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

/// What a `GET /v2/` probe saw.
struct ProbeAnswer {
    status: u16,
    /// Whether the `Docker-Distribution-Api-Version` header was there.
    is_registry: bool,
    /// The `WWW-Authenticate` value, if any.
    challenge: Option<String>,
}

impl ProbeAnswer {
    /// A distribution registry answered `expected`, challenging with
    /// `scheme` (e.g. `Bearer`) when one is given.
    fn is_ready(&self, expected: u16, scheme: Option<&str>) -> bool {
        let challenge_ok = match (scheme, &self.challenge) {
            (None, _) => true,
            (Some(scheme), Some(challenge)) => challenge
                .split_once(' ')
                .is_some_and(|(s, _)| s.eq_ignore_ascii_case(scheme)),
            (Some(_), None) => false,
        };
        self.is_registry && self.status == expected && challenge_ok
    }
}

/// One `GET /v2/`: the status code, whether the answer came from a
/// distribution registry, and its challenge.
fn probe(addr: SocketAddr) -> Result<ProbeAnswer, Error> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
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
    let header = |name: &str| {
        text.lines()
            .take_while(|line| !line.is_empty())
            .filter_map(|line| line.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim().to_owned())
    };
    Ok(ProbeAnswer {
        status,
        is_registry: header("docker-distribution-api-version").is_some(),
        challenge: header("www-authenticate"),
    })
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
