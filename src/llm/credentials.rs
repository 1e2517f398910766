//! Where the API key comes from, and which endpoints may go without one.

use anyhow::{bail, Result};

use crate::llm::Secret;

/// The API key: `OPENAI_KEY`, `OPENAI_API_KEY`, or either in `./.env.local`.
pub fn api_key() -> Option<Secret> {
    for name in ["OPENAI_KEY", "OPENAI_API_KEY"] {
        if let Ok(v) = std::env::var(name) {
            if !v.trim().is_empty() {
                return Some(Secret::new(v.trim().to_string()));
            }
        }
    }
    // Read, never loaded: the process environment stays as the user set it.
    let entries = dotenvy::from_path_iter(".env.local").ok()?;
    for (key, value) in entries.flatten() {
        if matches!(key.as_str(), "OPENAI_KEY" | "OPENAI_API_KEY") && !value.trim().is_empty() {
            return Some(Secret::new(value.trim().to_string()));
        }
    }
    None
}

/// The key in the environment variable `name`, which `flag` named (`--judge_key_env`);
/// refused when the variable is unset or empty, never read from anywhere else. A value that is
/// no variable's name may be the key itself, pasted by mistake: it is not repeated.
pub fn from_var(name: &str, flag: &str) -> Result<Secret> {
    let is_name = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !is_name {
        bail!(
            "{flag} takes the name of an environment variable (letters, digits and _, such as JUDGE_API_KEY), not the key itself; put the key in that variable (the value given is not shown)"
        );
    }
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim().to_string())),
        _ if shown(name) => bail!(
            "{flag} {name}: {name} is not set in the environment; export {name}=<the API key>, or name another variable"
        ),
        _ => bail!(
            "{flag}: the variable it names is not set in the environment (its name is not shown: with lowercase letters it may be a key pasted by mistake); export VAR=<the API key> and pass {flag} VAR"
        ),
    }
}

/// Whether a variable's name may be repeated in a message: an upper-case name such as
/// `JUDGE_API_KEY`. Many providers' keys are letters, digits and `_` too (`gsk_…`, hex), so a
/// name that could be a key pasted where its variable's name belongs is never echoed.
pub fn shown(name: &str) -> bool {
    name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

pub fn is_loopback(base_url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(base_url) else {
        return false;
    };
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_pasted_for_a_variable_name_is_never_repeated() {
        // Shaped like Groq's and Together's keys: letters, digits and _ only.
        for pasted in [
            "gsk_9fQ2xLrT0abcDEFghiJKLmnoPQRstuVWXyz0123456789abcdEFGHij",
            "4f9a0c1d2e3b4a5968778695a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5",
        ] {
            let err = from_var(pasted, "--judge_key_env").unwrap_err().to_string();
            assert!(!err.contains(pasted), "{err}");
            assert!(err.contains("--judge_key_env"), "{err}");
        }
        let err = from_var("DGEN_UNIT_TEST_UNSET_VAR", "--judge_key_env")
            .unwrap_err()
            .to_string();
        assert!(err.contains("export DGEN_UNIT_TEST_UNSET_VAR="), "{err}");
    }
}
