//! Object stores by URL: `s3://bucket/prefix`, `gs://…`, `az://…`, `memory://`, configured
//! from the usual environment (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`,
//! `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, …) and explicit options.

use std::sync::Arc;

use anyhow::Context;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, RetryConfig};

/// Environment variables that configure object stores, as builder options.
fn environment_options() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| {
            ["AWS_", "GOOGLE_", "AZURE_"]
                .iter()
                .any(|p| k.starts_with(p))
        })
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

/// The store and the prefix inside it that `url` names; `options` (such as `aws_endpoint`)
/// override the environment's.
///
/// # Errors
/// A malformed URL or an unsupported scheme; the URL is named.
pub fn open_store(
    url: &str,
    options: &[(&str, &str)],
) -> anyhow::Result<(Arc<dyn ObjectStore>, StorePath)> {
    let parsed = url::Url::parse(url).with_context(|| format!("URL {url:?}"))?;
    let (store, prefix) = object_store::parse_url_opts(&parsed, all_options(options))
        .with_context(|| format!("URL {url:?}"))?;
    Ok((Arc::from(store), prefix))
}

/// As [`open_store`], with `retry` as the client's own retry policy for S3, GCS and Azure
/// (for example none, where the caller waits out failures itself and reports them).
///
/// # Errors
/// As [`open_store`].
pub fn open_store_retrying(
    url: &str,
    options: &[(&str, &str)],
    retry: RetryConfig,
) -> anyhow::Result<(Arc<dyn ObjectStore>, StorePath)> {
    use object_store::ObjectStoreScheme as Scheme;
    let what = || format!("URL {url:?}");
    let parsed = url::Url::parse(url).with_context(what)?;
    let (scheme, path) = Scheme::parse(&parsed).with_context(what)?;
    let all = all_options(options);
    // The keys each builder knows (others are for the other stores), as `parse_url_opts` does.
    macro_rules! build {
        ($builder:ty) => {{
            let builder = all
                .iter()
                .fold(<$builder>::new().with_url(url), |b, (k, v)| {
                    match k.parse() {
                        Ok(key) => b.with_config(key, v),
                        Err(_) => b,
                    }
                });
            Arc::new(builder.with_retry(retry).build().with_context(what)?) as Arc<dyn ObjectStore>
        }};
    }
    let store = match scheme {
        Scheme::AmazonS3 => build!(object_store::aws::AmazonS3Builder),
        Scheme::GoogleCloudStorage => build!(object_store::gcp::GoogleCloudStorageBuilder),
        Scheme::MicrosoftAzure => build!(object_store::azure::MicrosoftAzureBuilder),
        _ => return open_store(url, options),
    };
    Ok((store, StorePath::parse(path).with_context(what)?))
}

/// The environment's object-store options, overridden by `options`.
fn all_options(options: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all = environment_options();
    all.extend(
        options
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    all
}

/// Whether `location` is an object-store URL rather than a local path (`file://` URLs and
/// plain paths are local).
pub fn is_remote(location: &str) -> bool {
    url::Url::parse(location)
        .is_ok_and(|u| u.scheme() != "file" && u.scheme().len() > 1 && location.contains("://"))
}
