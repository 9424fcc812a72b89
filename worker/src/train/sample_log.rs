//! The sample log (`[train] log_samples`): each rank appends, for every step it trains, the
//! samples it drew, as `{"step":S,"world":T,"samples":[[shard,item],…]}` lines (T: the world's
//! run token, the same on all its ranks). A step redone after a failure appears again, in the
//! world that redid it; the last world to train a step is the one that counted.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::data::stream::Sample;

/// One rank's sample log.
pub struct SampleLog {
    path: PathBuf,
    file: std::fs::File,
    world: String,
}

impl SampleLog {
    /// Appends to `path` (its folder created).
    ///
    /// # Errors
    /// The folder or file cannot be created (named).
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            file,
            world: std::env::var(arl_contract::rank_env::RUN_TOKEN_VAR).unwrap_or_default(),
        })
    }

    /// Records the samples of step `step`.
    ///
    /// # Errors
    /// The line cannot be written (the file named).
    pub fn record(&mut self, step: u64, samples: &[Sample]) -> anyhow::Result<()> {
        let ids: Vec<[u32; 2]> = samples.iter().map(|s| [s.at.shard, s.at.item]).collect();
        let line = serde_json::json!({ "step": step, "world": self.world, "samples": ids });
        writeln!(self.file, "{line}").with_context(|| format!("writing {}", self.path.display()))
    }
}
