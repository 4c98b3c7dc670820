//! `cargo xtask check-layers`: the one-way layering of the workspace,
//! checked from `cargo metadata` rather than hoped for.
//!
//! ```text
//! ociref <- ocidist <- ocistore <- rootfs <- cachectl
//! ```
//! A library crate may depend on any crate below it, never on one above it.
//! The test-support crate (`cachectl-fixtures`) sits above the libraries and
//! only tools may use it. The tool crates (the CLI, the integration tests,
//! xtask) sit on top; nothing depends on them, and they do not depend on each
//! other.

use crate::cmd::{self, Error};
use serde_json::Value;

/// Every workspace crate and its layer; a crate missing here fails the check
/// so that a new crate is placed on purpose.
const LAYERS: &[(&str, Layer)] = &[
    ("ociref", Layer::Library(0)),
    ("ocidist", Layer::Library(1)),
    ("ocistore", Layer::Library(2)),
    ("rootfs", Layer::Library(3)),
    ("cachectl-fixtures", Layer::Support),
    ("cachectl", Layer::Tool),
    ("cachectl-tests", Layer::Tool),
    ("xtask", Layer::Tool),
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Layer {
    /// A library crate; the number is its height in the stack.
    Library(u8),
    /// Test support above every library; only tools may depend on it.
    Support,
    /// A crate at the top that nothing may depend on.
    Tool,
}

/// One workspace crate and the workspace crates it depends on (any kind).
#[derive(Debug)]
struct Package {
    name: String,
    /// `(dependency, kind)`, kind being `normal`, `dev` or `build`.
    workspace_deps: Vec<(String, String)>,
}

/// Entry point of `cargo xtask check-layers`.
pub(crate) fn run() -> Result<(), Error> {
    let metadata = cmd::output(cmd::cargo().args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
        "--offline",
    ]))
    .or_else(|_| {
        cmd::output(cmd::cargo().args(["metadata", "--format-version", "1", "--no-deps"]))
    })?;
    let packages = parse_metadata(&metadata)?;
    let problems = violations(&packages);
    if problems.is_empty() {
        eprintln!(
            "xtask: layering ok: {} crates, ociref <- ocidist <- ocistore <- rootfs <- tools",
            packages.len()
        );
        return Ok(());
    }
    for problem in &problems {
        eprintln!("xtask: layering: {problem}");
    }
    Err(format!("{} layering violation(s)", problems.len()))
}

fn parse_metadata(json: &str) -> Result<Vec<Package>, Error> {
    let value: Value =
        serde_json::from_str(json).map_err(|err| format!("cargo metadata: bad JSON: {err}"))?;
    let members = value["packages"]
        .as_array()
        .ok_or("cargo metadata: no `packages` array")?;
    let names: Vec<&str> = members.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut packages = Vec::new();
    for member in members {
        let name = member["name"]
            .as_str()
            .ok_or("cargo metadata: package without name")?;
        let deps = member["dependencies"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let workspace_deps = deps
            .iter()
            .filter_map(|dep| {
                let dep_name = dep["name"].as_str()?;
                names.contains(&dep_name).then(|| {
                    let kind = dep["kind"].as_str().unwrap_or("normal").to_owned();
                    (dep_name.to_owned(), kind)
                })
            })
            .collect();
        packages.push(Package {
            name: name.to_owned(),
            workspace_deps,
        });
    }
    Ok(packages)
}

fn layer_of(name: &str) -> Option<Layer> {
    LAYERS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, layer)| *layer)
}

fn violations(packages: &[Package]) -> Vec<String> {
    let mut problems = Vec::new();
    for package in packages {
        let Some(own) = layer_of(&package.name) else {
            problems.push(format!(
                "crate `{}` has no place in the layering: add it to LAYERS in xtask/src/layers.rs",
                package.name
            ));
            continue;
        };
        for (dep, kind) in &package.workspace_deps {
            let allowed = match (own, layer_of(dep)) {
                (_, None) => false,
                (_, Some(Layer::Tool)) => false,
                (Layer::Tool, Some(Layer::Library(_) | Layer::Support)) => true,
                (Layer::Support, Some(Layer::Library(_))) => true,
                (Layer::Support, Some(Layer::Support)) => false,
                (Layer::Library(_), Some(Layer::Support)) => false,
                (Layer::Library(a), Some(Layer::Library(b))) => b < a,
            };
            if !allowed {
                problems.push(format!(
                    "`{}` must not depend on `{dep}` ({kind} dependency): {}",
                    package.name,
                    explain(own, layer_of(dep))
                ));
            }
        }
    }
    problems
}

fn explain(own: Layer, dep: Option<Layer>) -> &'static str {
    match (own, dep) {
        (_, None) => "that crate has no place in the layering",
        (_, Some(Layer::Tool)) => "nothing may depend on a tool crate",
        (Layer::Library(_), Some(Layer::Support)) => "libraries must not depend on test support",
        (Layer::Library(a), Some(Layer::Library(b))) if a == b => "it is a sibling",
        _ => "it sits above it",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, deps: &[&str]) -> Package {
        Package {
            name: name.to_owned(),
            workspace_deps: deps
                .iter()
                .map(|d| ((*d).to_owned(), "normal".to_owned()))
                .collect(),
        }
    }

    fn the_real_stack() -> Vec<Package> {
        vec![
            package("ociref", &[]),
            package("ocidist", &["ociref"]),
            package("ocistore", &["ociref", "ocidist"]),
            package("rootfs", &["ociref", "ocistore"]),
            package("cachectl", &["ociref", "ocidist", "ocistore", "rootfs"]),
            package("cachectl-fixtures", &["ociref", "ocidist"]),
            package("cachectl-tests", &["ocistore", "cachectl-fixtures"]),
            package("xtask", &["ocidist", "cachectl-fixtures"]),
        ]
    }

    #[test]
    fn the_intended_stack_passes() {
        assert_eq!(violations(&the_real_stack()), Vec::<String>::new());
    }

    #[test]
    fn an_upward_dependency_is_refused() {
        let mut stack = the_real_stack();
        stack[0] = package("ociref", &["ocistore"]);
        let problems = violations(&stack);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("`ociref` must not depend on `ocistore`"));
        assert!(problems[0].contains("above"));
    }

    #[test]
    fn depending_on_a_tool_crate_is_refused() {
        let mut stack = the_real_stack();
        stack[3] = package("rootfs", &["cachectl"]);
        stack[7] = package("xtask", &["cachectl-tests"]);
        let problems = violations(&stack);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().all(|p| p.contains("tool crate")));
    }

    #[test]
    fn a_library_may_not_use_test_support() {
        let mut stack = the_real_stack();
        stack[2]
            .workspace_deps
            .push(("cachectl-fixtures".into(), "dev".into()));
        let problems = violations(&stack);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("test support"), "{problems:?}");
    }

    #[test]
    fn a_dev_dependency_counts_too() {
        let mut stack = the_real_stack();
        stack[1]
            .workspace_deps
            .push(("rootfs".into(), "dev".into()));
        let problems = violations(&stack);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("dev dependency"));
    }

    #[test]
    fn an_unplaced_crate_is_refused() {
        let mut stack = the_real_stack();
        stack.push(package("ocicache", &["ociref"]));
        let problems = violations(&stack);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("no place in the layering"));
    }

    #[test]
    fn metadata_of_this_workspace_parses_and_passes() {
        let json =
            cmd::output(cmd::cargo().args(["metadata", "--format-version", "1", "--no-deps"]))
                .expect("cargo metadata runs in the workspace");
        let packages = parse_metadata(&json).expect("metadata parses");
        let names: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
        for (known, _) in LAYERS {
            assert!(names.contains(known), "{known} missing from {names:?}");
        }
        let ocidist = packages
            .iter()
            .find(|p| p.name == "ocidist")
            .expect("ocidist");
        assert!(ocidist.workspace_deps.iter().any(|(d, _)| d == "ociref"));
        assert_eq!(violations(&packages), Vec::<String>::new());
    }
}
