//! `login` and `logout`: credentials in docker's config file, as `docker
//! login` keeps them (file mode 0600).

use crate::cli::LoginArgs;
use crate::error::CliError;
use crate::output::Output;
use ocidist::credentials::{Locations, Secret, normalize_registry};
use std::io::Read;
use std::path::PathBuf;

fn docker_config() -> Result<PathBuf, CliError> {
    Locations::from_env().docker_config.ok_or_else(|| {
        CliError::Usage("no docker config location: set DOCKER_CONFIG or HOME".into())
    })
}

pub(super) fn login(args: &LoginArgs, out: Output) -> Result<(), CliError> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .map_err(|source| CliError::Io {
            what: "reading the password from standard input".into(),
            source,
        })?;
    let password = password.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(CliError::Usage(
            "the password on standard input is empty".into(),
        ));
    }
    let registry = normalize_registry(&args.registry);
    let path = docker_config()?;
    ocidist::credentials::store_basic(&path, &registry, &args.username, &Secret::new(password))?;
    out.result(
        &serde_json::json!({"registry": registry, "config": path.display().to_string()}),
        || format!("credentials for {registry} stored in {}", path.display()),
    );
    Ok(())
}

pub(super) fn logout(registry: &str, out: Output) -> Result<(), CliError> {
    let registry = normalize_registry(registry);
    let path = docker_config()?;
    let removed = ocidist::credentials::remove(&path, &registry)?;
    out.result(
        &serde_json::json!({"registry": registry, "removed": removed}),
        || {
            if removed {
                format!("credentials for {registry} removed from {}", path.display())
            } else {
                format!("no credentials for {registry} in {}", path.display())
            }
        },
    );
    Ok(())
}
