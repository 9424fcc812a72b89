//! The files of `[model.init]`, checked before anything starts: each exists; its sha256 is
//! recorded in the config (so the run identity, every checkpoint manifest and the results cite
//! it) or, when the config pins one, must match it; and its keys and shapes fit the model,
//! loaded the way training loads it (worker tool `check-init`).

use anyhow::{Context, bail, ensure};
use arl_checkpoints::manifest::sha256_of_file;
use arl_contract::config::finetune::Init;
use arl_contract::{JobConfig, PRETRAIN_JOB};

/// Whether any of `jobs` starts from `[model.init]`: pretraining, or a fine-tune from scratch.
fn starts_from_init(config: &JobConfig, jobs: &[String]) -> bool {
    jobs.iter().any(|job| {
        job == PRETRAIN_JOB
            || config
                .finetune_job(job)
                .is_ok_and(|cfg| cfg.init == Init::Scratch)
    })
}

/// Records the sha256 of every `[model.init]` file of `config` that `jobs` start from, and
/// checks that it fits the model; nothing when none is set or no job starts from them.
///
/// # Errors
/// A missing or unreadable file, a hash other than the pinned one, or weights that do not fit
/// the model (the worker's error, naming the file and its keys).
pub fn seal(config: &mut JobConfig, jobs: &[String]) -> anyhow::Result<()> {
    if config.model.init.is_empty() || !starts_from_init(config, jobs) {
        return Ok(());
    }
    let init = &mut config.model.init;
    let files: Vec<(String, std::path::PathBuf)> = init
        .files()
        .into_iter()
        .map(|(key, path)| (key.to_owned(), path.clone()))
        .collect();
    for (key, path) in files {
        ensure!(
            path.is_file(),
            "model.init.{key} = {}: no such file",
            path.display()
        );
        let found = sha256_of_file(&path).with_context(|| format!("model.init.{key}"))?;
        match init.sha256.get(&key) {
            Some(pinned) if *pinned != found => bail!(
                "model.init.{key} = {}: its sha256 is {found}, the config pins \
                 model.init.sha256.{key} = {pinned}",
                path.display()
            ),
            _ => init.sha256.insert(key, found),
        };
    }
    let dir = tempfile::Builder::new()
        .prefix("arl-check-init-")
        .tempdir()
        .context("creating a temporary folder")?;
    let resolved = dir.path().join("config.toml");
    std::fs::write(&resolved, config.resolved_toml()?)
        .with_context(|| format!("writing {}", resolved.display()))?;
    let out = std::process::Command::new(crate::spawn::worker_binary()?)
        .arg("check-init")
        .arg("--config")
        .arg(&resolved)
        .output()
        .context("running arl-worker check-init")?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let error = stderr
            .split_once("arl-worker: error: ")
            .map_or(stderr.trim(), |(_, error)| error.trim());
        bail!("{error}");
    }
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}
