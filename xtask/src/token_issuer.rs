//! A token issuer for the registry in `auth: token` mode (Docker registry
//! token authentication), run on a loopback port inside the xtask process.
//!
//! `GET /token?service=S&scope=repository:NAME:ACTIONS[&scope=...][&account=U]`
//! answers `{"token", "access_token", "expires_in", "issued_at"}` with an
//! ES256 JWT (see [`crate::jwt`]) granting what [`crate::token_policy`]
//! allows. The test user authenticates with Basic auth; a wrong password
//! gets 401, an unknown service or a malformed scope 400.
//!
//! Every `/token` request is recorded (time, account, credentials state,
//! service, scopes asked and granted, status; never the password) and the
//! record is served as a JSON array at `GET /log`, so tests can assert what a
//! client asked for. The log is only appended to: tests running in parallel
//! share it and look for their own repository names.

use crate::cmd::Error;
use crate::jwt::SigningKey;
use crate::mini_http::{Request, Response, basic_credentials, query_pairs};
use crate::token_policy::{Requester, grant};
use crate::token_scope::Scope;
use serde_json::{Value, json};
use std::io::{BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `iss` of every token; the registry's `auth.token.issuer`.
pub(crate) const ISSUER_NAME: &str = "cachectl-test-issuer";
/// The service name the registry announces and the issuer requires.
pub(crate) const SERVICE: &str = "cachectl-test-registry";
/// Lifetime of a token, in seconds (`expires_in`).
const TOKEN_LIFETIME_SECS: u64 = 300;
/// Largest request body read and discarded (the issuer reads no bodies).
const MAX_DISCARDED_BODY: u64 = 64 * 1024;

/// The running issuer; dropping it stops its thread.
pub(crate) struct TokenIssuer {
    addr: SocketAddr,
    certificate_pem: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TokenIssuer {
    /// Binds a free loopback port and serves tokens for `user`/`password`
    /// with a new key and certificate.
    pub(crate) fn start(user: &str, password: &str) -> Result<Self, Error> {
        let issuer = Arc::new(Issuer::new(user, password)?);
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding 127.0.0.1:0: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("reading the bound address: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let certificate_pem = issuer.key.certificate_pem().to_owned();
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("token-issuer".to_owned())
                .spawn(move || serve(&listener, &issuer, &stop))
                .map_err(|e| format!("starting the token issuer thread: {e}"))?
        };
        eprintln!("xtask: started token issuer on {addr}");
        Ok(TokenIssuer {
            addr,
            certificate_pem,
            stop,
            thread: Some(thread),
        })
    }

    /// `127.0.0.1:PORT` of the issuer.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token endpoint, the registry's `auth.token.realm`.
    pub(crate) fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The signing certificate, the registry's `auth.token.rootcertbundle`.
    pub(crate) fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        eprintln!("xtask: stopped token issuer on {}", self.addr);
    }
}

fn serve(listener: &TcpListener, issuer: &Arc<Issuer>, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match stream {
            Ok(stream) => {
                let issuer = Arc::clone(issuer);
                std::thread::spawn(move || handle_connection(&stream, &issuer));
            }
            Err(err) => eprintln!("xtask: token issuer: accept failed: {err}"),
        }
    }
}

/// Answers one request and closes the connection.
fn handle_connection(stream: &TcpStream, issuer: &Issuer) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream);
    let response = match Request::read(&mut reader) {
        Ok(request) => {
            // Drain a small body so closing does not reset the connection
            // before the client reads the answer.
            let length = request
                .header("content-length")
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            let _ = std::io::copy(
                &mut reader.by_ref().take(length.min(MAX_DISCARDED_BODY)),
                &mut std::io::sink(),
            );
            issuer.respond(&request, unix_now())
        }
        Err(err) => Response::error(400, &err),
    };
    let mut out = stream;
    let _ = response.write_to(&mut out);
}

/// What the issuer checks, signs with and has recorded.
struct Issuer {
    user: String,
    password: String,
    key: SigningKey,
    log: Mutex<Vec<Value>>,
}

/// One recorded `/token` request.
struct LogEntry {
    time: u64,
    method: String,
    account: String,
    credentials: &'static str,
    service: Option<String>,
    scopes_asked: Vec<String>,
    scopes_granted: Vec<String>,
    status: u16,
}

impl LogEntry {
    fn to_json(&self) -> Value {
        json!({
            "time": rfc3339(self.time),
            "method": self.method,
            "account": self.account,
            "credentials": self.credentials,
            "service": self.service,
            "scopes_asked": self.scopes_asked,
            "scopes_granted": self.scopes_granted,
            "status": self.status,
        })
    }
}

impl Issuer {
    fn new(user: &str, password: &str) -> Result<Self, Error> {
        Ok(Issuer {
            user: user.to_owned(),
            password: password.to_owned(),
            key: SigningKey::generate(ISSUER_NAME)?,
            log: Mutex::new(Vec::new()),
        })
    }

    /// Routes one request; `now` is the Unix time in seconds.
    fn respond(&self, request: &Request, now: u64) -> Response {
        match (request.method.as_str(), request.path.as_str()) {
            (_, "/token") => self.token_logged(request, now),
            ("GET", "/log") => Response::json(200, Value::Array(self.log_entries())),
            (_, "/log") => Response::error(405, "only GET /log"),
            _ => Response::error(404, "no such endpoint (try /token or /log)"),
        }
    }

    fn log_entries(&self) -> Vec<Value> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Answers a `/token` request and records it.
    fn token_logged(&self, request: &Request, now: u64) -> Response {
        let mut entry = LogEntry {
            time: now,
            method: request.method.clone(),
            account: "anonymous".to_owned(),
            credentials: "none",
            service: None,
            scopes_asked: Vec::new(),
            scopes_granted: Vec::new(),
            status: 0,
        };
        let response = self
            .token(request, now, &mut entry)
            .unwrap_or_else(|response| response);
        entry.status = response.status;
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(entry.to_json());
        response
    }

    /// The token answer, or the error answer; fills `entry` as it learns.
    fn token(
        &self,
        request: &Request,
        now: u64,
        entry: &mut LogEntry,
    ) -> Result<Response, Response> {
        let requester = self.authenticate(request, entry);
        if request.method != "GET" {
            return Err(Response::error(405, "only GET /token (no OAuth2 POST)"));
        }
        let pairs = query_pairs(&request.query).map_err(|e| Response::error(400, &e))?;
        let mut services = Vec::new();
        let mut account = None;
        for (name, value) in pairs {
            match name.as_str() {
                "service" => services.push(value),
                "scope" => entry.scopes_asked.push(value),
                "account" => account = Some(value),
                _ => {}
            }
        }
        entry.service = services.first().cloned();
        if services != [SERVICE] {
            return Err(Response::error(
                400,
                &format!("exactly one service={SERVICE} expected, got {services:?}"),
            ));
        }
        let mut asked = Vec::new();
        for text in &entry.scopes_asked {
            asked.extend(Scope::parse_list(text).map_err(|e| Response::error(400, &e))?);
        }
        let requester = requester.ok_or_else(|| {
            Response::error(401, "invalid credentials")
                .with_header("WWW-Authenticate", format!("Basic realm=\"{ISSUER_NAME}\""))
        })?;
        let subject = match requester {
            Requester::User => self.user.as_str(),
            Requester::Anonymous => "",
        };
        if let Some(account) = account.filter(|account| account != subject) {
            return Err(Response::error(
                400,
                &format!("account={account:?} does not match the credentials"),
            ));
        }
        let granted: Vec<Scope> = asked.iter().filter_map(|s| grant(requester, s)).collect();
        entry.scopes_granted = granted.iter().map(Scope::to_string).collect();

        let internal = |e: Error| Response::error(500, &e);
        let claims = json!({
            "iss": ISSUER_NAME,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + TOKEN_LIFETIME_SECS,
            "nbf": now,
            "iat": now,
            "jti": self.key.random_hex(16).map_err(internal)?,
            "access": granted.iter().map(access_claim).collect::<Vec<_>>(),
        });
        let token = self.key.sign(&claims).map_err(internal)?;
        Ok(Response::json(
            200,
            json!({
                "token": token,
                "access_token": token,
                "expires_in": TOKEN_LIFETIME_SECS,
                "issued_at": rfc3339(now),
            }),
        ))
    }

    /// `Some(requester)` for no or valid credentials, `None` for invalid ones.
    fn authenticate(&self, request: &Request, entry: &mut LogEntry) -> Option<Requester> {
        let Some(authorization) = request.header("authorization") else {
            return Some(Requester::Anonymous);
        };
        entry.credentials = "invalid";
        let (user, password) = basic_credentials(authorization)?;
        entry.account = user;
        if entry.account == self.user && password == self.password {
            entry.credentials = "valid";
            Some(Requester::User)
        } else {
            None
        }
    }
}

/// One entry of the `access` claim.
fn access_claim(scope: &Scope) -> Value {
    let mut claim = json!({
        "type": scope.resource_type,
        "name": scope.name,
        "actions": scope.actions,
    });
    if let Some(class) = &scope.class {
        claim["class"] = json!(class);
    }
    claim
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (days-to-civil conversion from
/// Howard Hinnant's date algorithms).
fn rfc3339(unix: u64) -> String {
    let (days, secs) = (unix / 86_400, unix % 86_400);
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    const NOW: u64 = 1_700_000_000;

    fn issuer() -> Issuer {
        Issuer::new("cachectl", "secret-password").expect("issuer")
    }

    fn get(issuer: &Issuer, target: &str, basic: Option<(&str, &str)>) -> Response {
        let mut raw = format!("GET {target} HTTP/1.1\r\nHost: x\r\n");
        if let Some((user, password)) = basic {
            let encoded = STANDARD.encode(format!("{user}:{password}"));
            raw.push_str(&format!("Authorization: Basic {encoded}\r\n"));
        }
        raw.push_str("\r\n");
        let request = Request::read(&mut raw.as_bytes()).expect("test requests parse");
        issuer.respond(&request, NOW)
    }

    fn claims_of(response: &Response) -> Value {
        let token = response.body["token"].as_str().expect("a token");
        let claims = token.split('.').nth(1).expect("three parts");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).expect("base64url"))
            .expect("JSON claims")
    }

    #[test]
    fn user_gets_a_token_with_push_and_pull() {
        let issuer = issuer();
        let response = get(
            &issuer,
            "/token?service=cachectl-test-registry&scope=repository%3Ax%2Fy%3Apull%2Cpush&account=cachectl",
            Some(("cachectl", "secret-password")),
        );
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(response.body["expires_in"], 300);
        assert_eq!(response.body["issued_at"], "2023-11-14T22:13:20Z");
        assert_eq!(response.body["token"], response.body["access_token"]);
        let claims = claims_of(&response);
        assert_eq!(claims["iss"], ISSUER_NAME);
        assert_eq!(claims["aud"], SERVICE);
        assert_eq!(claims["sub"], "cachectl");
        assert_eq!(claims["exp"], NOW + 300);
        assert_eq!(
            claims["access"],
            json!([{"type": "repository", "name": "x/y", "actions": ["pull", "push"]}])
        );
    }

    #[test]
    fn anonymous_token_has_empty_access_outside_public() {
        let issuer = issuer();
        let response = get(
            &issuer,
            "/token?service=cachectl-test-registry&scope=repository:x/y:pull&scope=repository:public/a:pull,push",
            None,
        );
        assert_eq!(response.status, 200, "{}", response.body);
        let claims = claims_of(&response);
        assert_eq!(claims["sub"], "");
        assert_eq!(
            claims["access"],
            json!([{"type": "repository", "name": "public/a", "actions": ["pull"]}])
        );
    }

    #[test]
    fn wrong_password_gets_401_and_is_logged_without_the_password() {
        let issuer = issuer();
        let response = get(
            &issuer,
            "/token?service=cachectl-test-registry&scope=repository:x/y:pull",
            Some(("cachectl", "guessed-password")),
        );
        assert_eq!(response.status, 401);
        assert!(
            response
                .headers
                .iter()
                .any(|(name, value)| *name == "WWW-Authenticate" && value.starts_with("Basic "))
        );
        let log = get(&issuer, "/log", None);
        let entries = log.body.as_array().expect("the log is an array");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["account"], "cachectl");
        assert_eq!(entries[0]["credentials"], "invalid");
        assert_eq!(entries[0]["status"], 401);
        assert_eq!(entries[0]["scopes_asked"], json!(["repository:x/y:pull"]));
        assert!(!log.body.to_string().contains("guessed-password"));
    }

    #[test]
    fn bad_service_scope_or_account_gets_400() {
        let issuer = issuer();
        let user = Some(("cachectl", "secret-password"));
        for target in [
            "/token?scope=repository:x:pull",
            "/token?service=other&scope=repository:x:pull",
            "/token?service=cachectl-test-registry&service=cachectl-test-registry",
            "/token?service=cachectl-test-registry&scope=repository:x",
            "/token?service=cachectl-test-registry&scope=repository:X:pull",
            "/token?service=cachectl-test-registry&account=someone-else",
        ] {
            assert_eq!(get(&issuer, target, user).status, 400, "{target}");
        }
        let log = issuer.log_entries();
        assert_eq!(log.len(), 6);
        assert!(log.iter().all(|entry| entry["status"] == 400));
        assert!(!json!(log).to_string().contains("secret-password"));
    }

    #[test]
    fn token_without_scope_has_no_access() {
        let issuer = issuer();
        let response = get(&issuer, "/token?service=cachectl-test-registry", None);
        assert_eq!(response.status, 200);
        assert_eq!(claims_of(&response)["access"], json!([]));
    }

    #[test]
    fn unknown_paths_and_methods_are_refused() {
        let issuer = issuer();
        assert_eq!(get(&issuer, "/v2/", None).status, 404);
        let raw = "POST /token HTTP/1.1\r\nHost: x\r\n\r\n";
        let request = Request::read(&mut raw.as_bytes()).expect("parses");
        assert_eq!(issuer.respond(&request, NOW).status, 405);
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(NOW), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
