//! Secrets from the command line: `--creds USER[:PASSWORD]`, and reading a
//! password from a terminal (without echo) or from standard input.

use crate::error::CliError;
use ocidist::credentials::Secret;
use std::io::{BufRead, IsTerminal, Read};

/// `--creds USER[:PASSWORD]`. `Debug` never shows the password.
#[derive(Clone)]
pub(crate) struct Creds {
    /// The user name.
    pub(crate) username: String,
    /// The password, when given after the first `:`.
    pub(crate) password: Option<Secret>,
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Creds")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Parses `USER[:PASSWORD]` (the password may hold `:`).
pub(crate) fn parse_creds(text: &str) -> Result<Creds, String> {
    let (username, password) = match text.split_once(':') {
        Some((user, password)) => (user, Some(Secret::new(password))),
        None => (text, None),
    };
    if username.is_empty() {
        return Err("the user name is empty (expected USER[:PASSWORD])".into());
    }
    Ok(Creds {
        username: username.to_owned(),
        password,
    })
}

impl Creds {
    /// The credential, asking for the password when none was given: on a
    /// terminal, a prompt without echo; otherwise standard input.
    pub(crate) fn credential(&self) -> Result<ocidist::credentials::Credential, CliError> {
        let password = match &self.password {
            Some(password) => password.clone(),
            None => read_password(
                &format!("Password for {}: ", self.username),
                "--creds USER without a password",
            )?,
        };
        Ok(ocidist::credentials::Credential::basic(
            self.username.clone(),
            password,
        ))
    }
}

/// A password: typed on the terminal after `prompt` (echo off) when
/// standard input is one, else all of standard input (one trailing newline
/// removed). Empty is a usage error saying what asked for it (`why`).
pub(crate) fn read_password(prompt: &str, why: &str) -> Result<Secret, CliError> {
    let stdin = std::io::stdin();
    let mut password = String::new();
    let read = if stdin.is_terminal() {
        eprint!("{prompt}");
        let line = without_echo(|| stdin.lock().read_line(&mut password));
        eprintln!();
        line.map(|_| ())
    } else {
        stdin.lock().read_to_string(&mut password).map(|_| ())
    };
    read.map_err(|source| CliError::Io {
        what: "reading the password from standard input".into(),
        source,
    })?;
    let password = password.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(CliError::Usage(format!(
            "{why}: the password read from standard input is empty (pipe it there, \
             or type it on a terminal)"
        )));
    }
    Ok(Secret::new(password))
}

/// Runs `f` with the terminal's echo off, restoring it after.
fn without_echo<T>(f: impl FnOnce() -> T) -> T {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let Ok(saved) = tcgetattr(&stdin) else {
        return f();
    };
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    let _ = tcsetattr(&stdin, OptionalActions::Now, &quiet);
    let result = f();
    let _ = tcsetattr(&stdin, OptionalActions::Now, &saved);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creds_split_at_the_first_colon_and_never_print_the_password() {
        let creds = parse_creds("me:pa:ss").expect("valid");
        assert_eq!(creds.username, "me");
        assert_eq!(creds.password.as_ref().map(Secret::expose), Some("pa:ss"));
        assert!(!format!("{creds:?}").contains("pa:ss"));
        let creds = parse_creds("me").expect("valid");
        assert!(creds.password.is_none());
        let creds = parse_creds("me:").expect("valid");
        assert_eq!(creds.password.as_ref().map(Secret::expose), Some(""));
        assert!(parse_creds(":secret").is_err());
    }
}
