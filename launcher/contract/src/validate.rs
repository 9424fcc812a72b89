//! One validation pass over a whole job config: every section's values, the checks across
//! sections, and the inputs the jobs to run need. Each failure names the dotted key and the
//! rule it breaks.

use std::path::Path;

use anyhow::{bail, ensure};

use crate::config::JobConfig;
use crate::config::finetune::{FinetuneConfig, Task};
use crate::config::launch::MAX_BACKOFF_S;
use crate::config::model::{ModelConfig, TextFamily};
use crate::config::{PRETRAIN_JOB, data::DataConfig};

/// The longest wait a timeout may ask for: a week.
pub const MAX_TIMEOUT_S: f64 = 7.0 * 24.0 * 3600.0;
/// The largest all-reduce bucket: 4 GiB.
const MAX_BUCKET_MB: f64 = 4096.0;
/// The most workers on one node.
const MAX_NPROC: usize = 1024;

fn positive(key: &str, value: i64) -> anyhow::Result<()> {
    ensure!(value > 0, "{key} must be at least 1, not {value}");
    Ok(())
}

fn at_least_one(key: &str, value: u64) -> anyhow::Result<()> {
    ensure!(value > 0, "{key} must be at least 1");
    Ok(())
}

fn divides(key: &str, width: i64, heads_key: &str, heads: i64) -> anyhow::Result<()> {
    ensure!(
        heads > 0 && width % heads == 0,
        "{key} = {width} must be a multiple of {heads_key} = {heads}"
    );
    Ok(())
}

fn fraction(key: &str, value: f64, low_open: bool) -> anyhow::Result<()> {
    let ok = value.is_finite() && value < 1.0 && if low_open { value > 0.0 } else { value >= 0.0 };
    let low = if low_open { "above 0" } else { "at least 0" };
    ensure!(ok, "{key} must be {low} and below 1, not {value}");
    Ok(())
}

fn seconds(key: &str, value: f64) -> anyhow::Result<()> {
    ensure!(
        value.is_finite() && value > 0.0 && value <= MAX_TIMEOUT_S,
        "{key} must be a positive number of seconds up to {MAX_TIMEOUT_S} (a week), not {value}"
    );
    Ok(())
}

fn non_negative(key: &str, value: f64) -> anyhow::Result<()> {
    ensure!(
        value.is_finite() && value >= 0.0,
        "{key} must be a finite number of at least 0, not {value}"
    );
    Ok(())
}

fn rate(key: &str, value: f64) -> anyhow::Result<()> {
    ensure!(
        value.is_finite() && value > 0.0,
        "{key} must be a positive finite number, not {value}"
    );
    Ok(())
}

/// Whether `name` can name a folder: not empty, no `/`, not `.` or `..`, nothing hidden.
pub fn folder_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\', '\0'])
}

/// The most text tokens the text model's position table holds (RoBERTa's positions start
/// after the padding id).
pub fn max_text_positions(model: &ModelConfig) -> i64 {
    match model.text.family {
        TextFamily::Roberta => model.text.max_positions - model.text.pad_token_id - 1,
        TextFamily::Bert => model.text.max_positions,
    }
}

fn text_len(key: &str, len: usize, model: &ModelConfig) -> anyhow::Result<()> {
    let most = max_text_positions(model);
    ensure!(
        len >= 8 && len as i64 <= most,
        "{key} = {len} must be between 8 and {most}, the text model's positions \
         (model.text.max_positions = {})",
        model.text.max_positions
    );
    Ok(())
}

/// A global batch split over `world` ranks and `accum` micro-batches of at least `least`
/// samples each.
pub fn batch_split(
    key: &str,
    batch: usize,
    world: usize,
    accum: usize,
    least: usize,
) -> anyhow::Result<()> {
    let per_rank = batch / world.max(1);
    ensure!(
        per_rank * world == batch && per_rank.is_multiple_of(accum) && per_rank / accum >= least,
        "{key} = {batch} must split evenly over {world} ranks and {accum} micro-batches each, \
         of at least {least} samples"
    );
    Ok(())
}

impl JobConfig {
    /// Checks every section, and that the inputs of `jobs` (`pretrain` and fine-tune names)
    /// are set.
    ///
    /// # Errors
    /// The first value that breaks a rule, named by its dotted key.
    pub fn validate(&self, jobs: &[String]) -> anyhow::Result<()> {
        self.validate_pipeline()?;
        self.validate_inputs(jobs)?;
        self.validate_launch()?;
        self.validate_model()?;
        self.validate_pretraining()?;
        for (name, section) in &self.finetune {
            ensure!(
                folder_name(name),
                "[finetune.{name}]: a job name must be usable as a folder name (no '/', not \
                 '.' or '..', not hidden)"
            );
            self.validate_finetune(&section.resolve(name)?)?;
        }
        if self.launch.nproc_per_node > 0 {
            let world = self.launch.nproc_per_node * self.launch.nnodes;
            self.validate_world(jobs, world)?;
        }
        Ok(())
    }

    /// The batch sizes of `jobs` against a world of `world` ranks.
    ///
    /// # Errors
    /// A global batch that does not split evenly (named).
    pub fn validate_world(&self, jobs: &[String], world: usize) -> anyhow::Result<()> {
        let train = &self.train;
        if jobs.iter().any(|j| j == PRETRAIN_JOB) {
            // ITM needs a negative: two samples per micro-batch.
            batch_split(
                "train.global_batch",
                train.global_batch,
                world,
                train.grad_accum,
                2,
            )?;
        }
        for (name, section) in self.finetune.iter().filter(|(n, _)| jobs.contains(n)) {
            let job = section.resolve(name)?;
            batch_split(
                &format!("finetune.{name}.global_batch"),
                job.global_batch,
                world,
                job.grad_accum,
                1,
            )?;
        }
        Ok(())
    }

    fn validate_launch(&self) -> anyhow::Result<()> {
        let launch = &self.launch;
        ensure!(
            launch.nproc_per_node <= MAX_NPROC,
            "launch.nproc_per_node must be at most {MAX_NPROC}, not {}",
            launch.nproc_per_node
        );
        at_least_one("launch.nnodes", launch.nnodes as u64)?;
        ensure!(
            launch.node_rank < launch.nnodes,
            "launch.node_rank = {} must be below launch.nnodes = {}",
            launch.node_rank,
            launch.nnodes
        );
        ensure!(
            !launch.master_addr.trim().is_empty(),
            "launch.master_addr must name a host"
        );
        ensure!(
            launch.min_nnodes <= launch.nnodes,
            "launch.min_nnodes = {} must be at most launch.nnodes = {}",
            launch.min_nnodes,
            launch.nnodes
        );
        seconds("launch.rejoin_timeout_s", launch.rejoin_timeout_s)?;
        ensure!(
            launch.restart_backoff_s.is_finite()
                && (0.0..=MAX_BACKOFF_S).contains(&launch.restart_backoff_s),
            "launch.restart_backoff_s must be between 0 and {MAX_BACKOFF_S} seconds, not {}",
            launch.restart_backoff_s
        );
        seconds("launch.hang_margin_s", launch.hang_margin_s)?;
        seconds("launch.hang_slow_s", launch.hang_slow_s)?;
        ensure!(
            launch.kill_grace_s.is_finite() && (0.0..=MAX_TIMEOUT_S).contains(&launch.kill_grace_s),
            "launch.kill_grace_s must be between 0 and {MAX_TIMEOUT_S} seconds, not {}",
            launch.kill_grace_s
        );
        let dist = &self.dist;
        seconds("dist.init_timeout_s", dist.init_timeout_s)?;
        seconds("dist.timeout_s", dist.timeout_s)?;
        ensure!(
            dist.bucket_mb.is_finite() && dist.bucket_mb > 0.0 && dist.bucket_mb <= MAX_BUCKET_MB,
            "dist.bucket_mb must be above 0 and at most {MAX_BUCKET_MB}, not {}",
            dist.bucket_mb
        );
        let data = &self.data;
        fraction("data.max_bad_fraction", data.max_bad_fraction, false)?;
        seconds("data.storage_wait_s", data.storage_wait_s)?;
        ensure!(
            data.storage_wait_s < dist.timeout_s,
            "data.storage_wait_s = {} must be below dist.timeout_s = {}: the peers of a rank \
             that waits for storage wait for it in a collective, and would time out first",
            data.storage_wait_s,
            dist.timeout_s
        );
        Ok(())
    }

    fn validate_model(&self) -> anyhow::Result<()> {
        let m = &self.model;
        let v = &m.vision;
        for (key, value) in [
            ("model.vision.image_size", v.image_size),
            ("model.vision.patch_size", v.patch_size),
            ("model.vision.width", v.width),
            ("model.vision.layers", v.layers),
            ("model.text.vocab_size", m.text.vocab_size),
            ("model.text.layers", m.text.layers),
            ("model.text.intermediate", m.text.intermediate),
            ("model.text.max_positions", m.text.max_positions),
            ("model.text.type_vocab_size", m.text.type_vocab_size),
            ("model.fusion.layers", m.fusion.layers),
            ("model.fusion.intermediate", m.fusion.intermediate),
            (
                "model.fusion.entity_intermediate",
                m.fusion.entity_intermediate,
            ),
            ("model.mim.layers", m.mim.layers),
            ("model.entity.gat_heads", m.entity.gat_heads),
            ("model.entity.gat_head_width", m.entity.gat_head_width),
        ] {
            positive(key, value)?;
        }
        ensure!(
            v.image_size % v.patch_size == 0,
            "model.vision.image_size = {} must be a multiple of model.vision.patch_size = {}",
            v.image_size,
            v.patch_size
        );
        positive("model.vision.layers (the blocks built)", v.built_layers())?;
        divides("model.vision.width", v.width, "model.vision.heads", v.heads)?;
        divides(
            "model.text.hidden",
            m.text.hidden,
            "model.text.heads",
            m.text.heads,
        )?;
        divides(
            "model.fusion.hidden",
            m.fusion.hidden,
            "model.fusion.heads",
            m.fusion.heads,
        )?;
        divides(
            "model.fusion.entity_hidden",
            m.fusion.entity_hidden,
            "model.fusion.entity_heads",
            m.fusion.entity_heads,
        )?;
        divides(
            "model.mim.width",
            m.mim.width,
            "model.mim.heads",
            m.mim.heads,
        )?;
        ensure!(
            (0..m.text.vocab_size).contains(&m.text.pad_token_id),
            "model.text.pad_token_id = {} must be a token of the vocabulary ({})",
            m.text.pad_token_id,
            m.text.vocab_size
        );
        ensure!(
            (0..=m.fusion.layers).contains(&m.mim.tap_layer),
            "model.mim.tap_layer = {} must be between 0 and model.fusion.layers = {}",
            m.mim.tap_layer,
            m.fusion.layers
        );
        fraction("model.mim.mask_ratio", m.mim.mask_ratio, true)?;
        fraction("model.text.dropout", m.text.dropout, false)?;
        fraction("model.fusion.dropout", m.fusion.dropout, false)?;
        fraction("model.entity.dropout", m.entity.dropout, false)?;
        rate("model.text.layer_norm_eps", m.text.layer_norm_eps)?;
        rate("model.fusion.layer_norm_eps", m.fusion.layer_norm_eps)?;
        Ok(())
    }

    fn validate_pretraining(&self) -> anyhow::Result<()> {
        let DataConfig {
            max_text_len,
            cache_mb,
            threads,
            ..
        } = self.data;
        text_len("data.max_text_len", max_text_len, &self.model)?;
        at_least_one("data.cache_mb", cache_mb)?;
        ensure!(
            (1..=256).contains(&threads),
            "data.threads must be between 1 and 256, not {threads}"
        );
        let train = &self.train;
        at_least_one("train.steps", train.steps)?;
        at_least_one("train.global_batch", train.global_batch as u64)?;
        at_least_one("train.grad_accum", train.grad_accum as u64)?;
        ensure!(
            !train.run_dir.as_os_str().is_empty(),
            "train.run_dir must name a folder"
        );
        if let Some(peak) = train.peak_tflops {
            rate("train.peak_tflops", peak)?;
        }
        let optim = &self.optim;
        self.validate_optim("optim", optim)?;
        let pretext = &self.pretext;
        fraction("pretext.mlm_probability", pretext.mlm_probability, true)?;
        non_negative("pretext.itm_weight", pretext.itm_weight)?;
        if let Some(location) = &self.checkpoint.location {
            ensure!(
                !location.trim().is_empty(),
                "checkpoint.location must name a folder or URL"
            );
        }
        if let Some(prepare) = self.prepare.as_ref().filter(|p| p.synthetic) {
            at_least_one("prepare.scenes", prepare.scenes as u64)?;
            ensure!(
                prepare.image_size >= 8,
                "prepare.image_size must be at least 8, not {}",
                prepare.image_size
            );
            ensure!(
                prepare.vocab_size >= 8 && prepare.vocab_size as i64 <= self.model.text.vocab_size,
                "prepare.vocab_size = {} must be between 8 and model.text.vocab_size = {}",
                prepare.vocab_size,
                self.model.text.vocab_size
            );
            ensure!(
                prepare.entity_dim as i64 == self.model.entity.width,
                "prepare.entity_dim = {} must equal model.entity.width = {} (the TransE table \
                 is the model's entity table)",
                prepare.entity_dim,
                self.model.entity.width
            );
            at_least_one("prepare.transe_epochs", prepare.transe_epochs as u64)?;
        }
        Ok(())
    }

    fn validate_optim(
        &self,
        prefix: &str,
        optim: &crate::config::train::OptimConfig,
    ) -> anyhow::Result<()> {
        rate(&format!("{prefix}.lr"), optim.lr)?;
        rate(
            &format!("{prefix}.lr_multiplier_head"),
            optim.lr_multiplier_head,
        )?;
        rate(
            &format!("{prefix}.lr_multiplier_multi_modal"),
            optim.lr_multiplier_multi_modal,
        )?;
        non_negative(&format!("{prefix}.weight_decay"), optim.weight_decay)?;
        fraction(&format!("{prefix}.betas[0]"), optim.betas.0, false)?;
        fraction(&format!("{prefix}.betas[1]"), optim.betas.1, false)?;
        rate(&format!("{prefix}.eps"), optim.eps)?;
        non_negative(&format!("{prefix}.warmup"), optim.warmup)?;
        non_negative(&format!("{prefix}.max_grad_norm"), optim.max_grad_norm)?;
        Ok(())
    }

    fn validate_pipeline(&self) -> anyhow::Result<()> {
        let jobs = self.jobs();
        for (index, job) in jobs.iter().enumerate() {
            if jobs[..index].contains(job) {
                bail!("pipeline.jobs lists {job:?} twice");
            }
            if job == PRETRAIN_JOB {
                ensure!(index == 0, "pipeline.jobs: \"pretrain\" must come first");
            } else {
                ensure!(
                    self.finetune.contains_key(job),
                    "pipeline.jobs: {job:?} is neither \"pretrain\" nor a [finetune.{job}] section"
                );
            }
        }
        Ok(())
    }

    fn validate_finetune(&self, job: &FinetuneConfig) -> anyhow::Result<()> {
        let key = |name: &str| format!("finetune.{}.{name}", job.name);
        at_least_one(&key("epochs"), job.epochs)?;
        at_least_one(&key("global_batch"), job.global_batch as u64)?;
        at_least_one(&key("grad_accum"), job.grad_accum as u64)?;
        text_len(&key("max_text_len"), job.max_text_len, &self.model)?;
        if let Some(size) = job.image_size {
            let patch = self.model.vision.patch_size;
            ensure!(
                size > 0 && size % patch == 0,
                "{} = {size} must be a positive multiple of model.vision.patch_size = {patch}",
                key("image_size")
            );
        }
        self.validate_optim(&format!("finetune.{}", job.name), &job.optim)?;
        at_least_one(&key("eval_pairs"), job.eval_pairs as u64)?;
        at_least_one(&key("eval_batch"), job.eval_batch as u64)?;
        if job.task == Task::Irtr {
            at_least_one(&key("negatives"), job.negatives as u64)?;
        }
        for (name, split) in [
            ("val_split", &job.val_split),
            ("test_split", &job.test_split),
        ] {
            ensure!(
                folder_name(split),
                "{} = {split:?} must name a split folder",
                key(name)
            );
        }
        ensure!(
            !job.data.trim().is_empty(),
            "{} must name a dataset",
            key("data")
        );
        Ok(())
    }

    /// The paths `jobs` read are set: pretraining's dataset, and for every job the tokenizer
    /// and the knowledge folder.
    fn validate_inputs(&self, jobs: &[String]) -> anyhow::Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        if jobs.iter().any(|j| j == PRETRAIN_JOB) {
            ensure!(
                self.data.train.is_some(),
                "data.train is not set: pretraining needs a dataset (or [prepare] synthetic = true)"
            );
        }
        for job in jobs.iter().filter(|j| *j != PRETRAIN_JOB) {
            ensure!(
                self.finetune.contains_key(job),
                "the config has no [finetune.{job}] section"
            );
        }
        let unset = |path: Option<&Path>| path.is_none_or(|p| p.as_os_str().is_empty());
        ensure!(
            !unset(self.data.tokenizer.as_deref()),
            "data.tokenizer is not set (or [prepare] synthetic = true)"
        );
        ensure!(
            !unset(self.knowledge.dir.as_deref()),
            "knowledge.dir is not set (or [prepare] synthetic = true)"
        );
        Ok(())
    }
}
