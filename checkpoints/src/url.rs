//! Object stores by URL: `s3://bucket/prefix`, `gs://…`, `az://…`, `memory://`, configured
//! from the usual environment (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`,
//! `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, …) and explicit options.

use std::sync::Arc;

use anyhow::Context;
use object_store::ObjectStore;
use object_store::path::Path as StorePath;

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
    let mut all = environment_options();
    all.extend(
        options
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let (store, prefix) =
        object_store::parse_url_opts(&parsed, all).with_context(|| format!("URL {url:?}"))?;
    Ok((Arc::from(store), prefix))
}

/// Whether `location` is an object-store URL rather than a local path (`file://` URLs and
/// plain paths are local).
pub fn is_remote(location: &str) -> bool {
    url::Url::parse(location)
        .is_ok_and(|u| u.scheme() != "file" && u.scheme().len() > 1 && location.contains("://"))
}
