//! `login` and `logout`: credentials in docker's config file (or
//! `--authfile`), as `docker login` keeps them (file mode 0600), checked at
//! the registry before they are stored.

use super::runtime;
use crate::cli::{Global, LoginArgs};
use crate::error::CliError;
use crate::output::Output;
use crate::password::read_password;
use crate::settings::Network;
use ocidist::credentials::{Credential, Locations, StaticCredentials, normalize_registry};
use std::path::PathBuf;
use std::sync::Arc;

/// The credentials file `login` and `logout` write: `--authfile` (or the
/// settings file's `authfile`), else docker's config.json.
fn credentials_file(network: &Network) -> Result<PathBuf, CliError> {
    if let Some(path) = &network.authfile {
        return Ok(path.clone());
    }
    Locations::from_env().docker_config.ok_or_else(|| {
        CliError::Usage("no docker config location: set DOCKER_CONFIG or HOME".into())
    })
}

/// Checks the credentials at the registry (`GET /v2/` with them, through a
/// token challenge), then stores them; a refusal stores nothing.
pub(super) fn login(args: &LoginArgs, global: &Global, out: Output) -> Result<(), CliError> {
    let password = read_password("Password: ", "login --password-stdin")?;
    let registry = normalize_registry(&args.registry);
    let network = Network::from_global(global)?;
    let path = credentials_file(&network)?;
    let config = network.client_config()?;
    let client = ocidist::Client::new(config, Arc::new(StaticCredentials::new()))?;
    let credential = Credential::basic(args.username.clone(), password.clone());
    let checked = runtime()?.block_on(client.check_credential(&registry, &credential))?;
    if !checked {
        out.note(&format!(
            "warning: {registry} asks for no credentials, so they could not be checked"
        ));
    }
    ocidist::credentials::store_basic(&path, &registry, &args.username, &password)?;
    out.result(
        &serde_json::json!({
            "registry": registry,
            "config": path.display().to_string(),
            "checked": checked,
        }),
        || {
            format!(
                "login succeeded: credentials for {registry} stored in {}",
                path.display()
            )
        },
    );
    Ok(())
}

pub(super) fn logout(registry: &str, global: &Global, out: Output) -> Result<(), CliError> {
    let registry = normalize_registry(registry);
    let path = credentials_file(&Network::from_global(global)?)?;
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
