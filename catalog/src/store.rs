//! The object-store registry: which store serves a URL, how it is configured, and how many
//! requests each store has served.
//!
//! `file://` and `memory://` need no configuration. `s3://bucket/…` is served by the named store
//! whose `buckets` list the bucket, else by the store named `default`, else by a store built
//! from the environment alone. Every store starts from the standard AWS settings (the
//! `AWS_*` environment variables and the shared config / credentials files of the selected
//! profile) and the store's own settings override them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutPayload, RetryConfig};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result};

mod counting;

pub use counting::RequestCount;
use counting::{Counters, CountingStore};

/// The store name that serves every bucket no other store lists.
pub const DEFAULT_STORE: &str = "default";

/// A secret configuration value: usable, but never printed.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// One `[stores.<name>]` section: how to reach an S3-compatible store.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The buckets this store serves. The store named `default` also serves every bucket no
    /// other store lists.
    pub buckets: Vec<String>,
    /// The endpoint, e.g. `http://127.0.0.1:9000` (MinIO); unset: AWS for the region.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
    /// The profile in `~/.aws/config` and `~/.aws/credentials` to read; unset: `AWS_PROFILE`,
    /// else `default`.
    pub profile: Option<String>,
    /// `https://bucket.host/key` instead of `https://host/bucket/key`.
    pub virtual_hosted_style: Option<bool>,
    /// Permit `http://` endpoints.
    pub allow_http: Option<bool>,
    /// Send unsigned requests (public buckets).
    pub skip_signature: Option<bool>,
    /// The store does not enforce create-only writes (`If-None-Match: *`) and exactly one
    /// tarn process writes to it. Without this, tarn refuses to write to such a store.
    pub single_writer: bool,
    /// Retries of a failed request (with exponential backoff). Default 5.
    pub max_retries: Option<usize>,
    /// Give up retrying after this long, in seconds. Default 30.
    pub retry_timeout_secs: Option<u64>,
    /// Limit on one request, in seconds. Default 60.
    pub request_timeout_secs: Option<u64>,
    /// Limit on opening a connection, in seconds. Default 5.
    pub connect_timeout_secs: Option<u64>,
}

/// Named store configurations, as in the `[stores]` section.
pub type StoresConfig = BTreeMap<String, StoreConfig>;

/// Turns a user-supplied location into a URL: `s3://`, `file://`, `memory://`, or a local path
/// (relative paths are taken from the current directory).
pub fn parse_location(location: &str) -> Result<Url> {
    let invalid = |reason: String| Error::InvalidUrl {
        url: location.to_owned(),
        reason,
    };
    if let Ok(url) = Url::parse(location)
        && url.scheme().len() > 1
    {
        return match url.scheme() {
            "file" | "memory" => Ok(url),
            "s3" | "s3a" => {
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(invalid("names no bucket (s3://bucket/prefix)".to_owned()));
                }
                // A warehouse is a folder: its URL ends in `/`.
                let mut url = url;
                if !url.path().ends_with('/') {
                    url.set_path(&format!("{}/", url.path()));
                }
                Ok(url)
            }
            other => Err(invalid(format!(
                "scheme {other:?} is not supported (s3://, file:// and memory:// are)"
            ))),
        };
    }
    let path = std::path::absolute(location).map_err(|e| invalid(e.to_string()))?;
    Url::from_directory_path(&path).map_err(|()| invalid("not an absolute path".to_owned()))
}

/// Creates the folder behind a `file://` URL (local Delta tables and warehouses need it to
/// exist); other URLs need nothing.
pub fn ensure_local_folder(url: &Url) -> Result<()> {
    if url.scheme() != "file" {
        return Ok(());
    }
    let dir = url.to_file_path().map_err(|()| Error::InvalidUrl {
        url: url.to_string(),
        reason: "not a local path".to_owned(),
    })?;
    std::fs::create_dir_all(&dir).map_err(|e| Error::InvalidUrl {
        url: url.to_string(),
        reason: format!("cannot create folder {}: {e}", dir.display()),
    })
}

/// Every object store tarn talks to, built on first use and shared.
#[derive(Default)]
pub struct ObjectStores {
    configs: StoresConfig,
    /// bucket → store name, from the `buckets` lists.
    bucket_owner: HashMap<String, String>,
    /// `scheme://authority` → the store serving it.
    built: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
    /// store name → its request counters.
    counters: Mutex<BTreeMap<String, Arc<Counters>>>,
    /// store name → whether it enforces create-only writes (once probed).
    probed: tokio::sync::Mutex<HashMap<String, bool>>,
}

impl fmt::Debug for ObjectStores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStores")
            .field("configs", &self.configs)
            .finish_non_exhaustive()
    }
}

impl ObjectStores {
    /// A registry over `configs`. A bucket listed by two stores is an error.
    pub fn new(configs: StoresConfig) -> Result<Self> {
        let mut bucket_owner = HashMap::new();
        for (name, config) in &configs {
            crate::model::validate_name(name).map_err(|_| Error::Config {
                key: format!("stores.{name}"),
                reason: "a store name is lower-case letters, digits and _".to_owned(),
            })?;
            for bucket in &config.buckets {
                if let Some(other) = bucket_owner.insert(bucket.clone(), name.clone()) {
                    return Err(Error::Config {
                        key: format!("stores.{name}.buckets"),
                        reason: format!("bucket {bucket:?} is already served by store {other:?}"),
                    });
                }
            }
        }
        Ok(Self {
            configs,
            bucket_owner,
            ..Self::default()
        })
    }

    /// The name of the store serving `url`: `local`, `memory`, or a configured store's name.
    pub fn store_name(&self, url: &Url) -> String {
        match url.scheme() {
            "file" => "local".to_owned(),
            "memory" => "memory".to_owned(),
            _ => {
                let bucket = url.host_str().unwrap_or_default();
                self.bucket_owner
                    .get(bucket)
                    .cloned()
                    .unwrap_or_else(|| DEFAULT_STORE.to_owned())
            }
        }
    }

    fn config(&self, name: &str) -> Option<&StoreConfig> {
        self.configs.get(name)
    }

    /// The store serving `url` (rooted at the bucket, or at the filesystem root) and the path
    /// of `url` inside it.
    pub fn resolve(&self, url: &Url) -> Result<(Arc<dyn ObjectStore>, Path)> {
        let path = Path::from_url_path(url.path()).map_err(|e| Error::InvalidUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        Ok((self.store(url)?, path))
    }

    /// The store serving `url`'s scheme and authority, built on first use.
    pub fn store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let key = format!("{}://{}", url.scheme(), url.authority());
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = built.get(&key) {
            return Ok(Arc::clone(store));
        }
        let name = self.store_name(url);
        let inner: Arc<dyn ObjectStore> = match url.scheme() {
            "file" => Arc::new(LocalFileSystem::new()),
            "memory" => Arc::new(InMemory::new()),
            "s3" | "s3a" => self.build_s3(&name, url.host_str().unwrap_or_default())?,
            other => {
                return Err(Error::InvalidUrl {
                    url: url.to_string(),
                    reason: format!("scheme {other:?} is not supported"),
                });
            }
        };
        let counters = Arc::clone(
            self.counters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(name)
                .or_default(),
        );
        let store: Arc<dyn ObjectStore> = Arc::new(CountingStore::new(inner, counters));
        built.insert(key, Arc::clone(&store));
        Ok(store)
    }

    fn build_s3(&self, name: &str, bucket: &str) -> Result<Arc<dyn ObjectStore>> {
        let config = self.config(name).cloned().unwrap_or_default();
        let settings = s3_settings(&config, &std::env::vars().collect(), &AwsFiles::from_env());
        let client = ClientOptions::new()
            .with_timeout(Duration::from_secs(
                config.request_timeout_secs.unwrap_or(60),
            ))
            .with_connect_timeout(Duration::from_secs(
                config.connect_timeout_secs.unwrap_or(5),
            ));
        let retry = RetryConfig {
            max_retries: config.max_retries.unwrap_or(5),
            retry_timeout: Duration::from_secs(config.retry_timeout_secs.unwrap_or(30)),
            ..RetryConfig::default()
        };
        let mut builder = AmazonS3Builder::new()
            .with_client_options(client)
            .with_retry(retry);
        for (key, value) in settings {
            builder = builder.with_config(key, value);
        }
        let store = builder
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| Error::Config {
                key: format!("stores.{name}"),
                reason: format!("cannot build the S3 client for bucket {bucket:?}: {e}"),
            })?;
        Ok(Arc::new(store))
    }

    /// How many requests of each kind every store has served since start-up.
    pub fn request_counts(&self) -> Vec<RequestCount> {
        let counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        counters
            .iter()
            .flat_map(|(name, c)| c.snapshot(name))
            .collect()
    }

    /// Fails unless the store serving `url` may be written by more than one process: it must
    /// refuse to create an object that exists (checked once per store by writing a probe
    /// object twice), or be marked `single_writer`.
    pub async fn check_writable(&self, url: &Url) -> Result<()> {
        let name = self.store_name(url);
        if url.scheme() != "s3" && url.scheme() != "s3a" {
            // LocalFileSystem creates with link-or-rename-noreplace; InMemory locks.
            return Ok(());
        }
        if self.config(&name).is_some_and(|c| c.single_writer) {
            return Ok(());
        }
        let mut probed = self.probed.lock().await;
        let enforced = match probed.get(&name) {
            Some(enforced) => *enforced,
            None => {
                let enforced = self.probe(url).await?;
                probed.insert(name.clone(), enforced);
                enforced
            }
        };
        if enforced {
            Ok(())
        } else {
            Err(Error::NoConditionalWrites {
                store: name.clone(),
                url: url.to_string(),
                key: format!("stores.{name}.single_writer"),
            })
        }
    }

    /// Writes the same probe object twice with create-only puts; true when the second fails.
    async fn probe(&self, url: &Url) -> Result<bool> {
        let (store, root) = self.resolve(url)?;
        let probe = root
            .clone()
            .join("_tarn")
            .join("probe")
            .join(uuid::Uuid::new_v4().to_string());
        let put = |store: Arc<dyn ObjectStore>, path: Path| async move {
            store
                .put_opts(
                    &path,
                    PutPayload::from_static(b"tarn conditional-write probe"),
                    PutMode::Create.into(),
                )
                .await
        };
        let store_err = |source| Error::ObjectStore {
            path: format!("{url}_tarn/probe/ (store \"{}\")", self.store_name(url)),
            source,
        };
        let enforced = match put(Arc::clone(&store), probe.clone()).await {
            Ok(_) => match put(Arc::clone(&store), probe.clone()).await {
                Ok(_) => false,
                Err(object_store::Error::AlreadyExists { .. }) => true,
                Err(e) => return Err(store_err(e)),
            },
            // The client itself does not do create-only puts on this store.
            Err(object_store::Error::NotImplemented { .. }) => false,
            Err(e) => return Err(store_err(e)),
        };
        if let Err(e) = store.delete(&probe).await {
            tracing::debug!(error = %e, "could not remove the conditional-write probe");
        }
        tracing::info!(store = %self.store_name(url), enforced, "probed conditional writes");
        Ok(enforced)
    }
}

/// The shared AWS config and credentials files, as `profile → key → value`.
#[derive(Debug, Default)]
struct AwsFiles {
    config: HashMap<String, HashMap<String, String>>,
    credentials: HashMap<String, HashMap<String, String>>,
}

impl AwsFiles {
    fn from_env() -> Self {
        let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
        let path = |var: &str, default: &str| {
            std::env::var_os(var)
                .map(std::path::PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
        };
        let read = |p: Option<std::path::PathBuf>| {
            p.and_then(|p| std::fs::read_to_string(p).ok())
                .map(|text| parse_ini(&text))
                .unwrap_or_default()
        };
        Self {
            config: read(path("AWS_CONFIG_FILE", "config")),
            credentials: read(path("AWS_SHARED_CREDENTIALS_FILE", "credentials")),
        }
    }

    /// The settings of `profile`: the credentials file's section, then the config file's
    /// (`[profile name]`, or `[default]`).
    fn profile(&self, profile: &str) -> HashMap<String, String> {
        let section = if profile == "default" {
            "default".to_owned()
        } else {
            format!("profile {profile}")
        };
        let mut values = self.config.get(&section).cloned().unwrap_or_default();
        values.extend(self.credentials.get(profile).cloned().unwrap_or_default());
        values
    }
}

fn parse_ini(text: &str) -> HashMap<String, HashMap<String, String>> {
    let mut sections: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut current = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.split_whitespace().collect::<Vec<_>>().join(" "));
        } else if let (Some(section), Some((key, value))) = (&current, line.split_once('=')) {
            sections
                .entry(section.clone())
                .or_default()
                .insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    sections
}

/// The S3 settings of one store: the profile's (if chosen implicitly), overridden by the
/// `AWS_*` environment, overridden by an explicitly chosen profile, overridden by the store's
/// own settings.
fn s3_settings(
    config: &StoreConfig,
    env: &HashMap<String, String>,
    files: &AwsFiles,
) -> Vec<(AmazonS3ConfigKey, String)> {
    let mut settings: BTreeMap<String, (AmazonS3ConfigKey, String)> = BTreeMap::new();
    let mut set = |key: &str, value: &str| {
        if let Ok(parsed) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            settings.insert(parsed.as_ref().to_owned(), (parsed, value.to_owned()));
        }
    };
    let profile_settings = |name: &str| {
        files
            .profile(name)
            .into_iter()
            .filter_map(|(key, value)| {
                let key = match key.as_str() {
                    "aws_access_key_id" | "aws_secret_access_key" | "aws_session_token" => key,
                    "region" | "endpoint_url" => format!("aws_{key}"),
                    _ => return None,
                };
                Some((key, value))
            })
            .collect::<Vec<_>>()
    };
    let explicit_profile = config.profile.as_deref();
    if explicit_profile.is_none() {
        let implicit = env.get("AWS_PROFILE").map_or("default", String::as_str);
        for (key, value) in profile_settings(implicit) {
            set(&key, &value);
        }
    }
    for (key, value) in env {
        if key.starts_with("AWS_") && key != "AWS_PROFILE" {
            set(key, value);
        }
    }
    if let Some(profile) = explicit_profile {
        for (key, value) in profile_settings(profile) {
            set(&key, &value);
        }
    }
    let own = [
        ("aws_endpoint", config.endpoint.clone()),
        ("aws_region", config.region.clone()),
        ("aws_access_key_id", config.access_key_id.clone()),
        (
            "aws_secret_access_key",
            config.secret_access_key.as_ref().map(|s| s.0.clone()),
        ),
        (
            "aws_session_token",
            config.session_token.as_ref().map(|s| s.0.clone()),
        ),
        (
            "aws_virtual_hosted_style_request",
            config.virtual_hosted_style.map(|b| b.to_string()),
        ),
        ("aws_allow_http", config.allow_http.map(|b| b.to_string())),
        (
            "aws_skip_signature",
            config.skip_signature.map(|b| b.to_string()),
        ),
    ];
    for (key, value) in own {
        if let Some(value) = value {
            set(key, &value);
        }
    }
    settings.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_become_file_urls() {
        let url = parse_location("some/dir").expect("valid");
        assert_eq!(url.scheme(), "file");
        assert!(url.path().ends_with("/some/dir/"), "{url}");
    }

    #[test]
    fn unsupported_schemes_are_refused() {
        let err = parse_location("gopher://x/y").expect_err("refused");
        assert!(err.to_string().contains("gopher"), "{err}");
        let err = parse_location("s3:///no-bucket").expect_err("refused");
        assert!(err.to_string().contains("bucket"), "{err}");
        assert_eq!(
            parse_location("s3://b/lake/").expect("ok").as_str(),
            "s3://b/lake/"
        );
    }

    #[test]
    fn buckets_map_to_their_store_and_the_rest_to_default() {
        let mut configs = StoresConfig::new();
        configs.insert(
            "raw".into(),
            StoreConfig {
                buckets: vec!["landing".into()],
                ..Default::default()
            },
        );
        let stores = ObjectStores::new(configs.clone()).expect("valid");
        let url = |s: &str| Url::parse(s).expect("url");
        assert_eq!(stores.store_name(&url("s3://landing/x")), "raw");
        assert_eq!(stores.store_name(&url("s3://other/x")), "default");
        assert_eq!(stores.store_name(&url("file:///tmp/x")), "local");

        configs.insert(
            "again".into(),
            StoreConfig {
                buckets: vec!["landing".into()],
                ..Default::default()
            },
        );
        let err = ObjectStores::new(configs).expect_err("bucket twice");
        assert!(err.to_string().contains("landing"), "{err}");
    }

    fn setting(settings: &[(AmazonS3ConfigKey, String)], key: &str) -> Option<String> {
        settings
            .iter()
            .find(|(k, _)| k.as_ref() == key)
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn settings_layer_profile_env_and_store() {
        let files = AwsFiles {
            config: parse_ini(
                "[default]\nregion = eu-west-1\n[profile minio]\nregion = us-east-2\nendpoint_url = http://m:9000\n",
            ),
            credentials: parse_ini(
                "[default]\naws_access_key_id = DEFAULTKEY\naws_secret_access_key = s1\n\
                 [minio]\naws_access_key_id = MINIOKEY\naws_secret_access_key = s2\n",
            ),
        };
        let env: HashMap<String, String> = [
            ("AWS_ACCESS_KEY_ID", "ENVKEY"),
            ("AWS_ENDPOINT_URL", "http://env:9000"),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_PROFILE", "minio"),
            ("HOME", "/nowhere"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();

        // Implicit profile (AWS_PROFILE): the environment wins over it.
        let s = s3_settings(&StoreConfig::default(), &env, &files);
        assert_eq!(setting(&s, "aws_access_key_id").as_deref(), Some("ENVKEY"));
        assert_eq!(setting(&s, "aws_secret_access_key").as_deref(), Some("s2"));
        assert_eq!(setting(&s, "aws_region").as_deref(), Some("us-east-2"));
        assert_eq!(
            setting(&s, "aws_endpoint").as_deref(),
            Some("http://env:9000")
        );
        assert_eq!(setting(&s, "allow_http").as_deref(), Some("true"));

        // An explicit profile wins over the environment; the store's own settings win over all.
        let config = StoreConfig {
            profile: Some("default".into()),
            endpoint: Some("http://own:1".into()),
            secret_access_key: Some(Secret::new("own-secret")),
            ..Default::default()
        };
        let s = s3_settings(&config, &env, &files);
        assert_eq!(
            setting(&s, "aws_access_key_id").as_deref(),
            Some("DEFAULTKEY")
        );
        assert_eq!(
            setting(&s, "aws_secret_access_key").as_deref(),
            Some("own-secret")
        );
        assert_eq!(setting(&s, "aws_region").as_deref(), Some("eu-west-1"));
        assert_eq!(setting(&s, "aws_endpoint").as_deref(), Some("http://own:1"));
    }

    #[test]
    fn secrets_do_not_print() {
        let config = StoreConfig {
            secret_access_key: Some(Secret::new("hunter2")),
            session_token: Some(Secret::new("tok3n")),
            ..Default::default()
        };
        let printed = format!("{config:?}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("tok3n"),
            "{printed}"
        );
    }

    #[tokio::test]
    async fn local_and_memory_stores_are_shared_and_counted() {
        let stores = ObjectStores::default();
        let url = Url::parse("memory:///wh/").expect("url");
        let (a, root) = stores.resolve(&url).expect("store");
        let (b, _) = stores.resolve(&url).expect("store");
        a.put(&root.clone().join("x"), PutPayload::from_static(b"1"))
            .await
            .expect("put");
        b.get(&root.join("x")).await.expect("same store");
        let counts = stores.request_counts();
        let count = |op: &str| {
            counts
                .iter()
                .find(|c| c.store == "memory" && c.operation == op)
                .map_or(0, |c| c.requests)
        };
        assert_eq!(count("put"), 1);
        assert_eq!(count("get"), 1);
        stores.check_writable(&url).await.expect("memory is safe");
    }
}
