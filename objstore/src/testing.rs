//! Test support: the S3 and Azure servers the tests run against, found
//! through the `CAIRN_TEST_*` variables that `scripts/test-servers/*.sh start`
//! prints.
//!
//! A test that needs a server calls [`s3`] or [`azure`]. Without the
//! variables it is skipped with a note on standard error, so `cargo test`
//! works on a machine without the servers; but when `CI` or
//! `CAIRN_REQUIRE_SERVERS=1` is set a missing server panics, so CI cannot
//! pass by testing nothing.

use crate::OpenError;
use crate::backend::{ObjectBackend, Service};
use crate::config::{AzureConfig, Lookup, Options, S3Config};
use crate::location::ObjectLocation;

/// A test server and the bucket or container the tests may use.
#[derive(Debug, Clone)]
pub struct TestTarget {
    /// Which service.
    pub service: Service,
    /// The bucket or container.
    pub container: String,
    /// The environment a `cairn` process needs to reach it (endpoint and
    /// credentials), as the documented variables.
    pub env: Vec<(String, String)>,
}

/// Whether missing servers must fail the tests rather than skip them.
pub fn servers_required() -> bool {
    let set = |n: &str| {
        std::env::var(n)
            .ok()
            .is_some_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
    };
    set("CI") || set("CAIRN_REQUIRE_SERVERS")
}

fn missing(var: &str, script: &str) -> Option<TestTarget> {
    let hint = format!(
        "{var} is not set: start the test server with eval \"$(scripts/test-servers/{script} start)\""
    );
    if servers_required() {
        panic!("{hint} (servers are required because CI or CAIRN_REQUIRE_SERVERS is set)");
    }
    eprintln!("note: skipping: {hint}");
    None
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The S3 test server, or `None` (after a note) when it is not configured.
pub fn s3() -> Option<TestTarget> {
    let Some(endpoint) = var("CAIRN_TEST_S3_ENDPOINT") else {
        return missing("CAIRN_TEST_S3_ENDPOINT", "s3.sh");
    };
    let get = |n: &str, default: &str| var(n).unwrap_or_else(|| default.to_string());
    Some(TestTarget {
        service: Service::S3,
        container: get("CAIRN_TEST_S3_BUCKET", "cairn-test"),
        env: vec![
            ("CAIRN_S3_ENDPOINT".into(), endpoint),
            (
                "AWS_ACCESS_KEY_ID".into(),
                get("CAIRN_TEST_S3_ACCESS_KEY_ID", "test"),
            ),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                get("CAIRN_TEST_S3_SECRET_ACCESS_KEY", "test"),
            ),
            (
                "AWS_REGION".into(),
                get("CAIRN_TEST_S3_REGION", "us-east-1"),
            ),
        ],
    })
}

/// The Azure test server, or `None` (after a note) when it is not
/// configured.
pub fn azure() -> Option<TestTarget> {
    let Some(cs) = var("CAIRN_TEST_AZURE_CONNECTION_STRING") else {
        return missing("CAIRN_TEST_AZURE_CONNECTION_STRING", "azure.sh");
    };
    Some(TestTarget {
        service: Service::Azure,
        container: var("CAIRN_TEST_AZURE_CONTAINER").unwrap_or_else(|| "cairn-test".into()),
        env: vec![("AZURE_STORAGE_CONNECTION_STRING".into(), cs)],
    })
}

/// A prefix no other test run uses: `<tag>-<pid>-<nanoseconds>`.
pub fn unique_prefix(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{tag}-{}-{nanos}", std::process::id())
}

impl TestTarget {
    /// The repository URL of `prefix` in the test bucket or container.
    pub fn url(&self, prefix: &str) -> String {
        match self.service {
            Service::S3 => format!("s3://{}/{prefix}", self.container),
            Service::Azure => format!("azure://{}/{prefix}", self.container),
        }
    }

    /// Looks a variable up in [`TestTarget::env`].
    pub fn lookup(&self, name: &str) -> Option<String> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// Opens the backend for `prefix` with `options`.
    pub fn open_with(&self, prefix: &str, options: &Options) -> Result<ObjectBackend, OpenError> {
        let loc = ObjectLocation {
            container: self.container.clone(),
            prefix: prefix.to_string(),
        };
        let env: Lookup<'_> = &|n: &str| self.lookup(n);
        let cfg_err = |error| OpenError::Config {
            location: self.url(prefix),
            error,
        };
        match self.service {
            Service::S3 => {
                let c = S3Config::from_lookup(env).map_err(cfg_err)?;
                ObjectBackend::s3(&loc, &c, options)
            }
            Service::Azure => {
                let c = AzureConfig::from_lookup(env).map_err(cfg_err)?;
                ObjectBackend::azure(&loc, &c, options)
            }
        }
    }
}
