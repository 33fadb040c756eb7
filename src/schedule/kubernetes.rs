//! Kubernetes CronJob manifests rendered from the policies, for a GitOps
//! repository that Argo CD or Flux applies.
//!
//! Skeleton: the renderer is being built (issue 16).

use super::RenderedFile;
use crate::policy::Policy;

/// What the manifests need besides the policies (the `kubernetes` part of the
/// settings document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The namespace every object is created in.
    pub namespace: String,
    /// The container image that runs `backup`.
    pub image: String,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            namespace: "default".to_owned(),
            image: format!("backup:{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Why manifests cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Unrepresentable(String),
}

/// Every manifest for `policies`, sorted by name.
pub fn render(policies: &[Policy], settings: &Settings) -> Result<Vec<RenderedFile>, Error> {
    let _ = (policies, settings);
    Err(Error::Unrepresentable(
        "the Kubernetes renderer is not built yet".to_owned(),
    ))
}

/// Checks a namespace name: a DNS-1123 label.
pub fn check_namespace(name: &str) -> Result<(), String> {
    let valid = (1..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a Kubernetes namespace name: 1 to 63 lowercase letters, digits or `-`, starting and ending with a letter or digit"
        ))
    }
}
