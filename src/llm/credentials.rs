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
        _ => bail!(
            "{flag} {name}: {name} is not set in the environment; export {name}=<the API key>, or name another variable"
        ),
    }
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
