//! Where templates and backups are kept: one [`ObjectStoreConfig`] opens an S3-compatible
//! bucket, a local directory or an in-memory store, the same way for the panel (which
//! publishes template layers) and the daemon (which reads them and writes backups).

use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// An object store, as configured (TOML / JSON).
///
/// | `url` | store |
/// |---|---|
/// | `s3://bucket[/prefix]` | an S3-compatible bucket; `endpoint`, `region` and the keys below |
/// | `file:///absolute/dir[/prefix]` | a local directory (created if missing) |
/// | `memory://` | in memory, for tests and embedding (lost when the process ends) |
///
/// Every key the store sees is under the prefix (the URL's path), so one bucket can hold
/// several panels' templates and backups side by side.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectStoreConfig {
    /// See the table above.
    pub url: String,
    /// S3 endpoint, for S3-compatible servers (`http://127.0.0.1:9000`); AWS when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// S3 region (`us-east-1` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// S3 access key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// S3 secret access key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    /// Allow a plain-HTTP endpoint (`http://…`); refused otherwise. Nothing checks that the
    /// endpoint is on loopback or a private network: set it only for such a server (a local
    /// MinIO, a test), never across an untrusted network.
    #[serde(default)]
    pub allow_http: bool,
    /// Longest wait without progress, in seconds (`300` when unset): for templates
    /// ([`ObjectStoreTemplates`](crate::ObjectStoreTemplates)) a small request (a manifest,
    /// a listing, a check, one upload request) fails after that long, and a blob download
    /// after that long without receiving a byte; a big transfer that keeps making progress
    /// is never cut, whatever its length. The store's client itself has no total timeout,
    /// only a 10 s connect timeout. The daemon's backups (`nexus-wings`' `BackupStore`) use
    /// the same value: each request (starting an upload, one 8 MiB part, completing,
    /// `HEAD`, `GET`, listing, deleting) fails after that long without an answer, and an
    /// archive being read after that long without a byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_secs: Option<u64>,
}

impl std::fmt::Debug for ObjectStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log line.
        f.debug_struct("ObjectStoreConfig")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<redacted>"))
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// A configuration that cannot open a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageConfigError {
    /// The URL does not parse or names an unknown scheme.
    #[error("object store url `{url}`: {reason}")]
    Url {
        /// The URL as configured.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The store refused the configuration (a bad endpoint, missing credentials).
    #[error("object store `{url}`: {source}")]
    Store {
        /// The URL as configured.
        url: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
}

impl ObjectStoreConfig {
    /// A store in a local directory (`dir` made absolute against the current directory if
    /// it is not; characters such as `#`, `%` or `?` in it are encoded in the URL).
    pub fn local(dir: &std::path::Path) -> Self {
        let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        match url::Url::from_directory_path(&absolute) {
            Ok(url) => Self::from_url(url.as_str().trim_end_matches('/')),
            // Not representable (not absolute): `open` refuses it, naming the path.
            Err(()) => Self::from_url(format!("file://{}", dir.display())),
        }
    }

    /// The wait without progress after which a template or backup request fails (see
    /// [`request_timeout_secs`](Self::request_timeout_secs)).
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs.unwrap_or(300).max(1))
    }

    /// A store at `url` with every other setting left unset.
    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
            request_timeout_secs: None,
        }
    }

    /// A bucket `url` (`s3://bucket/prefix`) on the S3-compatible server at `endpoint`,
    /// signed with these keys; every other setting left unset (`allow_http` off).
    pub fn s3_compatible(
        url: impl Into<String>,
        endpoint: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        Self {
            endpoint: Some(endpoint.into()),
            access_key_id: Some(access_key_id.into()),
            secret_access_key: Some(secret_access_key.into()),
            ..Self::from_url(url)
        }
    }

    /// Opens the store; every key it is asked for is under the URL's prefix.
    pub fn open(&self) -> Result<Arc<dyn ObjectStore>, StorageConfigError> {
        let bad = |reason: &str| StorageConfigError::Url { url: self.url.clone(), reason: reason.into() };
        let url = url::Url::parse(&self.url).map_err(|e| bad(&e.to_string()))?;
        let store_err = |source| StorageConfigError::Store { url: self.url.clone(), source };
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "memory" => Arc::new(object_store::memory::InMemory::new()),
            "file" => {
                if url.host_str().is_some_and(|h| !h.is_empty()) {
                    return Err(bad("a file URL names no host: file:///absolute/dir"));
                }
                let dir = url.to_file_path().map_err(|()| bad("not an absolute directory"))?;
                std::fs::create_dir_all(&dir).map_err(|e| bad(&format!("creating {}: {e}", dir.display())))?;
                // The prefix is the directory itself here.
                let local = object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(store_err)?;
                return Ok(Arc::new(local));
            }
            #[cfg(feature = "s3")]
            "s3" => {
                let bucket =
                    url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| bad("no bucket: s3://bucket/prefix"))?;
                // No total timeout: it would cut a big blob on a slow link however steadily it
                // flows. Stalls are caught by the connect timeout and by the readers' own
                // timeouts without progress (`request_timeout`).
                let client = object_store::ClientOptions::new()
                    .with_allow_http(self.allow_http)
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_timeout_disabled();
                let mut builder = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(self.region.clone().unwrap_or_else(|| "us-east-1".into()))
                    .with_client_options(client)
                    .with_retry(object_store::RetryConfig {
                        max_retries: 3,
                        retry_timeout: Duration::from_secs(60),
                        backoff: object_store::BackoffConfig::default(),
                    });
                if let Some(endpoint) = &self.endpoint {
                    builder = builder.with_endpoint(endpoint).with_virtual_hosted_style_request(false);
                }
                if let Some(key) = &self.access_key_id {
                    builder = builder.with_access_key_id(key);
                }
                if let Some(secret) = &self.secret_access_key {
                    builder = builder.with_secret_access_key(secret);
                }
                Arc::new(builder.build().map_err(store_err)?)
            }
            other => return Err(bad(&format!("unknown scheme `{other}` (s3, file, memory)"))),
        };
        // (A file URL's path is the directory, percent-encoded: not a prefix.)
        let prefix = ObjectPath::parse(url.path().trim_matches('/')).map_err(|e| bad(&e.to_string()))?;
        Ok(if prefix.as_ref().is_empty() { store } else { Arc::new(PrefixStore::new(store, prefix)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_unknown_schemes_and_hosts() {
        assert!(matches!(ObjectStoreConfig::from_url("ftp://x/y").open(), Err(StorageConfigError::Url { .. })));
        assert!(matches!(ObjectStoreConfig::from_url("file://host/dir").open(), Err(StorageConfigError::Url { .. })));
        assert!(matches!(ObjectStoreConfig::from_url("not a url").open(), Err(StorageConfigError::Url { .. })));
    }

    #[test]
    fn local_paths_are_encoded() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("a #b %c ?d");
        let config = ObjectStoreConfig::local(&odd);
        assert!(config.url.starts_with("file:///"), "{}", config.url);
        assert!(!config.url.contains('#') && !config.url.contains('?'), "{}", config.url);
        config.open().unwrap();
        assert!(odd.is_dir());
    }

    #[test]
    fn the_secret_stays_out_of_debug() {
        let mut config = ObjectStoreConfig::from_url("s3://b/p");
        config.secret_access_key = Some("hunter2".into());
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
