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
    // A docker-style certificate directory: skipped.
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
    assert_eq!(mirror("ghcr.io").as_deref(), Some("everything.example"));
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
