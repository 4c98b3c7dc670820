use super::*;

fn parse(namespace: &str, text: &str) -> Result<RegistryHosts> {
    parse_hosts_toml(Path::new("/etc/hosts.d/x/hosts.toml"), text, namespace)
}

#[test]
fn mirrors_keep_file_order_and_capabilities_default_to_all() {
    let hosts = parse(
        "docker.io",
        r#"
[host."https://zz-first.example"]
  capabilities = ["pull"]
[host."http://aa-second.example:5000"]
[host."https://mm-third.example"]
  capabilities = ["pull", "resolve"]
"#,
    )
    .expect("valid");
    let urls: Vec<String> = hosts.mirrors.iter().map(|m| m.url.to_string()).collect();
    assert_eq!(
        urls,
        [
            "https://zz-first.example/",
            "http://aa-second.example:5000/",
            "https://mm-third.example/"
        ]
    );
    assert_eq!(
        hosts.mirrors[0].capabilities,
        Capabilities {
            pull: true,
            resolve: false,
            push: false
        }
    );
    assert_eq!(hosts.mirrors[1].capabilities, Capabilities::ALL);
    assert!(hosts.mirrors[2].capabilities.resolve);
    assert!(!hosts.mirrors[2].capabilities.push);
    assert_eq!(hosts.mirrors[1].authority(), "aa-second.example:5000");
    assert!(hosts.server.is_none());
}

#[test]
fn server_overrides_the_registry_and_takes_the_top_level_settings() {
    let hosts = parse(
        "reg.example",
        r#"
server = "https://backend.example:8443"
capabilities = ["pull", "resolve"]
skip_verify = true
ca = "ca.pem"
[header]
  x-one = "1"
"#,
    )
    .expect("valid");
    let server = hosts.server.expect("server named");
    assert_eq!(server.url.as_str(), "https://backend.example:8443/");
    assert!(!server.capabilities.push);
    assert!(server.skip_verify);
    assert_eq!(server.ca, [PathBuf::from("/etc/hosts.d/x/ca.pem")]);
    assert_eq!(server.headers, [("x-one".to_owned(), "1".to_owned())]);
    assert_eq!(server.api_root(), "https://backend.example:8443/v2");
}

#[test]
fn override_path_makes_the_path_the_api_root() {
    let hosts = parse(
        "docker.io",
        r#"
[host."https://p2p.local/v2/cache"]
  override_path = true
[host."https://plain.local/prefix"]
[host."https://already.local/v2"]
"#,
    )
    .expect("valid");
    assert_eq!(hosts.mirrors[0].api_root(), "https://p2p.local/v2/cache");
    assert_eq!(hosts.mirrors[1].api_root(), "https://plain.local/prefix/v2");
    assert_eq!(hosts.mirrors[2].api_root(), "https://already.local/v2");
}

#[test]
fn headers_take_strings_and_arrays() {
    let hosts = parse(
        "docker.io",
        r#"
[host."https://m.example"]
  [host."https://m.example".header]
    x-b = ["one", "two"]
    x-a = "three"
"#,
    )
    .expect("valid");
    assert_eq!(
        hosts.mirrors[0].headers,
        [
            ("x-b".to_owned(), "one".to_owned()),
            ("x-b".to_owned(), "two".to_owned()),
            ("x-a".to_owned(), "three".to_owned()),
        ]
    );
}

#[test]
fn client_certificates_in_the_three_forms() {
    let hosts = parse(
        "docker.io",
        r#"
[host."https://a.example"]
  client = "both.pem"
[host."https://b.example"]
  client = ["/abs/one.pem", "two.pem"]
[host."https://c.example"]
  client = [["c.crt", "c.key"], ["d.pem", ""]]
"#,
    )
    .expect("valid");
    let dir = Path::new("/etc/hosts.d/x");
    assert_eq!(hosts.mirrors[0].client, [(dir.join("both.pem"), None)]);
    assert_eq!(
        hosts.mirrors[1].client,
        [
            (PathBuf::from("/abs/one.pem"), None),
            (dir.join("two.pem"), None)
        ]
    );
    assert_eq!(
        hosts.mirrors[2].client,
        [
            (dir.join("c.crt"), Some(dir.join("c.key"))),
            (dir.join("d.pem"), None)
        ]
    );
}

#[test]
fn malformed_files_name_the_file_and_line() {
    let err = parse(
        "docker.io",
        "server = \"https://a\"\n\n[host.\"https://m\"\n",
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("/etc/hosts.d/x/hosts.toml"), "{text}");
    assert!(text.contains("line 3"), "{text}");
    let err = parse(
        "docker.io",
        "[host.\"https://m\"]\n  capabilities = [\"pull\", \"fly\"]\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    assert!(err.to_string().contains("\"fly\""), "{err}");
    let err = parse("docker.io", "\n\nskip_verify = \"yes\"\n").unwrap_err();
    assert!(err.to_string().contains("line 3"), "{err}");
    let err = parse("docker.io", "[host.\"ftp://m\"]\n").unwrap_err();
    assert!(err.to_string().contains("only http and https"), "{err}");
    assert!(matches!(err, Error::HostsConfig { .. }));
    assert_eq!(err.kind(), ociref::ErrorKind::Usage);
}

#[test]
fn unknown_keys_are_ignored() {
    let hosts = parse(
        "docker.io",
        "colour = \"blue\"\ndial_timeout = \"1s\"\n[host.\"https://m\"]\n  speed = 9\n",
    )
    .expect("unknown keys do not fail");
    assert_eq!(hosts.mirrors.len(), 1);
}

#[test]
fn a_directory_with_a_port_and_the_default_namespace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        std::fs::create_dir_all(dir.path().join(name)).expect("dir");
        std::fs::write(dir.path().join(name).join("hosts.toml"), text).expect("file");
    };
    write("reg.internal:5000", "[host.\"http://m1:5001\"]\n");
    write("other.internal_5000_", "[host.\"http://m2:5002\"]\n");
    write("_default", "[host.\"https://everything.example\"]\n");
    // An existing directory is the registry's own, even without
    // `hosts.toml` (docker's certificate layout): `_default` does not apply.
    std::fs::create_dir_all(dir.path().join("ghcr.io")).expect("dir");
    let config = HostsConfig::load(dir.path()).expect("loads");
    let mirror = |registry: &str| {
        config
            .for_registry(registry)
            .map(|hosts| hosts.mirrors[0].authority())
    };
    assert_eq!(mirror("reg.internal:5000").as_deref(), Some("m1:5001"));
    assert_eq!(mirror("other.internal:5000").as_deref(), Some("m2:5002"));
    assert_eq!(
        mirror("reg.internal").as_deref(),
        Some("everything.example")
    );
    let ghcr = config.for_registry("ghcr.io").expect("its own directory");
    assert!(ghcr.mirrors.is_empty(), "{ghcr:?}");
    assert_eq!(ghcr.file, dir.path().join("ghcr.io"));
}

#[test]
fn a_malformed_file_fails_the_whole_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("docker.io")).expect("dir");
    let file = dir.path().join("docker.io").join("hosts.toml");
    std::fs::write(&file, "server = ").expect("file");
    let err = HostsConfig::load(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains(&file.display().to_string()),
        "{err}"
    );
}

#[test]
fn debug_output_never_shows_header_values() {
    let hosts = parse(
        "docker.io",
        "[host.\"https://m.example\"]\n  [host.\"https://m.example\".header]\n    authorization = \"Bearer s3cr3t\"\n",
    )
    .expect("valid");
    let text = format!("{hosts:?}");
    assert!(text.contains("authorization"), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");
}

// A CA and a client certificate it signed, with the client's key (P-256),
// made once with openssl:
//   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
//     -keyout ca.key -out ca.crt -days 36500 -subj "/CN=cachectl test CA"
//   openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
//     -keyout client.key -out client.csr -subj "/CN=cachectl test client"
//   printf "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n" > ext.cnf
//   openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key \
//     -CAcreateserial -out client.cert -days 36500 -extfile ext.cnf
const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBjjCCATOgAwIBAgIUZ+/EQ4GfE3VTNqOne9vFxj9TNAEwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQY2FjaGVjdGwgdGVzdCBDQTAgFw0yNjEyMDYyMTU3NTdaGA8y
MTI2MTExMjIxNTc1N1owGzEZMBcGA1UEAwwQY2FjaGVjdGwgdGVzdCBDQTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABMx6phY9ZVs9qnUDvYnmv7PH8BJbhy9lb7oq
EMepPvWtXGUUz9iFsnKapDjDnUAnzNlnb50DDyAEyJW1J3MnwkqjUzBRMB0GA1Ud
DgQWBBRJBdvTCrtLq/FnlFfYAH3+xW+/6DAfBgNVHSMEGDAWgBRJBdvTCrtLq/Fn
lFfYAH3+xW+/6DAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQCY
/RT/S1I88hYeK7xZn3bH/9exkUzdeYdGb2GU5Omv9wIhAJCe2/jZWfg7mLXc1Btd
UGT3Xbunchxu3+ylNmZjxQAc
-----END CERTIFICATE-----
";
const CLIENT_CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBrTCCAVOgAwIBAgIUER74kCLFtw/24+YfDTh5tLj1wvswCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQY2FjaGVjdGwgdGVzdCBDQTAgFw0yNjEyMDYyMjA3NTBaGA8y
MTI2MTExMjIyMDc1MFowHzEdMBsGA1UEAwwUY2FjaGVjdGwgdGVzdCBjbGllbnQw
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATWYfR1ceDjStF6MRDRiWBgylR9Nps2
XDM/23zCjjVvJOq49y04qjPyFXA2TjL1LFA8Ltp3ZMI1byPR3b7sHdVso28wbTAJ
BgNVHRMEAjAAMAsGA1UdDwQEAwIHgDATBgNVHSUEDDAKBggrBgEFBQcDAjAdBgNV
HQ4EFgQUpMRgvqJcnmMwbSlmVqSgGpAW+70wHwYDVR0jBBgwFoAUSQXb0wq7S6vx
Z5RX2AB9/sVvv+gwCgYIKoZIzj0EAwIDSAAwRQIhALuIrtKEPmWNqX1xoEXAL98G
f5IRS2cQQYi07tGsGjElAiAgzu4kNJ7E10mAlSdO8APJBKT4Yh6M+ilj8M/HLNP/
Mw==
-----END CERTIFICATE-----
";
const CLIENT_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg8dxaSZhXoOu7UF42
mt5AFHEXTBBp7FBYpiHbx66O8sWhRANCAATWYfR1ceDjStF6MRDRiWBgylR9Nps2
XDM/23zCjjVvJOq49y04qjPyFXA2TjL1LFA8Ltp3ZMI1byPR3b7sHdVs
-----END PRIVATE KEY-----
";

/// Writes `files` ((path under `root`, content)), creating directories.
fn write_files(root: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(path, text).expect("file");
    }
}

fn client_for(hosts: HostsConfig) -> Result<crate::Client> {
    let config = crate::ClientConfig {
        hosts,
        ..Default::default()
    };
    crate::Client::new(
        config,
        std::sync::Arc::new(crate::credentials::StaticCredentials::new()),
    )
}

#[test]
fn a_certificate_directory_configures_the_registry_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ns = dir.path().join("reg.internal_5000_");
    write_files(
        dir.path(),
        &[
            ("reg.internal_5000_/ca.crt", CA_PEM),
            ("reg.internal_5000_/another.crt", CA_PEM),
            ("reg.internal_5000_/client.cert", CLIENT_CERT_PEM),
            ("reg.internal_5000_/client.key", CLIENT_KEY_PEM),
            ("reg.internal_5000_/both.cert", CLIENT_CERT_PEM),
            ("reg.internal_5000_/notes.txt", "not read"),
            ("reg.internal_5000_/nested.crt/ca.crt", CA_PEM),
            (
                "_default/hosts.toml",
                "[host.\"https://everything.example\"]\n",
            ),
        ],
    );
    let config = HostsConfig::load(dir.path()).expect("loads");
    let hosts = config
        .for_registry("reg.internal:5000")
        .expect("its own directory");
    assert!(hosts.server.is_none());
    assert!(
        hosts.mirrors.is_empty(),
        "_default does not apply: {hosts:?}"
    );
    assert_eq!(hosts.file, ns);
    let settings = &hosts.server_settings;
    assert_eq!(settings.ca, [ns.join("another.crt"), ns.join("ca.crt")]);
    assert_eq!(
        settings.client,
        [
            (ns.join("both.cert"), None),
            (ns.join("client.cert"), Some(ns.join("client.key")))
        ]
    );
    assert_eq!(settings.capabilities, Capabilities::ALL);
    assert!(!settings.skip_verify);
    assert_eq!(
        config.registry_settings("reg.internal:5000"),
        Some(settings)
    );
}

#[test]
fn a_certificate_directory_reaches_the_registrys_tls_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(
        dir.path(),
        &[
            ("reg.example/ca.crt", CA_PEM),
            ("reg.example/client.cert", CLIENT_CERT_PEM),
            ("reg.example/client.key", CLIENT_KEY_PEM),
        ],
    );
    client_for(HostsConfig::load(dir.path()).expect("loads")).expect("valid certificates");
    // The files are read: a broken key or CA fails the client, naming
    // the registry and the file.
    let key = dir.path().join("reg.example/client.key");
    std::fs::write(&key, "not a key").expect("file");
    let err = client_for(HostsConfig::load(dir.path()).expect("loads")).expect_err("broken key");
    let text = err.to_string();
    assert!(text.contains("reg.example"), "{text}");
    assert!(text.contains(&key.display().to_string()), "{text}");
    std::fs::write(&key, CLIENT_KEY_PEM).expect("file");
    std::fs::write(dir.path().join("reg.example/ca.crt"), "not a CA").expect("file");
    let err = client_for(HostsConfig::load(dir.path()).expect("loads")).expect_err("broken CA");
    assert!(err.to_string().contains("reg.example"), "{err}");
}

#[test]
fn a_hosts_toml_with_content_hides_the_certificate_files_beside_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(
        dir.path(),
        &[
            ("with.example/hosts.toml", "[host.\"https://m.example\"]\n"),
            ("with.example/ca.crt", CA_PEM),
            ("empty.example/hosts.toml", ""),
            ("empty.example/ca.crt", CA_PEM),
        ],
    );
    let config = HostsConfig::load(dir.path()).expect("loads");
    let with = config.for_registry("with.example").expect("configured");
    assert_eq!(with.mirrors.len(), 1);
    assert!(with.server_settings.ca.is_empty(), "{with:?}");
    // An empty hosts.toml is as good as none (containerd reads the
    // certificates then).
    let empty = config.for_registry("empty.example").expect("configured");
    assert_eq!(
        empty.server_settings.ca,
        [dir.path().join("empty.example/ca.crt")]
    );
}

#[test]
fn without_a_server_the_top_level_keys_configure_the_registry_itself() {
    let text = r#"
capabilities = ["pull"]
override_path = true
skip_verify = true
ca = "ca.pem"
client = [["c.crt", "c.key"]]
[header]
  x-one = "1"
[host."https://m.example"]
"#;
    for namespace in ["reg.example", DEFAULT_NAMESPACE] {
        let hosts = parse(namespace, text).expect("valid");
        assert!(hosts.server.is_none());
        let settings = &hosts.server_settings;
        let dir = Path::new("/etc/hosts.d/x");
        assert_eq!(settings.ca, [dir.join("ca.pem")]);
        assert_eq!(
            settings.client,
            [(dir.join("c.crt"), Some(dir.join("c.key")))]
        );
        assert!(settings.skip_verify);
        assert_eq!(settings.headers, [("x-one".to_owned(), "1".to_owned())]);
        // As in containerd, the registry itself is asked everything, at
        // its own /v2 root.
        assert_eq!(settings.capabilities, Capabilities::ALL, "{namespace}");
        assert!(!settings.override_path, "{namespace}");
    }
    // `_default`'s settings are those of every registry without its own
    // namespace; a namespace that names a server has none for the registry.
    let mut config = HostsConfig::none();
    config.insert(
        DEFAULT_NAMESPACE,
        parse(DEFAULT_NAMESPACE, text).expect("valid"),
    );
    config.insert(
        "own.example",
        parse("own.example", "server = \"https://backend.example\"\n").expect("valid"),
    );
    let any = config
        .registry_settings("any.example")
        .expect("_default applies");
    assert!(any.skip_verify);
    assert!(config.registry_settings("own.example").is_none());
}

#[test]
fn without_a_server_the_registry_may_resolve() {
    let hosts = parse(
        "reg.example",
        "capabilities = [\"pull\"]\n[host.\"http://127.0.0.1:7001\"]\n  capabilities = [\"pull\"]\n",
    )
    .expect("valid");
    let mut config = HostsConfig::none();
    config.insert("reg.example", hosts);
    let client = client_for(config).expect("client builds");
    let endpoints = client
        .endpoints("reg.example", crate::mirrors::Capability::Resolve)
        .expect("the registry itself may resolve");
    let keys: Vec<&str> = endpoints.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["reg.example"]);
}
