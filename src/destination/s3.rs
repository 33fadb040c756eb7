//! An S3 bucket (AWS, or any S3-compatible store: MinIO, Garage, B2, R2, Wasabi).
//!
//! Layout: `<prefix><policy>/<name>` in one bucket. Data streams into a
//! multipart upload, a few parts in flight at a time, so memory stays bounded
//! whatever the size; the upload is completed only at commit, after which the
//! object's size is checked with a HEAD. Until then nothing is visible under
//! the name; an upload that is dropped is aborted, and one left by a crash
//! shows up in listings as `<name>.partial`, which `remove` aborts. Small
//! objects (sidecars, and data smaller than one part) are one PUT, which S3
//! makes visible atomically. Deletes are confirmed with a HEAD, since some
//! stores acknowledge deletes they did not do.
//!
//! Writes are create-only: a HEAD first (many stores, Garage among them,
//! ignore conditional headers), then the PUT or CompleteMultipartUpload with
//! `If-None-Match: *` for the stores that honour it. A commit that finds
//! another writer's object under its key fails without touching it: only an
//! object whose ETag is the one this writer got back is ever deleted.
//!
//! The SDK retries throttling, 5xx answers and broken connections with
//! exponential backoff and jitter, a bounded number of times; other 4xx
//! answers fail at once. Errors name the bucket and key, never a credential.
//! What retries alone get wrong is handled here: a download cut off midway
//! resumes with a ranged GET of the same ETag; a create whose answer was
//! lost leaves a twin upload, aborted at commit; a complete whose answer was
//! lost finds the upload gone on retry, and the HEAD size check decides.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::sync::OnceLock;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_s3::config::retry::{RetryPartition, TokenBucket};
use aws_sdk_s3::config::{
    ConfigBag, Credentials, Intercept, Region, RequestChecksumCalculation, RuntimeComponents,
};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use md5::{Digest as _, Md5};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

use super::{Destination, Entry, Error, Upload};
use crate::inventory::names;
use crate::policy::secret::Template;
use crate::policy::spec::{RequestChecksum, S3Spec, ServerSideEncryption};

/// Size of one multipart part (S3's minimum is 5 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploading at once; memory is about `(PARTS_IN_FLIGHT + 1) * PART_SIZE`.
pub const PARTS_IN_FLIGHT: usize = 4;
/// Attempts per request, the first included.
pub const MAX_ATTEMPTS: u32 = 8;

/// The runtime every S3 request runs on; the rest of the program is synchronous.
fn runtime() -> Result<&'static Runtime, Error> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("backup-s3")
                .enable_all()
                .build()
                .map_err(|error| error.to_string())
        })
        .as_ref()
        .map_err(|error| Error::S3 {
            action: "start the S3 client",
            location: String::new(),
            message: error.clone(),
        })
}

/// Resolves a field that may hold `${env:…}`/`${file:…}` references.
fn resolve(field: &Option<String>, name: &'static str) -> Result<Option<String>, Error> {
    field
        .as_deref()
        .map(|text| {
            Template::parse(text)
                .and_then(|template| template.resolve())
                .map(|secret| secret.expose().to_owned())
                .map_err(|error| Error::S3 {
                    action: "resolve",
                    location: name.to_owned(),
                    message: error.to_string(),
                })
        })
        .transpose()
}

/// An S3 destination.
#[derive(Clone)]
pub struct S3 {
    client: Client,
    /// [`super::describe`]'s name for it, endpoint included.
    location: String,
    bucket: String,
    prefix: String,
    storage_class: Option<String>,
    encryption: Option<ServerSideEncryption>,
    kms_key_id: Option<String>,
}

impl std::fmt::Debug for S3 {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "S3({})", self.location())
    }
}

impl S3 {
    /// Builds the client: credentials from the policy's references, else the
    /// standard AWS chain (environment, profile, instance role).
    pub fn new(spec: &S3Spec) -> Result<S3, Error> {
        let runtime = runtime()?;
        let endpoint = resolve(&spec.endpoint, "s3.endpoint")?;
        let region = resolve(&spec.region, "s3.region")?;
        let key_id = resolve(&spec.access_key_id, "s3.access-key-id")?;
        let secret = resolve(&spec.secret_access_key, "s3.secret-access-key")?;
        let token = resolve(&spec.session_token, "s3.session-token")?;
        // One client per distinct connection setting for the whole process:
        // policies sharing a store share its connection pool, and the AWS
        // configuration is loaded once.
        static CLIENTS: OnceLock<std::sync::Mutex<HashMap<String, Client>>> = OnceLock::new();
        let settings = format!(
            "{endpoint:?} {region:?} {key_id:?} {secret:?} {token:?} {} {:?}",
            spec.path_style, spec.request_checksum
        );
        let clients = CLIENTS.get_or_init(Default::default);
        let cached = clients
            .lock()
            .ok()
            .and_then(|clients| clients.get(&settings).cloned());
        let client = match cached {
            Some(client) => client,
            None => {
                let client = Self::client(runtime, spec, endpoint, region, key_id, secret, token);
                if let Ok(mut clients) = clients.lock() {
                    clients.insert(settings, client.clone());
                }
                client
            }
        };
        Ok(S3 {
            client,
            location: super::describe(&crate::policy::spec::DestinationSpec::S3(spec.clone())),
            bucket: spec.bucket.clone(),
            prefix: spec.prefix.clone().unwrap_or_default(),
            storage_class: spec.storage_class.clone(),
            encryption: spec.server_side_encryption,
            kms_key_id: spec.kms_key_id.clone(),
        })
    }

    fn client(
        runtime: &Runtime,
        spec: &S3Spec,
        endpoint: Option<String>,
        region: Option<String>,
        key_id: Option<String>,
        secret: Option<String>,
        token: Option<String>,
    ) -> Client {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(std::time::Duration::from_millis(100))
                .with_max_backoff(std::time::Duration::from_secs(10)),
        );
        if let Some(region) = region {
            loader = loader.region(Region::new(region));
        }
        if let (Some(key_id), Some(secret)) = (key_id, secret) {
            loader = loader
                .credentials_provider(Credentials::new(key_id, secret, token, None, "policy"));
        }
        let shared = runtime.block_on(loader.load());
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            // Every request already stops after MAX_ATTEMPTS; a shared retry
            // quota on top would fail a long backup run on a flaky link
            // once enough requests had needed a retry.
            .retry_partition(
                RetryPartition::custom("backup")
                    .token_bucket(TokenBucket::unlimited())
                    .build(),
            )
            .interceptor(CountRequests)
            .force_path_style(spec.path_style)
            .request_checksum_calculation(match spec.request_checksum {
                RequestChecksum::WhenSupported => RequestChecksumCalculation::WhenSupported,
                RequestChecksum::WhenRequired => RequestChecksumCalculation::WhenRequired,
            });
        if shared.region().is_none() {
            config = config.region(Region::new("us-east-1"));
        }
        if let Some(endpoint) = endpoint {
            config = config.endpoint_url(endpoint);
        }
        Client::from_conf(config.build())
    }

    fn key(&self, policy: &str, name: &str) -> String {
        format!("{}{policy}/{name}", self.prefix)
    }

    /// `key` as people read it: the destination's name, then the rest of the key.
    fn url(&self, key: &str) -> String {
        format!(
            "{}{}",
            self.location,
            key.strip_prefix(&self.prefix).unwrap_or(key)
        )
    }

    /// An error naming the bucket and key: the store's code and message when
    /// it answered, else the whole chain of causes (a connection refused, a timeout).
    fn error(
        &self,
        action: &'static str,
        key: &str,
        error: impl std::error::Error + ProvideErrorMetadata,
    ) -> Error {
        let message = match (error.code(), error.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            _ => cause(&error),
        };
        Error::S3 {
            action,
            location: self.url(key),
            message,
        }
    }

    fn encryption(&self) -> Option<aws_sdk_s3::types::ServerSideEncryption> {
        self.encryption.map(|encryption| match encryption {
            ServerSideEncryption::Aes256 => aws_sdk_s3::types::ServerSideEncryption::Aes256,
            ServerSideEncryption::AwsKms => aws_sdk_s3::types::ServerSideEncryption::AwsKms,
        })
    }

    fn storage_class(&self) -> Option<aws_sdk_s3::types::StorageClass> {
        self.storage_class
            .as_deref()
            .map(aws_sdk_s3::types::StorageClass::from)
    }

    /// One PUT of a whole object, create-only: [`Error::Exists`] when the key
    /// holds anything else. The same bytes already there (a retried PUT whose
    /// answer was lost, on a store that honours `If-None-Match`) count as
    /// written. The object's ETag, where the store gives one.
    fn put_new(&self, key: &str, bytes: Bytes, data: bool) -> Result<Option<String>, Error> {
        if let Some((_, e_tag)) = self.head(key)? {
            return self.same_bytes(key, &bytes).map(|()| e_tag);
        }
        let request = self
            .put_request(key, bytes.clone())
            .if_none_match("*")
            .set_storage_class(if data { self.storage_class() } else { None });
        match runtime()?.block_on(request.send()) {
            Ok(put) => Ok(put.e_tag().map(str::to_owned)),
            Err(error) if is_precondition_failed(&error) => {
                self.same_bytes(key, &bytes)?;
                Ok(self.head(key)?.and_then(|(_, e_tag)| e_tag))
            }
            Err(error) => Err(self.error("cannot write", key, error)),
        }
    }

    /// A one-request PUT of `bytes` to `key` with the destination's
    /// server-side encryption; callers add their conditions.
    fn put_request(
        &self,
        key: &str,
        bytes: Bytes,
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(bytes))
            .set_server_side_encryption(self.encryption())
            .set_ssekms_key_id(self.kms_key_id.clone())
    }

    /// `Ok` when `key` holds exactly `bytes`, else [`Error::Exists`].
    fn same_bytes(&self, key: &str, bytes: &[u8]) -> Result<(), Error> {
        let exists = || Error::Exists {
            location: self.url(key),
        };
        let mut found = Vec::new();
        let reader = S3Reader::open(self, key)?;
        reader
            .take(bytes.len() as u64 + 1)
            .read_to_end(&mut found)
            .map_err(|error| Error::S3 {
                action: "cannot read",
                location: self.url(key),
                message: error.to_string(),
            })?;
        if found == bytes {
            Ok(())
        } else {
            Err(exists())
        }
    }

    /// The size and ETag of `key`, or `None` when it does not exist.
    fn head(&self, key: &str) -> Result<Option<(u64, Option<String>)>, Error> {
        let result = runtime()?.block_on(
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send(),
        );
        match result {
            Ok(head) => Ok(Some((
                head.content_length().map_or(0, |size| size.max(0) as u64),
                head.e_tag().map(str::to_owned),
            ))),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|service| service.is_not_found()) =>
            {
                Ok(None)
            }
            Err(error) => Err(self.error("cannot read", key, error)),
        }
    }

    /// The size of `key`, or `None` when it does not exist.
    fn size_of(&self, key: &str) -> Result<Option<u64>, Error> {
        Ok(self.head(key)?.map(|(size, _)| size))
    }

    /// GETs `key` from byte `offset` on; `e_tag` pins the version first read.
    fn get(
        &self,
        key: &str,
        offset: u64,
        e_tag: Option<&str>,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, Error> {
        runtime()?
            .block_on(
                self.client
                    .get_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .set_range((offset > 0).then(|| format!("bytes={offset}-")))
                    .set_if_match(e_tag.map(str::to_owned))
                    .send(),
            )
            .map_err(|error| self.error("cannot read", key, error))
    }

    /// Deletes `key`, then checks that it is gone: some stores acknowledge
    /// deletes they do not do.
    fn delete(&self, key: &str) -> Result<(), Error> {
        self.delete_if(key, None)
    }

    /// Deletes `key` only if it is still the object with ETag `e_tag` (the
    /// one this writer made): a HEAD first, for the stores that ignore
    /// `If-Match`, then the delete with it. Another writer's object stays.
    fn delete_own(&self, key: &str, e_tag: &str) -> Result<(), Error> {
        match self.head(key)? {
            None => Ok(()),
            Some((_, Some(current))) if !same_e_tag(&current, e_tag) => Err(Error::S3 {
                action: "left",
                location: self.url(key),
                message: "another writer's object is there now; it is not touched".to_owned(),
            }),
            Some(_) => self.delete_if(key, Some(e_tag)),
        }
    }

    /// Deletes `key` (only while its ETag is `e_tag`, when given), then
    /// checks that it is gone.
    fn delete_if(&self, key: &str, e_tag: Option<&str>) -> Result<(), Error> {
        let sent = runtime()?.block_on(
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .set_if_match(e_tag.map(str::to_owned))
                .send(),
        );
        match sent {
            Ok(_) => {}
            // Replaced by another writer since the HEAD: theirs stays.
            Err(error) if e_tag.is_some() && is_precondition_failed(&error) => return Ok(()),
            Err(error) => return Err(self.error("cannot delete", key, error)),
        }
        if let Some((_, found)) = self.head(key)? {
            // Another writer's object, put there since: not ours to delete.
            let still_ours = match (e_tag, found.as_deref()) {
                (Some(ours), Some(found)) => same_e_tag(found, ours),
                _ => true,
            };
            if still_ours {
                return Err(Error::S3 {
                    action: "cannot delete",
                    location: self.url(key),
                    message: "the store acknowledged the delete but still holds the object"
                        .to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Aborts every unfinished multipart upload of exactly `key`. Keys are
    /// unique per backup, so they are all this backup's: a retried
    /// CreateMultipartUpload whose first answer was lost leaves a second one.
    fn abort_uploads(&self, key: &str) -> Result<(), Error> {
        let runtime = runtime()?;
        let listed = match runtime.block_on(
            self.client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(key)
                .send(),
        ) {
            Ok(listed) => listed,
            // A store that cannot list uploads (s3s-fs) has none to show.
            Err(error) if error.code() == Some(NOT_IMPLEMENTED) => return Ok(()),
            Err(error) => return Err(self.error("cannot list uploads of", key, error)),
        };
        for upload in listed.uploads() {
            if upload.key() != Some(key) {
                continue;
            }
            let Some(id) = upload.upload_id() else {
                continue;
            };
            let aborted = runtime.block_on(
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(id)
                    .send(),
            );
            match aborted {
                // Gone already: a retried abort whose first answer was lost.
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|service| service.is_no_such_upload()) => {}
                result => {
                    result.map_err(|error| self.error("cannot abort the upload of", key, error))?;
                }
            }
        }
        Ok(())
    }
}

impl S3 {
    /// Objects and unfinished multipart uploads (as `<name>.partial`) under
    /// `folder`, with the folder's next path segment when `nested` (the
    /// policy, for a listing of the whole prefix), else only names directly
    /// in it; only names that start with `start`.
    fn list_under(
        &self,
        folder: &str,
        nested: bool,
        start: &str,
    ) -> Result<Vec<(String, Entry)>, Error> {
        let runtime = runtime()?;
        let listed = format!("{folder}{start}");
        let split = |key: Option<&str>| -> Option<(String, String)> {
            let rest = key?.strip_prefix(folder)?;
            let (policy, name) = if nested {
                rest.split_once('/')?
            } else {
                ("", rest)
            };
            (!name.is_empty() && !name.contains('/')).then(|| (policy.to_owned(), name.to_owned()))
        };
        // A sub-folder (`<policy>/wal/`, with its stream of small objects) is
        // listed on its own: at its first key the listing starts again after
        // its last possible key, one request instead of paging through it.
        let sub_folder = |key: Option<&str>| -> Option<String> {
            let rest = key?.strip_prefix(folder)?;
            let mut segments = rest.splitn(if nested { 3 } else { 2 }, '/');
            let head: Vec<&str> = segments.by_ref().take(if nested { 2 } else { 1 }).collect();
            segments.next()?;
            Some(head.join("/"))
        };
        let mut entries = Vec::new();
        let mut start_after: Option<String> = None;
        'listing: loop {
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&listed)
                .set_start_after(start_after.clone())
                .into_paginator()
                .send();
            while let Some(page) = runtime.block_on(pages.next()) {
                let page = page.map_err(|error| self.error("cannot list", folder, error))?;
                for object in page.contents() {
                    if let Some(sub) = sub_folder(object.key()) {
                        start_after = Some(format!("{folder}{sub}/{SKIP_PAST}"));
                        continue 'listing;
                    }
                    let Some((policy, name)) = split(object.key()) else {
                        continue;
                    };
                    entries.push((
                        policy,
                        Entry {
                            name,
                            size: object.size().map_or(0, |size| size.max(0) as u64),
                            modified: object.last_modified().and_then(to_chrono),
                            tag: object.e_tag().map(str::to_owned),
                            irregular: None,
                        },
                    ));
                }
            }
            break;
        }
        // Multipart uploads never completed: a crash's leftovers, shown as partials.
        let mut key_marker: Option<String> = None;
        let mut upload_marker: Option<String> = None;
        loop {
            let page = match runtime.block_on(
                self.client
                    .list_multipart_uploads()
                    .bucket(&self.bucket)
                    .prefix(&listed)
                    .set_key_marker(key_marker.clone())
                    .set_upload_id_marker(upload_marker.clone())
                    .send(),
            ) {
                Ok(page) => page,
                // A store that does not implement the listing (s3s-fs 0.14)
                // shows no partials; its uploads' leftovers stay unseen.
                Err(error) if error.code() == Some(NOT_IMPLEMENTED) => break,
                Err(error) => return Err(self.error("cannot list uploads in", folder, error)),
            };
            for upload in page.uploads() {
                let Some((policy, name)) = split(upload.key()) else {
                    continue;
                };
                entries.push((
                    policy,
                    Entry {
                        name: names::partial(&name),
                        size: 0,
                        modified: upload.initiated().and_then(to_chrono),
                        tag: None,
                        irregular: None,
                    },
                ));
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            upload_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && upload_marker.is_none() {
                break;
            }
        }
        Ok(entries)
    }
}

/// The error code of a store that does not implement an operation.
const NOT_IMPLEMENTED: &str = "NotImplemented";

/// Follows every key of a sub-folder our objects are named with (ASCII):
/// the highest Unicode scalar value.
const SKIP_PAST: char = '\u{10FFFF}';

/// The key `probe_delete` deletes: a dot name, never written, and skipped by
/// the inventory.
const DELETE_PROBE: &str = ".backup-delete-probe";

impl S3 {
    /// For `validate --check-destinations`: the bucket answers, and the
    /// credentials may write, read back and delete under the prefix. Leaves
    /// nothing behind.
    pub fn check_access(&self) -> Result<(), Error> {
        let runtime = runtime()?;
        runtime
            .block_on(self.client.head_bucket().bucket(&self.bucket).send())
            .map_err(|error| self.error("cannot reach the bucket", "", error))?;
        let key = format!(
            "{}.backup-check-{}",
            self.prefix,
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.fZ")
        );
        self.put_new(
            &key,
            Bytes::from_static(b"backup validate --check-destinations\n"),
            false,
        )?;
        let read = self.size_of(&key);
        let deleted = self.delete(&key);
        read?;
        deleted
    }
}

impl Destination for S3 {
    fn probe_delete(&self, policy: &str) -> Result<(), Error> {
        let key = self.key(policy, DELETE_PROBE);
        runtime()?
            .block_on(
                self.client
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(&key)
                    .send(),
            )
            .map_err(|error| self.error("may not delete in", &self.key(policy, ""), error))?;
        Ok(())
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn stat(&self, policy: &str, name: &str) -> Result<Option<Entry>, Error> {
        Ok(self
            .head(&self.key(policy, name))?
            .map(|(size, tag)| Entry {
                name: name.to_owned(),
                size,
                modified: None,
                tag,
                irregular: None,
            }))
    }

    fn begin(&self, policy: &str, name: &str) -> Result<Box<dyn Upload>, Error> {
        Ok(Box::new(S3Upload {
            store: self.clone(),
            key: self.key(policy, name),
            buffer: Vec::with_capacity(PART_SIZE),
            written: 0,
            multipart: None,
            finished: false,
        }))
    }

    fn put(&self, policy: &str, name: &str, bytes: &[u8]) -> Result<(), Error> {
        self.put_new(
            &self.key(policy, name),
            Bytes::copy_from_slice(bytes),
            false,
        )
        .map(drop)
    }

    fn list(&self, policy: &str) -> Result<Vec<Entry>, Error> {
        self.list_prefixed(policy, "")
    }

    fn list_prefixed(&self, policy: &str, prefix: &str) -> Result<Vec<Entry>, Error> {
        let folder = self.key(policy, "");
        Ok(self
            .list_under(&folder, false, prefix)?
            .into_iter()
            .map(|(_, entry)| entry)
            .collect())
    }

    /// One listing of the whole prefix serves every policy under it: for
    /// a hundred policies in one bucket, a few pages instead of two hundred
    /// requests.
    fn list_many(&self, policies: &[&str]) -> Result<BTreeMap<String, Vec<Entry>>, Error> {
        if policies.len() < 2 {
            return super::list_each(policies, |policy| self.list(policy));
        }
        let mut listed: BTreeMap<String, Vec<Entry>> = policies
            .iter()
            .map(|policy| ((*policy).to_owned(), Vec::new()))
            .collect();
        for (policy, entry) in self.list_under(&self.prefix, true, "")? {
            if let Some(entries) = listed.get_mut(&policy) {
                entries.push(entry);
            }
        }
        Ok(listed)
    }

    fn open(&self, policy: &str, name: &str) -> Result<Box<dyn Read + Send>, Error> {
        Ok(Box::new(S3Reader::open(self, &self.key(policy, name))?))
    }

    fn remove(&self, policy: &str, name: &str) -> Result<(), Error> {
        if let Some(data) = name.strip_suffix(names::PARTIAL_SUFFIX) {
            return self.abort_uploads(&self.key(policy, data));
        }
        self.delete(&self.key(policy, name))
    }

    fn replace(&self, policy: &str, name: &str, bytes: &[u8]) -> Result<(), Error> {
        let key = self.key(policy, name);
        let request = self.put_request(&key, Bytes::copy_from_slice(bytes));
        runtime()?
            .block_on(request.send())
            .map(drop)
            .map_err(|error| self.error("cannot write", &key, error))
    }
}

/// Requests sent to any S3 store by this process, retries included: what a
/// test counts round trips with.
static REQUESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The number of S3 requests this process has sent so far (each attempt counts).
pub fn requests() -> u64 {
    REQUESTS.load(std::sync::atomic::Ordering::Relaxed)
}

type HookResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Counts every request as it is sent ([`requests`]).
#[derive(Debug)]
struct CountRequests;

impl Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "CountRequests"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _config: &mut ConfigBag,
    ) -> HookResult {
        REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// Keeps the `Date` header of a response (the store's clock), which the
/// SDK's outputs do not give.
#[derive(Debug, Clone, Default)]
struct StoreDate(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl Intercept for StoreDate {
    fn name(&self) -> &'static str {
        "StoreDate"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _config: &mut ConfigBag,
    ) -> HookResult {
        let date = context.response().headers().get("date").map(str::to_owned);
        if let Ok(mut kept) = self.0.lock() {
            *kept = date;
        }
        Ok(())
    }
}

impl StoreDate {
    fn time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let text = self.0.lock().ok()?.clone()?;
        chrono::DateTime::parse_from_rfc2822(&text)
            .ok()
            .map(|time| time.with_timezone(&chrono::Utc))
    }
}

/// What [`S3::fetch`] says when a body broke off or failed its checksum.
const BODY_BROKE: &str = "cannot read the body of";

/// The condition of a conditional PUT.
#[derive(Debug, Clone, Copy)]
pub enum Condition<'a> {
    /// Only if nothing is there (`If-None-Match: *`).
    Absent,
    /// Only if the object there has this ETag (`If-Match`).
    Matches(&'a str),
}

/// How a conditional PUT ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Written; the new object's ETag, where the store gives one.
    Done(Option<String>),
    /// The store refused it: the condition does not hold (412).
    PreconditionFailed,
}

/// An object read whole, with what the store said about it and its clock.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub e_tag: Option<String>,
    pub last_modified: Option<chrono::DateTime<chrono::Utc>>,
    /// The store's `Date` answer: its clock when it answered.
    pub store_date: Option<chrono::DateTime<chrono::Utc>>,
}

impl S3 {
    /// One PUT of `bytes` as `name` in `policy`'s folder, under `condition`,
    /// with no HEAD first: the store alone decides (the lease and its probe).
    pub fn put_if(
        &self,
        policy: &str,
        name: &str,
        bytes: &[u8],
        condition: Condition<'_>,
    ) -> Result<Written, Error> {
        let key = self.key(policy, name);
        let mut request = self.put_request(&key, Bytes::copy_from_slice(bytes));
        request = match condition {
            Condition::Absent => request.if_none_match("*"),
            Condition::Matches(e_tag) => request.if_match(e_tag),
        };
        match runtime()?.block_on(request.send()) {
            Ok(put) => Ok(Written::Done(put.e_tag().map(str::to_owned))),
            // A 409 is what some stores answer to a conditional write racing another.
            Err(error)
                if is_precondition_failed(&error)
                    || error.code() == Some("ConditionalRequestConflict") =>
            {
                Ok(Written::PreconditionFailed)
            }
            Err(error) => Err(self.error("cannot write", &key, error)),
        }
    }

    /// `name` in `policy`'s folder read whole (it is small), with its ETag,
    /// `Last-Modified` and the store's `Date`; `None` when it does not exist.
    pub fn fetch(&self, policy: &str, name: &str) -> Result<Option<Fetched>, Error> {
        // A body read while another writer replaces the object can fail its
        // checksum (s3s-fs keeps the checksum beside the file): read again.
        let mut attempt = 1;
        loop {
            match self.fetch_once(policy, name) {
                Err(Error::S3 { action, .. }) if action == BODY_BROKE && attempt < 3 => {
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    fn fetch_once(&self, policy: &str, name: &str) -> Result<Option<Fetched>, Error> {
        let key = self.key(policy, name);
        let date = StoreDate::default();
        let runtime = runtime()?;
        let result = runtime.block_on(
            self.client
                .get_object()
                .bucket(&self.bucket)
                .key(&key)
                .customize()
                .interceptor(date.clone())
                // A small object read whole and parsed: a checksum the store
                // keeps apart from the data (s3s-fs, after a writer that was
                // cut off) must not make it unreadable.
                .config_override(
                    aws_sdk_s3::config::Builder::default().response_checksum_validation(
                        aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
                    ),
                )
                .send(),
        );
        let object = match result {
            Ok(object) => object,
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|service| service.is_no_such_key()) =>
            {
                return Ok(None);
            }
            Err(error) => return Err(self.error("cannot read", &key, error)),
        };
        let e_tag = object.e_tag().map(str::to_owned);
        let last_modified = object.last_modified().and_then(to_chrono);
        let bytes = runtime
            .block_on(object.body.collect())
            .map_err(|error| Error::S3 {
                action: BODY_BROKE,
                location: self.url(&key),
                message: cause(&error),
            })?
            .into_bytes()
            .to_vec();
        Ok(Some(Fetched {
            bytes,
            e_tag,
            last_modified,
            store_date: date.time(),
        }))
    }

    /// The ETag of `name` in `policy`'s folder (a HEAD), `None` when it does not exist.
    pub fn tag_of(&self, policy: &str, name: &str) -> Result<Option<String>, Error> {
        Ok(self
            .head(&self.key(policy, name))?
            .map(|(_, e_tag)| e_tag.unwrap_or_default()))
    }

    /// One DELETE of `name` conditional on its ETag (`If-Match`); a 412 (or
    /// nothing there) leaves it as it is. Stores that ignore the condition
    /// delete whatever is there.
    pub fn delete_if_tag(&self, policy: &str, name: &str, e_tag: &str) -> Result<(), Error> {
        let key = self.key(policy, name);
        let sent = runtime()?.block_on(
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&key)
                .if_match(e_tag)
                .send(),
        );
        match sent {
            Ok(_) => Ok(()),
            Err(error) if is_precondition_failed(&error) => Ok(()),
            Err(error)
                if error
                    .raw_response()
                    .is_some_and(|response| response.status().as_u16() == 404) =>
            {
                Ok(())
            }
            Err(error) => Err(self.error("cannot delete", &key, error)),
        }
    }

    /// A file name that stands for this store (endpoint and bucket), for
    /// what the state folder remembers about it.
    pub fn store_digest(&self) -> String {
        use sha2::{Digest as _, Sha256};
        let place = self
            .location
            .strip_suffix(self.prefix.as_str())
            .unwrap_or(&self.location);
        let digest = Sha256::digest(place.as_bytes());
        crate::inventory::metadata::hex(&digest[..12])
    }
}

fn to_chrono(time: &aws_sdk_s3::primitives::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(time.secs(), time.subsec_nanos())
}

/// A multipart upload under way.
struct Multipart {
    id: String,
    next_part: i32,
    in_flight: JoinSet<Result<CompletedPart, Error>>,
    done: Vec<CompletedPart>,
}

/// Data being written to S3: parts of [`PART_SIZE`] upload while more is written.
struct S3Upload {
    store: S3,
    key: String,
    buffer: Vec<u8>,
    written: u64,
    multipart: Option<Multipart>,
    finished: bool,
}

impl S3Upload {
    /// Sends the buffer as the next part, waiting first if enough are in flight.
    fn send_part(&mut self) -> Result<(), Error> {
        let runtime = runtime()?;
        if self.multipart.is_none() {
            let created = runtime
                .block_on(
                    self.store
                        .client
                        .create_multipart_upload()
                        .bucket(&self.store.bucket)
                        .key(&self.key)
                        .set_server_side_encryption(self.store.encryption())
                        .set_ssekms_key_id(self.store.kms_key_id.clone())
                        .set_storage_class(self.store.storage_class())
                        .send(),
                )
                .map_err(|error| self.store.error("cannot start uploading", &self.key, error))?;
            let id = created.upload_id().unwrap_or_default().to_owned();
            self.multipart = Some(Multipart {
                id,
                next_part: 1,
                in_flight: JoinSet::new(),
                done: Vec::new(),
            });
        }
        let store = self.store.clone();
        let key = self.key.clone();
        let body = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(PART_SIZE),
        ));
        let Some(multipart) = self.multipart.as_mut() else {
            return Ok(());
        };
        while multipart.in_flight.len() >= PARTS_IN_FLIGHT {
            collect(runtime, multipart)?;
        }
        let number = multipart.next_part;
        multipart.next_part += 1;
        let id = multipart.id.clone();
        multipart.in_flight.spawn_on(
            async move {
                let uploaded = store
                    .client
                    .upload_part()
                    .bucket(&store.bucket)
                    .key(&key)
                    .upload_id(id)
                    .part_number(number)
                    .body(ByteStream::from(body))
                    .send()
                    .await
                    .map_err(|error| store.error("cannot upload a part of", &key, error))?;
                Ok(CompletedPart::builder()
                    .set_e_tag(uploaded.e_tag().map(str::to_owned))
                    .part_number(number)
                    .build())
            },
            runtime.handle(),
        );
        Ok(())
    }

    fn abort(&mut self) {
        if let (Some(multipart), Ok(runtime)) = (self.multipart.take(), runtime()) {
            let mut in_flight = multipart.in_flight;
            runtime.block_on(async { while in_flight.join_next().await.is_some() {} });
            let _ = runtime.block_on(
                self.store
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.store.bucket)
                    .key(&self.key)
                    .upload_id(multipart.id)
                    .send(),
            );
            // And any twin a retried create left; `plan` reports what remains.
            let _ = self.store.abort_uploads(&self.key);
        }
    }
}

/// Waits for one part in flight and records it.
fn collect(runtime: &Runtime, multipart: &mut Multipart) -> Result<(), Error> {
    if let Some(joined) = runtime.block_on(multipart.in_flight.join_next()) {
        let part = joined.map_err(|error| Error::S3 {
            action: "upload",
            location: String::new(),
            message: error.to_string(),
        })??;
        multipart.done.push(part);
    }
    Ok(())
}

impl Write for S3Upload {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.finished {
            return Err(io::Error::other("upload already finished"));
        }
        let room = PART_SIZE - self.buffer.len();
        let count = room.min(data.len());
        self.buffer.extend_from_slice(&data[..count]);
        self.written += count as u64;
        if self.buffer.len() == PART_SIZE {
            self.send_part().map_err(io::Error::other)?;
        }
        Ok(count)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Upload for S3Upload {
    fn commit(mut self: Box<Self>, expected: u64) -> Result<(), Error> {
        let location = self.store.url(&self.key);
        if self.written != expected {
            return Err(Error::SizeMismatch {
                location,
                expected,
                actual: self.written,
            });
        }
        let runtime = runtime()?;
        // The ETag the object this writer made has: the store's answer, or
        // for a multipart upload what S3 computes from the parts.
        let e_tag = if self.multipart.is_none() {
            let body = Bytes::from(std::mem::take(&mut self.buffer));
            self.store.put_new(&self.key, body, true)?
        } else {
            if !self.buffer.is_empty() {
                self.send_part()?;
            }
            let Some(mut multipart) = self.multipart.take() else {
                return Ok(());
            };
            let result = (|| {
                while !multipart.in_flight.is_empty() {
                    collect(runtime, &mut multipart)?;
                }
                let mut parts = std::mem::take(&mut multipart.done);
                parts.sort_by_key(|part| part.part_number());
                let computed = multipart_e_tag(&parts);
                // Create-only: the stores that ignore `If-None-Match` are asked first.
                if self.store.head(&self.key)?.is_some() {
                    return Err(Error::Exists {
                        location: location.clone(),
                    });
                }
                runtime
                    .block_on(
                        self.store
                            .client
                            .complete_multipart_upload()
                            .bucket(&self.store.bucket)
                            .key(&self.key)
                            .upload_id(&multipart.id)
                            .if_none_match("*")
                            .multipart_upload(
                                CompletedMultipartUpload::builder()
                                    .set_parts(Some(parts))
                                    .build(),
                            )
                            .send(),
                    )
                    .map(|completed| completed.e_tag().map(str::to_owned))
                    .or_else(|error| {
                        // A retried complete whose first answer was lost finds
                        // the upload gone, or (where `If-None-Match` is
                        // honoured) the object there: the HEAD below decides,
                        // by the ETag S3 computes from the parts.
                        if error.code() == Some("NoSuchUpload") || is_precondition_failed(&error) {
                            Ok(Some(computed))
                        } else {
                            Err(self.store.error("cannot complete", &self.key, error))
                        }
                    })
            })();
            let e_tag = match result {
                Ok(e_tag) => e_tag,
                Err(error) => {
                    self.multipart = Some(multipart);
                    return Err(error);
                }
            };
            // Twins of this upload that a retried create left behind.
            self.store.abort_uploads(&self.key)?;
            e_tag
        };
        self.finished = true;
        // The store must hold exactly what this writer wrote.
        let (actual, found_tag) = self.store.head(&self.key)?.unwrap_or((0, None));
        let ours = match (&found_tag, &e_tag) {
            (Some(found), Some(ours)) => same_e_tag(found, ours),
            _ => true,
        };
        if actual != expected || !ours {
            if let (true, true, Some(found)) = (actual > 0, ours, &found_tag) {
                self.store.delete_own(&self.key, found)?;
            }
            return Err(if ours {
                Error::SizeMismatch {
                    location,
                    expected,
                    actual,
                }
            } else {
                Error::Exists { location }
            });
        }
        Ok(())
    }
}

/// The ETag S3 gives an object completed from `parts`: the MD5 of their
/// MD5s, then `-<count>`.
fn multipart_e_tag(parts: &[CompletedPart]) -> String {
    let mut digest = Md5::new();
    for part in parts {
        let tag = part.e_tag().unwrap_or_default().trim_matches('"');
        let bytes: Vec<u8> = (0..tag.len() / 2)
            .filter_map(|index| u8::from_str_radix(tag.get(index * 2..index * 2 + 2)?, 16).ok())
            .collect();
        digest.update(&bytes);
    }
    format!(
        "\"{}-{}\"",
        crate::inventory::metadata::hex(&digest.finalize()),
        parts.len()
    )
}

/// Whether two ETags name the same content (quotes aside).
pub fn same_e_tag(left: &str, right: &str) -> bool {
    left.trim_matches('"') == right.trim_matches('"')
}

/// Whether `error` is the store's 412 answer to a conditional request.
fn is_precondition_failed<E: ProvideErrorMetadata>(
    error: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    matches!(error.code(), Some("PreconditionFailed"))
        || error
            .raw_response()
            .is_some_and(|response| response.status().as_u16() == 412)
}

/// The causes of `error`, outermost first, each once: one sentence without
/// the SDK's debug dump (`dispatch failure: io error: … Connection refused`).
fn cause(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut next = error.source();
    while let Some(current) = next {
        let text = current.to_string();
        if !text.is_empty() && !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        next = current.source();
    }
    parts.join(": ")
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        if !self.finished {
            self.abort();
        }
    }
}

/// Reads an object's body as it arrives. A body cut off midway (a reset
/// connection, a store that stops sending) is picked up where it broke with a
/// ranged GET of the same version, a bounded number of times.
struct S3Reader {
    store: S3,
    key: String,
    body: ByteStream,
    chunk: Bytes,
    /// Bytes delivered so far.
    offset: u64,
    /// The object's size and version, from the first answer.
    size: Option<u64>,
    e_tag: Option<String>,
    resumes: u32,
}

impl S3Reader {
    fn open(store: &S3, key: &str) -> Result<S3Reader, Error> {
        let object = store.get(key, 0, None)?;
        Ok(S3Reader {
            store: store.clone(),
            size: object.content_length().map(|size| size.max(0) as u64),
            e_tag: object.e_tag().map(str::to_owned),
            body: object.body,
            chunk: Bytes::new(),
            offset: 0,
            resumes: 0,
            key: key.to_owned(),
        })
    }

    fn resume(&mut self, cause: String) -> io::Result<()> {
        let location = self.store.url(&self.key);
        if self.resumes + 1 >= MAX_ATTEMPTS {
            return Err(io::Error::other(format!(
                "reading {location}: {cause} (after {} attempts)",
                self.resumes + 1
            )));
        }
        self.resumes += 1;
        tracing::debug!(%location, offset = self.offset, %cause, "resuming a broken download");
        let object = self
            .store
            .get(&self.key, self.offset, self.e_tag.as_deref())
            .map_err(io::Error::other)?;
        self.body = object.body;
        Ok(())
    }
}

impl Read for S3Reader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            let runtime = runtime().map_err(io::Error::other)?;
            match runtime.block_on(self.body.next()) {
                None if self.size.is_some_and(|size| self.offset < size) => {
                    self.resume(format!("the body ended at byte {}", self.offset))?;
                }
                None => return Ok(0),
                Some(Ok(chunk)) => self.chunk = chunk,
                // Every byte arrived; only the end of the connection broke.
                Some(Err(_)) if self.size.is_some_and(|size| self.offset >= size) => {
                    return Ok(0);
                }
                Some(Err(error)) => self.resume(cause(&error))?,
            }
        }
        let count = buffer.len().min(self.chunk.len());
        buffer[..count].copy_from_slice(&self.chunk.split_to(count));
        self.offset += count as u64;
        Ok(count)
    }
}
