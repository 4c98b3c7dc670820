//! Where registry credentials come from: config files, helpers, precedence.
//!
//! Paths and the helper search path are injected; the process environment is
//! never changed.

use ocidist::Error;
use ocidist::credentials::{
    Chain, ContainersAuth, Credential, CredentialSource, DockerConfig, Locations, Secret,
    StaticCredentials, normalize_registry, remove, source_for, source_skipping_broken, store_basic,
};
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Serializes writing helper scripts and running them: executing a file that
/// another thread's fork still holds open for writing fails with ETXTBSY.
static EXEC: Mutex<()> = Mutex::new(());

fn exec_lock() -> std::sync::MutexGuard<'static, ()> {
    EXEC.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("test paths have a parent"))
        .expect("create parent");
    std::fs::write(path, text).expect("write test file");
}

/// Writes `dir/config.json`.
fn config_file(dir: &Path, json: &str) -> PathBuf {
    let path = dir.join("config.json");
    write(&path, json);
    path
}

/// Writes an executable `dir/docker-credential-<name>` shell script.
fn helper_script(dir: &Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let _guard = exec_lock();
    let path = dir.join(format!("docker-credential-{name}"));
    write(&path, &format!("#!/bin/sh\n{body}\n"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Loads `dir/config.json` (written from `json`) with helpers taken from `dir`.
fn docker(dir: &Path, json: &str) -> DockerConfig {
    DockerConfig::load(&config_file(dir, json))
        .expect("valid config")
        .with_helper_path(vec![dir.to_owned()])
}

fn ask(source: &dyn CredentialSource, registry: &str) -> Result<Option<Credential>, Error> {
    let _guard = exec_lock();
    source.credential(registry)
}

fn found(source: &dyn CredentialSource, registry: &str) -> Option<Credential> {
    ask(source, registry).expect("lookup succeeds")
}

fn basic(username: &str, password: &str) -> Option<Credential> {
    Some(Credential::basic(username, password))
}

fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

// --- docker config.json `auths` ---

#[test]
fn auth_field_decodes_to_basic() {
    let dir = tempdir();
    let json = format!(
        r#"{{"auths": {{"ghcr.io": {{"auth": "{}"}}}}}}"#,
        b64("me:pa:ss")
    );
    let config = docker(dir.path(), &json);
    assert_eq!(found(&config, "ghcr.io"), basic("me", "pa:ss"));
    assert_eq!(found(&config, "quay.io"), None);
}

#[test]
fn username_and_password_fields() {
    let dir = tempdir();
    let json = r#"{"auths": {"quay.io": {"username": "robot", "password": "pw"}}}"#;
    assert_eq!(
        found(&docker(dir.path(), json), "quay.io"),
        basic("robot", "pw")
    );
}

#[test]
fn identitytoken_and_registrytoken_entries() {
    let dir = tempdir();
    let json = r#"{"auths": {
        "a.example": {"auth": "dXNlcjo=", "identitytoken": "refresh-me"},
        "b.example": {"registrytoken": "bearer-me"}
    }}"#;
    let config = docker(dir.path(), json);
    assert_eq!(
        found(&config, "a.example"),
        Some(Credential::IdentityToken(Secret::new("refresh-me")))
    );
    assert_eq!(
        found(&config, "b.example"),
        Some(Credential::RegistryToken(Secret::new("bearer-me")))
    );
}

#[test]
fn empty_entries_have_no_credential() {
    let dir = tempdir();
    let json = r#"{"auths": {"ghcr.io": {}}, "unknown": [1, 2]}"#;
    assert_eq!(found(&docker(dir.path(), json), "ghcr.io"), None);
}

#[test]
fn docker_hub_key_answers_every_hub_name() {
    let dir = tempdir();
    let json = format!(
        r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{}"}}}}}}"#,
        b64("hubuser:hubpass")
    );
    let config = docker(dir.path(), &json);
    for name in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
        assert_eq!(found(&config, name), basic("hubuser", "hubpass"), "{name}");
    }
    assert_eq!(found(&config, "ghcr.io"), None);
}

#[test]
fn url_keys_are_normalized_to_host_and_port() {
    let dir = tempdir();
    let json = r#"{"auths": {
        "https://Registry.Example:5000/v2/": {"username": "a", "password": "1"},
        "http://plain.example/some/path": {"username": "b", "password": "2"}
    }}"#;
    let config = docker(dir.path(), json);
    assert_eq!(found(&config, "registry.example:5000"), basic("a", "1"));
    assert_eq!(found(&config, "registry.example"), None);
    assert_eq!(found(&config, "plain.example"), basic("b", "2"));
    assert_eq!(normalize_registry("https://host:5000/v2/"), "host:5000");
}

#[test]
fn namespace_scoped_keys_are_not_used_for_the_whole_registry() {
    let dir = tempdir();
    let json = r#"{"auths": {"quay.io/org": {"username": "a", "password": "1"}}}"#;
    let path = dir.path().join("auth.json");
    write(&path, json);
    let auth = ContainersAuth::load(&[path]).expect("valid file");
    assert_eq!(found(&auth, "quay.io"), None);
}

#[test]
fn absent_and_empty_files_have_no_credentials() {
    let dir = tempdir();
    let absent = DockerConfig::load(&dir.path().join("nope.json")).expect("absent is fine");
    assert_eq!(found(&absent, "ghcr.io"), None);
    let empty = docker(dir.path(), "  \n");
    assert_eq!(found(&empty, "ghcr.io"), None);
}

#[test]
fn malformed_json_names_the_file_without_echoing_content() {
    let dir = tempdir();
    let path = config_file(dir.path(), r#"{"auths": "hunter2-secret"}"#);
    let err = DockerConfig::load(&path).expect_err("malformed file");
    let Error::CredentialFile { path: named, .. } = &err else {
        panic!("expected CredentialFile, got {err:?}");
    };
    assert_eq!(named, &path);
    let message = err.to_string();
    assert!(message.contains("config.json"), "{message}");
    assert!(message.contains("line 1"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");

    let truncated = config_file(dir.path(), r#"{"auths": {"#);
    let err = DockerConfig::load(&truncated).expect_err("truncated file");
    assert!(err.to_string().contains("not valid JSON"), "{err}");
}

#[test]
fn bad_auth_field_is_a_file_error() {
    let dir = tempdir();
    let path = config_file(dir.path(), r#"{"auths": {"ghcr.io": {"auth": "%%%"}}}"#);
    let err = DockerConfig::load(&path).expect_err("bad base64");
    assert!(matches!(err, Error::CredentialFile { .. }), "{err:?}");
    assert!(err.to_string().contains("ghcr.io"), "{err}");

    let no_colon = format!(
        r#"{{"auths": {{"ghcr.io": {{"auth": "{}"}}}}}}"#,
        b64("secretonly")
    );
    let err = DockerConfig::load(&config_file(dir.path(), &no_colon)).expect_err("no colon");
    assert!(err.to_string().contains("username:password"), "{err}");
    assert!(!err.to_string().contains("secretonly"), "{err}");
}

// --- credential helpers ---

const ECHO_HELPER: &str = r#"url=$(cat)
printf '%s' "$url" > "$(dirname "$0")/asked"
printf '{"ServerURL":"%s","Username":"helper-user","Secret":"helper-pass"}' "$url""#;

#[test]
fn cred_helper_is_run_with_the_server_url() {
    let dir = tempdir();
    helper_script(dir.path(), "test", ECHO_HELPER);
    let json = r#"{"credHelpers": {"ghcr.io": "test", "docker.io": "test"}}"#;
    let config = docker(dir.path(), json);
    let asked = || std::fs::read_to_string(dir.path().join("asked")).expect("helper ran");

    assert_eq!(
        found(&config, "ghcr.io"),
        basic("helper-user", "helper-pass")
    );
    assert_eq!(asked(), "ghcr.io");
    assert_eq!(
        found(&config, "registry-1.docker.io"),
        basic("helper-user", "helper-pass")
    );
    assert_eq!(asked(), "https://index.docker.io/v1/");
    assert_eq!(found(&config, "quay.io"), None);
}

#[test]
fn helper_runs_again_on_every_call_so_rotated_passwords_are_seen() {
    let dir = tempdir();
    let body = r#"dir=$(dirname "$0")
n=$(cat "$dir/counter" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "$dir/counter"
printf '{"Username":"AWS","Secret":"pass-%s"}' "$n""#;
    helper_script(dir.path(), "ecr", body);
    let config = docker(dir.path(), r#"{"credsStore": "ecr"}"#);
    let first = found(&config, "ecr.example");
    let second = found(&config, "ecr.example");
    assert_eq!(first, basic("AWS", "pass-1"));
    assert_eq!(second, basic("AWS", "pass-2"));
}

#[test]
fn helper_token_username_means_identity_token() {
    let dir = tempdir();
    let body = r#"cat > /dev/null
printf '{"ServerURL":"x","Username":"<token>","Secret":"refresh"}'"#;
    helper_script(dir.path(), "test", body);
    let config = docker(dir.path(), r#"{"credsStore": "test"}"#);
    assert_eq!(
        found(&config, "acr.example"),
        Some(Credential::IdentityToken(Secret::new("refresh")))
    );
}

#[test]
fn helper_not_found_means_none_and_falls_through() {
    let dir = tempdir();
    let body = "echo 'credentials not found in native keychain'\nexit 1";
    helper_script(dir.path(), "empty", body);
    let json = r#"{"credHelpers": {"ghcr.io": "empty", "quay.io": "empty"},
        "auths": {"quay.io": {"username": "from", "password": "auths"}}}"#;
    let config = docker(dir.path(), json);
    assert_eq!(found(&config, "ghcr.io"), None);
    assert_eq!(found(&config, "quay.io"), basic("from", "auths"));
}

#[test]
fn helper_failure_reports_stderr_but_never_stdout() {
    let dir = tempdir();
    let body = r#"echo '{"Secret":"stdout-secret"}'
echo 'keychain is locked' >&2
exit 3"#;
    helper_script(dir.path(), "broken", body);
    let config = docker(dir.path(), r#"{"credsStore": "broken"}"#);
    let err = ask(&config, "ghcr.io").expect_err("helper failed");
    let Error::CredentialHelper {
        helper, registry, ..
    } = &err
    else {
        panic!("expected CredentialHelper, got {err:?}");
    };
    assert_eq!((helper.as_str(), registry.as_str()), ("broken", "ghcr.io"));
    let message = err.to_string();
    assert!(message.contains("keychain is locked"), "{message}");
    assert!(!message.contains("stdout-secret"), "{message}");
}

#[test]
fn helper_printing_garbage_is_an_error_without_the_output() {
    let dir = tempdir();
    helper_script(dir.path(), "garbage", "echo 'Secret: garbage-secret'");
    let config = docker(dir.path(), r#"{"credsStore": "garbage"}"#);
    let err = ask(&config, "ghcr.io").expect_err("invalid output");
    assert!(matches!(err, Error::CredentialHelper { .. }), "{err:?}");
    assert!(!err.to_string().contains("garbage-secret"), "{err}");
}

#[test]
fn missing_helper_is_a_clear_error() {
    let dir = tempdir();
    let config = docker(dir.path(), r#"{"credHelpers": {"ghcr.io": "absent"}}"#);
    let err = ask(&config, "ghcr.io").expect_err("no such helper");
    assert!(matches!(err, Error::CredentialHelper { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("docker-credential-absent"), "{message}");
    assert!(message.contains("not found on PATH"), "{message}");
}

#[test]
fn non_executable_helper_and_path_names_are_not_run() {
    let dir = tempdir();
    write(
        &dir.path().join("docker-credential-plain"),
        "#!/bin/sh\necho '{}'\n",
    );
    let json = r#"{"credHelpers": {"a.example": "plain", "b.example": "../x"}}"#;
    let config = docker(dir.path(), json);
    let err = ask(&config, "a.example").expect_err("not executable");
    assert!(err.to_string().contains("not found on PATH"), "{err}");
    let err = ask(&config, "b.example").expect_err("path in helper name");
    assert!(err.to_string().contains("invalid helper name"), "{err}");
}

// --- precedence ---

#[test]
fn docker_precedence_is_cred_helpers_then_auths_then_creds_store() {
    let dir = tempdir();
    let body = r#"url=$(cat)
printf '{"Username":"%s","Secret":"s"}' "$(basename "$0")""#;
    helper_script(dir.path(), "specific", body);
    helper_script(dir.path(), "store", body);
    let json = r#"{
        "credHelpers": {"one.example": "specific"},
        "auths": {
            "one.example": {"username": "auths", "password": "p"},
            "two.example": {"username": "auths", "password": "p"}
        },
        "credsStore": "store"
    }"#;
    let config = docker(dir.path(), json);
    assert_eq!(
        found(&config, "one.example"),
        basic("docker-credential-specific", "s")
    );
    assert_eq!(found(&config, "two.example"), basic("auths", "p"));
    assert_eq!(
        found(&config, "three.example"),
        basic("docker-credential-store", "s")
    );
}

#[test]
fn containers_auth_files_are_asked_in_order() {
    let dir = tempdir();
    let first = dir.path().join("first.json");
    let second = dir.path().join("second.json");
    write(
        &first,
        r#"{"auths": {"quay.io": {"username": "first", "password": "1"}}}"#,
    );
    let second_json = r#"{"auths": {
        "quay.io": {"username": "second", "password": "2"},
        "ghcr.io": {"username": "second", "password": "2"}
    }}"#;
    write(&second, second_json);
    let missing = dir.path().join("missing.json");
    let auth = ContainersAuth::load(&[missing, first, second]).expect("valid files");
    assert_eq!(found(&auth, "quay.io"), basic("first", "1"));
    assert_eq!(found(&auth, "ghcr.io"), basic("second", "2"));
    assert_eq!(found(&auth, "docker.io"), None);
}

/// Locations from a fake environment, with every variable pointing into `root`.
fn fake_env(root: &Path, vars: &[(&str, &str)]) -> Locations {
    let vars: HashMap<String, OsString> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), root.join(v).into_os_string()))
        .collect();
    Locations::from_vars(|name| vars.get(name).cloned())
}

#[test]
fn locations_follow_the_environment() {
    let root = Path::new("/r");
    let all = fake_env(
        root,
        &[
            ("HOME", "home"),
            ("DOCKER_CONFIG", "dc"),
            ("REGISTRY_AUTH_FILE", "raf.json"),
            ("XDG_RUNTIME_DIR", "run"),
            ("XDG_CONFIG_HOME", "cfg"),
            ("PATH", "bin"),
        ],
    );
    assert_eq!(all.docker_config, Some(root.join("dc/config.json")));
    assert_eq!(
        all.containers_auth,
        [
            root.join("raf.json"),
            root.join("run/containers/auth.json"),
            root.join("cfg/containers/auth.json")
        ]
    );
    assert_eq!(all.helper_path, [root.join("bin")]);

    let home_only = fake_env(root, &[("HOME", "home")]);
    assert_eq!(
        home_only.docker_config,
        Some(root.join("home/.docker/config.json"))
    );
    assert_eq!(
        home_only.containers_auth,
        [root.join("home/.config/containers/auth.json")]
    );

    let nothing = Locations::from_vars(|_| None);
    assert_eq!(nothing.docker_config, None);
    assert!(nothing.containers_auth.is_empty());
}

#[test]
fn default_chain_precedence_explicit_then_docker_then_containers() {
    let dir = tempdir();
    let root = dir.path();
    let entry = |user: &str| format!(r#"{{"username": "{user}", "password": "p"}}"#);
    let docker_json = format!(
        r#"{{"auths": {{"a.example": {d}, "b.example": {d}}}}}"#,
        d = entry("docker")
    );
    write(&root.join("home/.docker/config.json"), &docker_json);
    let containers_json = format!(
        r#"{{"auths": {{"a.example": {c}, "b.example": {c}, "c.example": {c}}}}}"#,
        c = entry("containers")
    );
    write(&root.join("run/containers/auth.json"), &containers_json);
    let locations = fake_env(root, &[("HOME", "home"), ("XDG_RUNTIME_DIR", "run")]);
    let explicit = StaticCredentials::new().with("a.example", Credential::basic("explicit", "p"));
    let chain = source_for(explicit, &locations).expect("valid files");

    assert_eq!(found(&chain, "a.example"), basic("explicit", "p"));
    assert_eq!(found(&chain, "b.example"), basic("docker", "p"));
    assert_eq!(found(&chain, "c.example"), basic("containers", "p"));
    assert_eq!(found(&chain, "d.example"), None);
}

#[test]
fn default_chain_reports_malformed_files() {
    let dir = tempdir();
    write(&dir.path().join("run/containers/auth.json"), "{not json");
    let locations = fake_env(dir.path(), &[("XDG_RUNTIME_DIR", "run")]);
    let err = source_for(StaticCredentials::new(), &locations).expect_err("malformed");
    assert!(err.to_string().contains("auth.json"), "{err}");
}

#[test]
fn the_lenient_chain_skips_malformed_files_and_says_which() {
    let dir = tempdir();
    let root = dir.path();
    let secret = r#"{"username": "docker", "password": "hunter2"}"#;
    write(
        &root.join("home/.docker/config.json"),
        &format!("{{\n  \"auths\": {{\"a.example\": {secret}\n  oops\n}}\n"),
    );
    write(&root.join("run/containers/auth.json"), "{\"auths\": [");
    write(
        &root.join("config/containers/auth.json"),
        r#"{"auths": {"b.example": {"username": "containers", "password": "p"}}}"#,
    );
    let locations = fake_env(
        root,
        &[
            ("HOME", "home"),
            ("XDG_RUNTIME_DIR", "run"),
            ("XDG_CONFIG_HOME", "config"),
        ],
    );
    let (chain, broken) = source_skipping_broken(StaticCredentials::new(), &locations);
    assert_eq!(found(&chain, "b.example"), basic("containers", "p"));
    assert_eq!(found(&chain, "a.example"), None);
    let texts: Vec<String> = broken.iter().map(ToString::to_string).collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[0].contains("config.json") && texts[0].contains("line 3"),
        "{texts:?}"
    );
    assert!(
        texts[1].contains("run/containers/auth.json") && texts[1].contains("line 1"),
        "{texts:?}"
    );
    for text in &texts {
        assert!(
            !text.contains("hunter2") && !text.contains("oops"),
            "{text}"
        );
    }
    assert!(
        broken
            .iter()
            .all(|err| matches!(err, Error::CredentialFile { .. }))
    );
}

#[test]
fn chain_stops_at_the_first_error() {
    let dir = tempdir();
    let broken = docker(dir.path(), r#"{"credsStore": "absent"}"#);
    let later = StaticCredentials::new().with("ghcr.io", Credential::basic("later", "p"));
    let chain = Chain::new().with(broken).with(later);
    assert!(ask(&chain, "ghcr.io").is_err());
}

// --- secrets stay secret ---

#[test]
fn debug_and_display_never_show_secrets() {
    let secret = Secret::new("hunter2");
    assert_eq!(format!("{secret:?}"), "<redacted>");
    assert_eq!(format!("{secret}"), "<redacted>");
    assert_eq!(secret.expose(), "hunter2");

    let credentials = [
        Credential::basic("me", "hunter2"),
        Credential::IdentityToken(Secret::new("hunter2")),
        Credential::RegistryToken(Secret::new("hunter2")),
    ];
    for credential in &credentials {
        let debug = format!("{credential:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    let dir = tempdir();
    let json = format!(
        r#"{{"auths": {{"ghcr.io": {{"auth": "{}"}}}}}}"#,
        b64("me:hunter2")
    );
    let config = docker(dir.path(), &json);
    let explicit = StaticCredentials::new().with("ghcr.io", Credential::basic("me", "hunter2"));
    let chain = Chain::new().with(explicit).with(config);
    let debug = format!("{chain:?}");
    assert!(debug.contains("ghcr.io"), "{debug}");
    assert!(!debug.contains("hunter2"), "{debug}");
}

// --- login / logout ---

#[test]
fn store_and_remove_round_trip_keeps_other_keys() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempdir();
    let original = r#"{
        "auths": {"other.example": {"auth": "b3RoZXI6cA=="}, "index.docker.io": {}},
        "credHelpers": {"ecr.example": "ecr-login"},
        "psFormat": "table {{.ID}}",
        "plugins": {"x": {"y": 1}}
    }"#;
    let path = config_file(dir.path(), original);

    store_basic(&path, "docker.io", "hubuser", &Secret::new("hubpass")).expect("store");
    store_basic(&path, "ghcr.io", "me", &Secret::new("pw")).expect("store");

    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    assert_eq!(written["psFormat"], "table {{.ID}}");
    assert_eq!(written["plugins"]["x"]["y"], 1);
    assert_eq!(written["credHelpers"]["ecr.example"], "ecr-login");
    let hub_auth = b64("hubuser:hubpass");
    assert_eq!(
        written["auths"]["https://index.docker.io/v1/"]["auth"],
        *hub_auth
    );
    assert!(
        written["auths"].get("index.docker.io").is_none(),
        "alias replaced"
    );
    assert_eq!(written["auths"]["ghcr.io"]["auth"], *b64("me:pw"));

    let config = DockerConfig::load(&path).expect("reload");
    assert_eq!(
        found(&config, "registry-1.docker.io"),
        basic("hubuser", "hubpass")
    );
    assert_eq!(found(&config, "other.example"), basic("other", "p"));

    assert!(remove(&path, "docker.io").expect("remove"));
    assert!(!remove(&path, "docker.io").expect("second remove"));
    let config = DockerConfig::load(&path).expect("reload");
    assert_eq!(found(&config, "docker.io"), None);
    assert_eq!(found(&config, "ghcr.io"), basic("me", "pw"));
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(
        text.contains("psFormat") && text.contains("ecr-login"),
        "{text}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers, ["config.json"], "no temporary files left");
}

#[test]
fn store_creates_a_missing_file_and_remove_leaves_absent_files_alone() {
    let dir = tempdir();
    let path = dir.path().join("new/.docker/config.json");
    assert!(!remove(&path, "ghcr.io").expect("nothing to remove"));
    assert!(!path.exists());
    store_basic(&path, "https://ghcr.io/v1/", "me", &Secret::new("pw")).expect("store");
    let config = DockerConfig::load(&path).expect("load");
    assert_eq!(found(&config, "ghcr.io"), basic("me", "pw"));
}

#[test]
fn store_refuses_malformed_files_and_colon_usernames() {
    let dir = tempdir();
    let path = config_file(dir.path(), "[1, 2]");
    let err = store_basic(&path, "ghcr.io", "me", &Secret::new("pw")).expect_err("not an object");
    assert!(matches!(err, Error::CredentialFile { .. }), "{err:?}");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "[1, 2]");

    let path = config_file(dir.path(), "{}");
    let err = store_basic(&path, "ghcr.io", "a:b", &Secret::new("pw")).expect_err("colon");
    assert!(err.to_string().contains("':'"), "{err}");
}
