//! A real forwarding proxy for tests: Debian's `squid`, on a free port of
//! 127.0.0.1, with its own minimal configuration in a temporary directory.
//!
//! Squid's packaged configuration refuses `CONNECT` to ports other than 443
//! and requests to loopback destinations; this one allows every request
//! (or every authenticated request, with [`Squid::start_with_auth`]), caches
//! nothing, and writes an access log whose lines carry the method, URL,
//! status, proxy user and the `Authorization` and `Proxy-Authorization`
//! headers the client sent, so a test can assert what the proxy saw.
//! The process is killed on drop.
//!
//! Uses only `std` and `tempfile`, so the CLI tests include it by path.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's squid package installs the htpasswd-file helper.
pub const BASIC_NCSA_AUTH: &str = "/usr/lib/squid/basic_ncsa_auth";

/// A running squid, stopped (SIGKILL, then reaped, its shared memory
/// segments removed) on drop.
pub struct Squid {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    service: String,
}

/// One line of the access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    /// `GET`, `HEAD`, `CONNECT`, …
    pub method: String,
    /// The URL (`host:port` for `CONNECT`).
    pub url: String,
    /// The status squid answered.
    pub status: u16,
    /// The user squid authenticated (`-` when none).
    pub user: String,
    /// The client's `Authorization` header (`-` when absent).
    pub authorization: String,
    /// The client's `Proxy-Authorization` header (`-` when absent).
    pub proxy_authorization: String,
}

impl Squid {
    /// An open proxy: every request is forwarded.
    pub fn start(hosts: &[(&str, &str)]) -> Squid {
        Squid::start_inner(hosts, None)
    }

    /// A proxy that forwards only requests carrying `user`/`password` as
    /// `Proxy-Authorization: Basic` (checked by squid's `basic_ncsa_auth`
    /// against an htpasswd file), and answers 407 to others.
    pub fn start_with_auth(hosts: &[(&str, &str)], user: &str, password: &str) -> Squid {
        Squid::start_inner(hosts, Some((user, password)))
    }

    /// `hosts` are `(name, address)` lines of the hosts file squid resolves
    /// names with (test registries have made-up names).
    fn start_inner(hosts: &[(&str, &str)], auth: Option<(&str, &str)>) -> Squid {
        let squid = find("squid").expect("squid is installed (`cargo xtask test` installs it)");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path();
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let hosts_text: String = hosts
            .iter()
            .map(|(name, address)| format!("{address} {name}\n"))
            .collect();
        std::fs::write(path.join("hosts"), hosts_text).expect("hosts written");
        let access = match auth {
            None => "http_access allow all\n".to_owned(),
            Some((user, password)) => {
                std::fs::write(path.join("htpasswd"), htpasswd_line(user, password))
                    .expect("htpasswd written");
                format!(
                    "auth_param basic program {BASIC_NCSA_AUTH} {htpasswd}\n\
                     auth_param basic realm cachectl-test-proxy\n\
                     acl authenticated proxy_auth REQUIRED\n\
                     http_access allow authenticated\n\
                     http_access deny all\n",
                    htpasswd = path.join("htpasswd").display()
                )
            }
        };
        let config = format!(
            "http_port {addr}\n\
             pid_filename {dir}/squid.pid\n\
             cache_log {dir}/cache.log\n\
             logformat cachectl %rm %ru %>Hs user=%un auth=[%{{Authorization}}>h] proxy_auth=[%{{Proxy-Authorization}}>h]\n\
             access_log stdio:{dir}/access.log cachectl\n\
             buffered_logs off\n\
             cache deny all\n\
             cache_mem 8 MB\n\
             coredump_dir {dir}\n\
             hosts_file {dir}/hosts\n\
             dns_nameservers 127.0.0.1\n\
             shutdown_lifetime 0 seconds\n\
             forwarded_for delete\n\
             {user}{access}",
            dir = path.display(),
            // Squid refuses to run as root: started as root it switches to
            // Debian's `proxy` user, which must be able to write the logs.
            user = if running_as_root() {
                "cache_effective_user proxy\n"
            } else {
                ""
            },
        );
        std::fs::write(path.join("squid.conf"), config).expect("config written");
        if running_as_root() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))
                .expect("temp dir opened to squid's user");
        }
        // Squid names its shared memory segments after the service name;
        // a run killed earlier on the same port may have left them.
        let service = format!("cachectlsquid{}", addr.port());
        remove_segments(&service);
        let mut command = Command::new(squid);
        command
            .arg("-N")
            .arg("-f")
            .arg(path.join("squid.conf"))
            .arg("-n")
            .arg(&service)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = command.spawn().expect("squid starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "squid exited ({status}) before listening on {addr}:\n{}",
                    std::fs::read_to_string(path.join("cache.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "squid never listened on {addr}:\n{}",
                std::fs::read_to_string(path.join("cache.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Squid {
            child,
            addr,
            dir,
            service,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The access log's path.
    pub fn access_log_path(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }

    /// The access log so far, parsed; without the line of the readiness
    /// probe (a connection closed before any request).
    pub fn log(&self) -> Vec<Logged> {
        let text = std::fs::read_to_string(self.access_log_path()).unwrap_or_default();
        text.lines()
            .filter_map(parse_line)
            .filter(|line| line.url != "error:transaction-end-before-headers")
            .collect()
    }

    /// The raw access log text.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.access_log_path()).unwrap_or_default()
    }

    /// Waits (up to 10 s) until the log holds a line for which `done` is
    /// true, then returns the whole log. Squid writes a line when a
    /// transaction ends: for a `CONNECT` tunnel, when the client closes it.
    pub fn wait_for(&self, done: impl Fn(&Logged) -> bool) -> Vec<Logged> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.iter().any(&done) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "squid never logged the expected line; its log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The temp dir squid runs in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        remove_segments(&self.service);
    }
}

/// Removes `/dev/shm/SERVICE-*`, the segments a killed squid leaves.
fn remove_segments(service: &str) {
    let prefix = format!("{service}-");
    let Ok(entries) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn parse_line(line: &str) -> Option<Logged> {
    let mut words = line.splitn(4, ' ');
    let method = words.next()?.to_owned();
    let url = words.next()?.to_owned();
    let status = words.next()?.parse().ok()?;
    let rest = words.next()?;
    let user = rest.strip_prefix("user=")?.split(' ').next()?.to_owned();
    let field = |name: &str| {
        let start = rest.find(&format!("{name}=["))? + name.len() + 2;
        let end = start + rest[start..].find(']')?;
        Some(rest[start..end].to_owned())
    };
    Some(Logged {
        method,
        url,
        status,
        user,
        authorization: field("auth")?,
        proxy_authorization: field("proxy_auth")?,
    })
}

/// `user:$apr1$…` (MD5, which `basic_ncsa_auth` reads), made by openssl.
fn htpasswd_line(user: &str, password: &str) -> String {
    let output = Command::new("openssl")
        .args(["passwd", "-apr1", password])
        .output()
        .expect("openssl runs");
    assert!(output.status.success(), "openssl passwd failed");
    format!("{user}:{}", String::from_utf8_lossy(&output.stdout).trim())
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program` on `$PATH` or in the sbin directories (squid lives in
/// /usr/sbin).
fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
