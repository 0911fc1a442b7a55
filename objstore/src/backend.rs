//! [`ObjectBackend`]: the store's [`Backend`] trait over S3-compatible
//! storage or Azure Blob Storage, through `object_store`.
//!
//! What each call relies on from the service:
//! - `write_new` is a single PUT with `If-None-Match: *` (S3 conditional
//!   writes; Azure Put Blob), so two writers of one name cannot both win and
//!   a reader never sees half an object. Packs above
//!   [`Options::multipart_threshold`] go up in parts, uploaded in parallel;
//!   `object_store` cannot make a multipart completion conditional, so for
//!   those the create-only check is a HEAD before the upload. That is enough
//!   because a pack is named by the hash of its bytes: two racing writers of
//!   one pack write the same bytes. Every other kind (config, keys, locks,
//!   indexes, snapshots) always takes the conditional single PUT.
//! - `replace` (the config only, at the end of `key rotate --rewrite`) is
//!   a HEAD (a missing object is NotFound) then an unconditional single
//!   PUT, whatever the size: a PUT replaces the whole object atomically on
//!   both services, so readers see the old bytes or the new ones.
//! - `delete` of a missing object must say NotFound, but S3 answers 204 to
//!   any DELETE, so a HEAD comes first.
//! - `read_range` asks for exactly the range; a server that returns less
//!   (the range ran past the end) or answers 416 is turned into OutOfRange
//!   with the object's true size.
//! - Errors: 404 is NotFound (but a missing bucket or container is its own
//!   message), 409/412 on a create is AlreadyExists, 5xx, 429, timeouts and
//!   connection failures are transient, everything else is permanent and
//!   carries the service's code and message and the object's name.
//! - Retries: none inside the client ([`retry_config`]). Every call is
//!   attempted once here and retried by the store's retry wrapper, which the
//!   agent puts around every target: one layer, so `--retries N` means N + 1
//!   attempts of a failing call, and a create-only PUT whose reply was lost
//!   is resolved by the wrapper (it reads the object back) rather than
//!   retried by the client into a 412 that would look like another writer's
//!   object.
//!
//! The trait is synchronous; each backend owns a small multi-threaded tokio
//! runtime and blocks on it, so any number of worker threads may call it at
//! once.

use std::error::Error as StdError;
use std::sync::Arc;

use cairn_store::backend::{Backend, BackendError, Handle, ObjectInfo, ObjectKind};
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, RetryConfig, WriteMultipart,
};

use crate::OpenError;
use crate::config::{AzureConfig, Options, S3Config};
use crate::location::ObjectLocation;

/// Which service a backend talks to (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// S3 or an S3-compatible server.
    S3,
    /// Azure Blob Storage (or Azurite).
    Azure,
}

impl Service {
    fn container_word(self) -> &'static str {
        match self {
            Service::S3 => "bucket",
            Service::Azure => "container",
        }
    }
}

/// A repository in a bucket or container of an object store.
pub struct ObjectBackend {
    store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Runtime,
    service: Service,
    container: String,
    endpoint: Option<String>,
    /// The key prefix ("" for the bucket's root), without trailing '/'.
    prefix: String,
    location: String,
    options: Options,
}

impl std::fmt::Debug for ObjectBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBackend")
            .field("location", &self.location)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

fn client_options(endpoint: Option<&str>, o: &Options) -> ClientOptions {
    ClientOptions::new()
        .with_timeout(o.timeout)
        .with_connect_timeout(o.connect_timeout)
        .with_allow_http(endpoint.is_some_and(|e| e.starts_with("http://")))
}

/// The client's own retries: none (see the module documentation). With
/// its default of 10 retries, or any number N of its own, a failing call
/// would be attempted (N + 1) × (the wrapper's retries + 1) times under two
/// nested backoffs, and a multipart part would be retried alone while the
/// wrapper retries the whole pack anyway.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 0,
        retry_timeout: std::time::Duration::ZERO,
    }
}

impl ObjectBackend {
    /// Opens the S3 bucket (and prefix) `loc` names with `config`, and checks
    /// that the bucket exists and the credentials are accepted (one
    /// attempt: see [`ObjectBackend::check_reachable`] to retry it).
    pub fn s3(
        loc: &ObjectLocation,
        config: &S3Config,
        options: &Options,
    ) -> Result<Self, OpenError> {
        let backend = Self::s3_unchecked(loc, config, options)?;
        backend.check_reachable(&backend)?;
        Ok(backend)
    }

    /// Sets up the client for the S3 bucket (and prefix) `loc` names,
    /// without a request: call [`ObjectBackend::check_reachable`] next.
    pub fn s3_unchecked(
        loc: &ObjectLocation,
        config: &S3Config,
        options: &Options,
    ) -> Result<Self, OpenError> {
        let location = format!("s3://{loc}");
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&loc.container)
            .with_region(config.region.as_deref().unwrap_or("us-east-1"))
            .with_client_options(client_options(config.endpoint.as_deref(), options))
            .with_retry(retry_config());
        if let Some(id) = &config.access_key_id {
            b = b.with_access_key_id(id);
        }
        if let Some(s) = &config.secret_access_key {
            b = b.with_secret_access_key(&s.0);
        }
        if let Some(t) = &config.session_token {
            b = b.with_token(&t.0);
        }
        if let Some(ep) = &config.endpoint {
            b = b.with_endpoint(ep.trim_end_matches('/'));
        }
        let path_style = config.path_style.unwrap_or(config.endpoint.is_some());
        b = b.with_virtual_hosted_style_request(!path_style);
        let store = b.build().map_err(|e| OpenError::Client {
            location: location.clone(),
            message: e.to_string(),
        })?;
        Self::finish(
            Arc::new(store),
            Service::S3,
            loc,
            config.endpoint.clone(),
            location,
            options,
        )
    }

    /// Opens the Azure container (and prefix) `loc` names with `config`, and
    /// checks that the container exists and the credentials are accepted
    /// (one attempt: see [`ObjectBackend::check_reachable`] to retry it).
    pub fn azure(
        loc: &ObjectLocation,
        config: &AzureConfig,
        options: &Options,
    ) -> Result<Self, OpenError> {
        let backend = Self::azure_unchecked(loc, config, options)?;
        backend.check_reachable(&backend)?;
        Ok(backend)
    }

    /// Sets up the client for the Azure container (and prefix) `loc` names,
    /// without a request: call [`ObjectBackend::check_reachable`] next.
    pub fn azure_unchecked(
        loc: &ObjectLocation,
        config: &AzureConfig,
        options: &Options,
    ) -> Result<Self, OpenError> {
        let location = format!("azure://{loc}");
        let client_err = |message: String| OpenError::Client {
            location: location.clone(),
            message,
        };
        let mut b = MicrosoftAzureBuilder::new()
            .with_container_name(&loc.container)
            .with_client_options(client_options(config.endpoint.as_deref(), options))
            .with_retry(retry_config());
        if let Some(a) = &config.account {
            b = b.with_account(a);
        }
        if let Some(k) = &config.access_key {
            b = b.with_access_key(&k.0);
        } else if let Some(sas) = &config.sas_token {
            let pairs =
                object_store::azure::split_sas(sas.0.trim_start_matches('?')).map_err(|_| {
                    client_err("the SAS token is malformed (expected sv=...&sig=...)".into())
                })?;
            b = b.with_sas_authorization(pairs);
        }
        if let Some(ep) = &config.endpoint {
            b = b.with_endpoint(ep.trim_end_matches('/').to_string());
        }
        let store = b.build().map_err(|e| client_err(e.to_string()))?;
        Self::finish(
            Arc::new(store),
            Service::Azure,
            loc,
            config.endpoint.clone(),
            location,
            options,
        )
    }

    fn finish(
        store: Arc<dyn ObjectStore>,
        service: Service,
        loc: &ObjectLocation,
        endpoint: Option<String>,
        location: String,
        options: &Options,
    ) -> Result<Self, OpenError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-objstore")
            .enable_all()
            .build()
            .map_err(|e| OpenError::Client {
                location: location.clone(),
                message: format!("cannot start the I/O runtime: {e}"),
            })?;
        Ok(ObjectBackend {
            store,
            runtime,
            service,
            container: loc.container.clone(),
            endpoint,
            prefix: loc.prefix.clone(),
            location,
            options: options.clone(),
        })
    }

    /// Lists the key files through `via` (this backend, or this backend
    /// wrapped with retries): it fails if the bucket or container is
    /// missing, the endpoint unreachable or the credentials refused, so that
    /// shows at once, when a repository is opened, with a clear message.
    pub fn check_reachable(&self, via: &dyn Backend) -> Result<(), OpenError> {
        match via.list(ObjectKind::Key) {
            Ok(_) => Ok(()),
            Err(err) if is_missing_container(&err) => Err(OpenError::MissingContainer {
                location: self.location.clone(),
                what: self.service.container_word(),
                name: self.container.clone(),
                at: self
                    .endpoint
                    .as_ref()
                    .map(|e| format!(" at {e}"))
                    .unwrap_or_default(),
            }),
            Err(error) => Err(OpenError::Target {
                location: self.location.clone(),
                error,
            }),
        }
    }

    /// Whether `config` exists: what `cairn init` checks before creating a
    /// repository here (an object store has no directory to create).
    pub fn has_config(&self) -> Result<bool, BackendError> {
        match self.stat(&Handle::config()) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Which service this is.
    pub fn service(&self) -> Service {
        self.service
    }

    /// The key of a path relative to the repository root.
    fn key_of(&self, rel: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(rel)
        } else if rel.is_empty() {
            Path::from(self.prefix.as_str())
        } else {
            Path::from(format!("{}/{rel}", self.prefix))
        }
    }

    fn key(&self, h: &Handle) -> Result<Path, BackendError> {
        h.validate()?;
        Ok(self.key_of(&h.path()))
    }

    /// The path of `key` relative to the repository root.
    fn relative<'a>(&self, key: &'a str) -> Option<&'a str> {
        if self.prefix.is_empty() {
            Some(key)
        } else {
            key.strip_prefix(self.prefix.as_str())?.strip_prefix('/')
        }
    }

    fn map_err(&self, op: &'static str, object: String, e: object_store::Error) -> BackendError {
        map_error(self.service, op, object, e)
    }

    fn head(&self, h: &Handle, key: &Path) -> Result<u64, BackendError> {
        self.runtime
            .block_on(self.store.head(key))
            .map(|m| m.size)
            .map_err(|e| self.map_err("stat", h.to_string(), e))
    }

    fn write_parts(&self, h: &Handle, key: &Path, data: &[u8]) -> Result<(), BackendError> {
        let part = self.options.part_size.max(5 << 20);
        let concurrency = self.options.part_concurrency.max(1);
        let err = |e| self.map_err("write", h.to_string(), e);
        self.runtime.block_on(async {
            let upload = self.store.put_multipart(key).await.map_err(err)?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, part);
            for chunk in data.chunks(part) {
                if let Err(e) = w.wait_for_capacity(concurrency).await {
                    // Best effort: an aborted upload stores nothing.
                    let _ = w.abort().await;
                    return Err(err(e));
                }
                w.write(chunk);
            }
            w.finish().await.map(|_| ()).map_err(err)
        })
    }
}

fn is_missing_container(e: &BackendError) -> bool {
    matches!(e, BackendError::Service { message, .. }
        if message.contains("NoSuchBucket") || message.contains("ContainerNotFound"))
}

/// Maps an `object_store` error of `op` on `object` to a [`BackendError`].
fn map_error(
    service: Service,
    op: &'static str,
    object: String,
    e: object_store::Error,
) -> BackendError {
    use object_store::Error as E;
    let detail = describe(&e);
    match e {
        E::NotFound { .. }
            if detail.contains("NoSuchBucket") || detail.contains("ContainerNotFound") =>
        {
            BackendError::Service {
                op,
                object,
                message: format!("the {} does not exist ({detail})", service.container_word()),
                transient: false,
            }
        }
        E::NotFound { .. } => BackendError::NotFound { object },
        E::AlreadyExists { .. } | E::Precondition { .. } if op == "write" => {
            BackendError::AlreadyExists { object }
        }
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => BackendError::Service {
            op,
            object,
            message: format!(
                "access denied: check the credentials in the environment (see docs/targets.md): {detail}"
            ),
            transient: false,
        },
        // Listings report 401/403 as generic errors.
        _ if detail.starts_with("HTTP 401") || detail.starts_with("HTTP 403") => {
            BackendError::Service {
                op,
                object,
                message: format!(
                    "access denied: check the credentials in the environment (see docs/targets.md): {detail}"
                ),
                transient: false,
            }
        }
        ref other => BackendError::Service {
            op,
            object,
            transient: is_transient(other, &detail),
            message: detail,
        },
    }
}

/// Whether retrying may help: connection problems, timeouts, 5xx, 429, 408
/// and the services' "slow down" codes.
fn is_transient(e: &object_store::Error, detail: &str) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as K;
            return matches!(
                h.kind(),
                K::Connect | K::Request | K::Timeout | K::Interrupted
            );
        }
        cur = err.source();
    }
    if let Some(status) = status_in(detail) {
        return status >= 500 || status == 429 || status == 408;
    }
    [
        "SlowDown",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
        "ServerBusy",
        "OperationTimedOut",
    ]
    .iter()
    .any(|c| detail.contains(c))
}

/// The HTTP status in an `object_store` message ("status code: 503 ...").
fn status_in(s: &str) -> Option<u16> {
    let i = s.find("status code: ")? + "status code: ".len();
    s.get(i..i + 3)?.parse().ok()
}

/// A short description of an error: the service's code and message when its
/// XML body has them, else the innermost cause (such as "Connection
/// refused"), with the number of retries made.
fn describe(e: &object_store::Error) -> String {
    let mut texts = Vec::new();
    let mut connect = false;
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        texts.push(err.to_string());
        if let Some(h) = err.downcast_ref::<object_store::client::HttpError>() {
            connect |= h.kind() == object_store::client::HttpErrorKind::Connect;
        }
        cur = err.source();
    }
    let all = texts.join(" | ");
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = all.find(&open)? + open.len();
        let len = all[start..].find(&close)?;
        Some(all[start..start + len].trim().to_string())
    };
    let status = status_in(&all)
        .map(|s| format!("HTTP {s}: "))
        .unwrap_or_default();
    // "... after 3 retries, max_retries: ..." in the client's message.
    let retries = all
        .find("after ")
        .and_then(|i| {
            let rest = &all[i..];
            rest.find(" retries").map(|j| &rest[..j + " retries".len()])
        })
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    match (tag("Code"), tag("Message")) {
        (Some(code), Some(msg)) => format!("{status}{code}: {}{retries}", first_line(&msg)),
        (Some(code), None) => format!("{status}{code}{retries}"),
        _ => {
            let inner = texts.last().map(|t| first_line(t)).unwrap_or_default();
            let what = if connect { "cannot connect: " } else { "" };
            if status.is_empty() {
                format!("{what}{inner}{retries}")
            } else {
                format!("{status}{inner}{retries}")
            }
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

impl Backend for ObjectBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
        if kind == ObjectKind::Config {
            return match self.stat(&Handle::config()) {
                Ok(info) => Ok(vec![info]),
                Err(e) if e.is_not_found() => Ok(Vec::new()),
                Err(e) => Err(e),
            };
        }
        let dir = self.key_of(kind.dir());
        let metas = self
            .runtime
            .block_on(self.store.list(Some(&dir)).try_collect::<Vec<_>>())
            .map_err(|e| self.map_err("list", format!("{}s", kind.label()), e))?;
        let mut out = Vec::with_capacity(metas.len());
        for meta in metas {
            let key = meta.location.to_string();
            let Some(rel) = self.relative(&key) else {
                continue;
            };
            let name = rel.rsplit('/').next().unwrap_or(rel);
            let handle = Handle {
                kind,
                name: name.to_string(),
            };
            // Only objects exactly where their handle lives (skips stray
            // keys, such as another tool's files under the prefix).
            if handle.validate().is_ok() && handle.path() == rel {
                out.push(ObjectInfo {
                    handle,
                    size: meta.size,
                });
            }
        }
        Ok(out)
    }

    fn read(&self, h: &Handle) -> Result<Vec<u8>, BackendError> {
        let key = self.key(h)?;
        let err = |e| self.map_err("read", h.to_string(), e);
        self.runtime.block_on(async {
            let r = self.store.get(&key).await.map_err(err)?;
            let bytes = r.bytes().await.map_err(err)?;
            Ok(bytes.to_vec())
        })
    }

    fn read_range(&self, h: &Handle, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        let key = self.key(h)?;
        let out_of_range = |size| BackendError::OutOfRange {
            object: h.to_string(),
            offset,
            len,
            size,
        };
        let end = offset.checked_add(len);
        let end = match end {
            Some(end) if len > 0 => end,
            _ => {
                // Zero-length or overflowing: only the size decides.
                let size = self.head(h, &key)?;
                return match end {
                    Some(end) if end <= size => Ok(Vec::new()),
                    _ => Err(out_of_range(size)),
                };
            }
        };
        let opts = GetOptions {
            range: Some(GetRange::Bounded(offset..end)),
            ..Default::default()
        };
        let err = |e| self.map_err("read", h.to_string(), e);
        let r = self.runtime.block_on(async {
            let r = self.store.get_opts(&key, opts).await?;
            let size = r.meta.size;
            let bytes = r.bytes().await?;
            Ok::<_, object_store::Error>((size, bytes))
        });
        match r {
            Ok((size, bytes)) => {
                if end > size {
                    return Err(out_of_range(size));
                }
                if bytes.len() as u64 != len {
                    return Err(BackendError::Service {
                        op: "read",
                        object: h.to_string(),
                        message: format!(
                            "asked for {len} bytes at offset {offset}, got {}",
                            bytes.len()
                        ),
                        transient: true,
                    });
                }
                Ok(bytes.to_vec())
            }
            Err(e) => {
                let e = err(e);
                if e.is_not_found() {
                    return Err(e);
                }
                // A range starting past the end is refused by the service
                // (416) or by the client: report it with the true size.
                match self.head(h, &key) {
                    Ok(size) if end > size => Err(out_of_range(size)),
                    Ok(_) => Err(e),
                    Err(stat) if stat.is_not_found() => Err(stat),
                    Err(_) => Err(e),
                }
            }
        }
    }

    fn write_new(&self, h: &Handle, data: &[u8]) -> Result<(), BackendError> {
        let key = self.key(h)?;
        if h.kind == ObjectKind::Pack && data.len() > self.options.multipart_threshold {
            match self.head(h, &key) {
                Ok(_) => {
                    return Err(BackendError::AlreadyExists {
                        object: h.to_string(),
                    });
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            return self.write_parts(h, &key, data);
        }
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let payload = PutPayload::from(data.to_vec());
        self.runtime
            .block_on(self.store.put_opts(&key, payload, opts))
            .map(|_| ())
            .map_err(|e| self.map_err("write", h.to_string(), e))
    }

    /// A HEAD (a missing object is NotFound, not created), then one
    /// unconditional single PUT: both services swap the whole object at
    /// once, so a reader gets the old bytes or the new ones.
    fn replace(&self, h: &Handle, data: &[u8]) -> Result<(), BackendError> {
        let key = self.key(h)?;
        self.head(h, &key)?;
        let opts = PutOptions {
            mode: PutMode::Overwrite,
            ..Default::default()
        };
        let payload = PutPayload::from(data.to_vec());
        self.runtime
            .block_on(self.store.put_opts(&key, payload, opts))
            .map(|_| ())
            .map_err(|e| self.map_err("replace", h.to_string(), e))
    }

    fn delete(&self, h: &Handle) -> Result<(), BackendError> {
        let key = self.key(h)?;
        self.head(h, &key)?;
        self.runtime
            .block_on(self.store.delete(&key))
            .map_err(|e| self.map_err("delete", h.to_string(), e))
    }

    fn stat(&self, h: &Handle) -> Result<ObjectInfo, BackendError> {
        let key = self.key(h)?;
        let size = self.head(h, &key)?;
        Ok(ObjectInfo {
            handle: h.clone(),
            size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_in_messages() {
        assert_eq!(
            status_in("Server returned non-2xx status code: 503 Service Unavailable: x"),
            Some(503)
        );
        assert_eq!(status_in("no status here"), None);
    }
}
