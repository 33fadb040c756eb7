//! Where backups are stored: one trait, one module per kind of destination.
//!
//! A [`Destination`] stores named objects under a folder (or prefix) per
//! policy. Data is written through an [`Upload`] that is invisible until
//! [`Upload::commit`]; sidecars are written whole and atomically. Every write
//! is create-only: a name that is taken is never replaced (the write fails
//! with [`Error::Exists`]), so no backup, copy or sidecar can overwrite
//! another. A destination is named by [`describe`], which is unique per place
//! (an S3 location includes its endpoint), so two stores are never mistaken
//! for one. This module knows nothing about backups' meaning: the engine and
//! the inventory decide names and order (data first, sidecar last).

pub mod local;
pub mod s3;

use std::io::{Read, Write};

use crate::policy::spec::DestinationSpec;

/// What went wrong at a destination. Messages name the place, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} `{location}`: {source}")]
    Io {
        action: &'static str,
        location: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{location}` holds {actual} bytes where {expected} were written")]
    SizeMismatch {
        location: String,
        expected: u64,
        actual: u64,
    },
    #[error("writing failed: {0}")]
    Write(#[source] std::io::Error),
    #[error("`{location}` already exists; it is left as it is")]
    Exists { location: String },
    #[error("the backup id could not be claimed here: {0}")]
    Claim(String),
    #[error("{action} `{location}`: {message}")]
    S3 {
        action: &'static str,
        location: String,
        message: String,
    },
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        location: impl std::fmt::Display,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let location = location.to_string();
        move |source| Error::Io {
            action,
            location,
            source,
        }
    }
}

/// One object in a policy's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    /// When it was last written, where the destination says.
    pub modified: Option<chrono::DateTime<chrono::Utc>>,
    /// A tag that changes whenever the content does (S3's ETag), where the
    /// listing gives one.
    pub tag: Option<String>,
    /// What it is when it is not a plain file (`a symbolic link`, `a
    /// folder`, …): never read, never cleaned up, reported.
    pub irregular: Option<&'static str>,
}

/// A place that stores backups.
pub trait Destination: Send + Sync {
    /// Where it is, as [`describe`] names it: `/var/backups`,
    /// `s3://bucket/prefix/` or `s3:https://host/bucket/prefix/`.
    fn location(&self) -> String;
    /// Starts writing the data object `name` of `policy`. Nothing is visible
    /// under `name` until the upload is committed, and the commit fails with
    /// [`Error::Exists`] if the name is taken by then.
    fn begin(&self, policy: &str, name: &str) -> Result<Box<dyn Upload>, Error>;
    /// Writes a small object whole and atomically (the sidecar), create-only:
    /// [`Error::Exists`] when `name` is taken by other content. The same
    /// bytes already there count as written (a retried write).
    fn put(&self, policy: &str, name: &str, bytes: &[u8]) -> Result<(), Error>;
    /// The objects of `policy`, in no particular order. A policy with no folder yet has none.
    /// `policy` may name a sub-folder of a policy's folder (`app/wal`, see
    /// [`crate::inventory::names::sub_folder`]): it is listed on its own, and
    /// the policy's listing skips it without reading through it (locally it
    /// is one entry, a folder; S3 starts the listing again after its keys).
    fn list(&self, policy: &str) -> Result<Vec<Entry>, Error>;
    /// The objects of `policy` whose names start with `prefix`. Stores that
    /// can list by prefix do so without reading the whole folder.
    fn list_prefixed(&self, policy: &str, prefix: &str) -> Result<Vec<Entry>, Error> {
        let mut entries = self.list(policy)?;
        entries.retain(|entry| entry.name.starts_with(prefix));
        Ok(entries)
    }
    /// One object (or entry of another kind) of `policy`, if it exists.
    fn stat(&self, policy: &str, name: &str) -> Result<Option<Entry>, Error> {
        Ok(self
            .list_prefixed(policy, name)?
            .into_iter()
            .find(|entry| entry.name == name))
    }
    /// Reads an object from its start.
    fn open(&self, policy: &str, name: &str) -> Result<Box<dyn Read + Send>, Error>;
    /// Deletes an object durably. An object that is already gone is not an error,
    /// so an interrupted prune can simply be done again.
    fn remove(&self, policy: &str, name: &str) -> Result<(), Error>;
    /// Writes a small object, replacing whatever the name held: only for
    /// records that are no backup (a host's last run), never for data or
    /// sidecars. Readers see the old bytes or the new ones, never a mix.
    fn replace(&self, policy: &str, name: &str, bytes: &[u8]) -> Result<(), Error>;
    /// The objects of each of `policies`, as [`Destination::list`] gives them.
    /// Stores where one request can list many folders do so.
    fn list_many(
        &self,
        policies: &[&str],
    ) -> Result<std::collections::BTreeMap<String, Vec<Entry>>, Error> {
        list_each(policies, |policy| self.list(policy))
    }
    /// Whether deletes in `policy`'s folder are allowed, found out without
    /// deleting anything that exists (S3: a delete of a key never written,
    /// which a key without delete rights is refused). Prunes ask before they
    /// are planned, so a plan says what it cannot do instead of failing halfway.
    fn probe_delete(&self, _policy: &str) -> Result<(), Error> {
        Ok(())
    }
}

/// The listing of each policy, one `list` call each.
pub fn list_each(
    policies: &[&str],
    list: impl Fn(&str) -> Result<Vec<Entry>, Error>,
) -> Result<std::collections::BTreeMap<String, Vec<Entry>>, Error> {
    policies
        .iter()
        .map(|policy| Ok(((*policy).to_owned(), list(policy)?)))
        .collect()
}

/// Data being written. Dropping an upload without committing aborts it.
pub trait Upload: Write + Send {
    /// Makes the data durable, checks that `expected` bytes arrived, and gives
    /// it its final name. On error the data stays invisible.
    fn commit(self: Box<Self>, expected: u64) -> Result<(), Error>;
}

/// Opens the destination a policy describes.
pub fn open(spec: &DestinationSpec) -> Result<Box<dyn Destination>, Error> {
    match spec {
        DestinationSpec::Local(local) => Ok(Box::new(local::Local::new(local.path.clone()))),
        DestinationSpec::S3(s3) => Ok(Box::new(s3::S3::new(s3)?)),
    }
}

/// The name of a destination, for people and as its identity everywhere
/// (plans, the inventory, the sidecar cache, status, metrics): two
/// destinations are the same place exactly when their names are equal.
/// A local folder is its path; an S3 location is `s3://bucket/prefix/` on
/// AWS and `s3:<endpoint>/bucket/prefix/` on any other store, so the same
/// bucket and prefix on two endpoints (a store and its off-site replica)
/// are two destinations.
pub fn describe(spec: &DestinationSpec) -> String {
    match spec {
        DestinationSpec::Local(local) => local.path.display().to_string(),
        DestinationSpec::S3(s3) => {
            let place = format!("{}/{}", s3.bucket, s3.prefix.as_deref().unwrap_or(""));
            match s3.endpoint.as_deref() {
                None => format!("s3://{place}"),
                Some(endpoint) => format!("s3:{}/{place}", endpoint.trim_end_matches('/')),
            }
        }
    }
}
