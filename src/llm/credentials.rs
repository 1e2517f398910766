//! Where the API key comes from, and which endpoints may go without one.

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
