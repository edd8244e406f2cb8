//! The console's users as configured (`console.operators`): the entry `raccordo console user
//! add` prints, the list `raccordo console users` shows, and the checks made where the
//! console starts — hashes weaker than argon2's defaults are refused, and what would
//! surprise an administrator (an entry without a role, a proxy header nobody is believed
//! for) is said loudly.

use argon2::password_hash::PasswordHash;
use secrecy::ExposeSecret;
use serde::Serialize;

use raccordo_core::settings::{ConsoleRole, ConsoleSettings, OperatorSettings};

/// The least argon2 memory cost accepted, in KiB (argon2's default, OWASP's minimum).
pub const MIN_MEMORY_KIB: u32 = 19_456;
/// The least number of passes accepted.
pub const MIN_PASSES: u32 = 2;
/// The most memory one verification may take, in KiB: a hash is a cost paid at every login.
pub const MAX_MEMORY_KIB: u32 = 262_144;
/// The most passes, and lanes, one verification may take.
pub const MAX_PASSES: u32 = 16;
pub const MAX_LANES: u32 = 8;

/// Why the configured users cannot start the console.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("console.operators: the password hash of {user:?} is refused: {reason}")]
    WeakHash { user: String, reason: String },
}

/// Why a user entry cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("a user name has 1 to 64 characters, no control characters and no spaces around")]
    Name,
}

/// What is wrong with an argon2 hash in PHC form, if anything.
pub fn hash_weakness(hash: &str) -> Option<String> {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return Some("not an argon2 hash in PHC form".into());
    };
    if parsed.algorithm.as_str() != "argon2id" {
        return Some(format!("{} instead of argon2id", parsed.algorithm.as_str()));
    }
    let Ok(params) = argon2::Params::try_from(&parsed) else {
        return Some("its parameters do not parse".into());
    };
    let (m, t, p) = (params.m_cost(), params.t_cost(), params.p_cost());
    if m < MIN_MEMORY_KIB || t < MIN_PASSES {
        return Some(format!(
            "m={m}, t={t} is weaker than m={MIN_MEMORY_KIB}, t={MIN_PASSES}: make a new one with `raccordo console user add`"
        ));
    }
    if m > MAX_MEMORY_KIB || t > MAX_PASSES || p > MAX_LANES {
        return Some(format!(
            "m={m}, t={t}, p={p} costs more than m={MAX_MEMORY_KIB}, t={MAX_PASSES}, p={MAX_LANES} at every login"
        ));
    }
    None
}

/// Refuses weak or overly costly hashes; returns the warnings to say loudly at start.
pub fn check(console: &ConsoleSettings) -> Result<Vec<String>, UsersError> {
    let mut warnings = Vec::new();
    for user in &console.operators {
        if let Some(hash) = &user.password_hash
            && let Some(reason) = hash_weakness(hash.expose_secret())
        {
            return Err(UsersError::WeakHash {
                user: user.name.clone(),
                reason,
            });
        }
        if user.role.is_none() {
            warnings.push(format!(
                "console.operators: {:?} has no role, so it is a viewer (no dead letters, no audit, no action); add role = \"operator\" or \"privacy\" to give it more",
                user.name
            ));
        }
    }
    let header = !console.trusted_user_header.trim().is_empty();
    if header && console.trusted_proxies.is_empty() {
        warnings.push(
            "console.trusted_user_header is set but console.trusted_proxies is empty: the header is ignored"
                .into(),
        );
    }
    if !header && !console.trusted_proxies.is_empty() {
        warnings.push(
            "console.trusted_proxies is set but console.trusted_user_header is empty: no proxy header is read"
                .into(),
        );
    }
    Ok(warnings)
}

/// The `console.operators` entry of a user, as one TOML inline table.
pub fn entry(name: &str, role: ConsoleRole, hash: Option<&str>) -> Result<String, EntryError> {
    if !name_ok(name) {
        return Err(EntryError::Name);
    }
    let mut line = format!(
        "{{ name = {}, role = \"{}\"",
        toml_string(name),
        role.as_str()
    );
    if let Some(hash) = hash {
        line.push_str(&format!(", password_hash = {}", toml_string(hash)));
    }
    line.push_str(" }");
    Ok(line)
}

/// What the configuration accepts as a user name.
pub fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.trim() == name
        && name.chars().count() <= 64
        && !name.chars().any(char::is_control)
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One configured user as `raccordo console users` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct UserRow {
    pub name: String,
    /// The effective role.
    pub role: String,
    /// `password`, `proxy` (named by the trusted proxy only) or `password, proxy`.
    pub login: String,
    /// What needs attention, if anything.
    pub note: String,
}

/// The configured users, in configuration order.
pub fn list(console: &ConsoleSettings) -> Vec<UserRow> {
    let proxy = console.proxy_configured();
    console
        .operators
        .iter()
        .map(|u: &OperatorSettings| {
            let mut login = Vec::new();
            if u.password_hash.is_some() {
                login.push("password");
            }
            if proxy && u.role.is_some() {
                login.push("proxy");
            }
            let mut notes = Vec::new();
            if u.role.is_none() {
                notes.push("no role configured: viewer".to_owned());
            }
            if let Some(reason) = u
                .password_hash
                .as_ref()
                .and_then(|h| hash_weakness(h.expose_secret()))
            {
                notes.push(format!("hash refused: {reason}"));
            }
            if login.is_empty() {
                notes.push(
                    "cannot log in: no password, and the trusted proxy names only users with a role"
                        .to_owned(),
                );
            }
            UserRow {
                name: raccordo_core::amqp::dead_letter::printable(&u.name),
                role: u.effective_role().as_str().to_owned(),
                login: if login.is_empty() {
                    "-".to_owned()
                } else {
                    login.join(", ")
                },
                note: notes.join("; "),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, SaltString};

    fn hash_with(m: u32, t: u32, p: u32) -> String {
        let params = argon2::Params::new(m, t, p, None).expect("params");
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");
        argon.hash_password(b"pw", &salt).expect("hash").to_string()
    }

    #[test]
    fn the_default_hash_is_accepted_and_weaker_or_costlier_ones_are_refused() {
        let good = crate::hash_password("una password").expect("hash");
        assert_eq!(hash_weakness(&good), None);
        assert!(hash_weakness(&hash_with(8, 1, 1)).is_some(), "weak memory");
        assert!(
            hash_weakness(&hash_with(19_456, 1, 1)).is_some(),
            "one pass"
        );
        assert!(
            hash_weakness(&hash_with(19_456, 2, 16)).is_some(),
            "16 lanes"
        );
        assert!(hash_weakness("$argon2id$v=19$bad").is_some());
    }

    #[test]
    fn an_entry_is_one_toml_table_with_the_role() {
        let line = entry("m.\"rossi\"", ConsoleRole::Privacy, Some("$argon2id$x")).expect("ok");
        assert_eq!(
            line,
            r#"{ name = "m.\"rossi\"", role = "privacy", password_hash = "$argon2id$x" }"#
        );
        assert!(entry("", ConsoleRole::Viewer, None).is_err());
        assert!(entry("a\nb", ConsoleRole::Viewer, None).is_err());
        assert_eq!(
            entry("tavolo", ConsoleRole::Viewer, None).expect("ok"),
            r#"{ name = "tavolo", role = "viewer" }"#
        );
    }
}
