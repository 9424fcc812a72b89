//! Helpers for the end-to-end tests: free ports, and worlds of real processes on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod fuzz_targets;
pub mod hosts;
mod peers;
mod pretraining;
pub use peers::{Rank, free_port, peer_error, peer_results, peer_world};
pub mod tmpfs;

pub use pretraining::*;

use serde_json::Value;

/// A release binary of the workspace (`arl`, `arl-worker`), built by `scripts/setup`.
///
/// # Panics
/// If it has not been built.
pub fn release_binary(name: &str) -> PathBuf {
    // This test runs as target/<profile>/deps/<test>-<hash>; the binaries sit in target/release.
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe.ancestors().nth(3).expect("target folder");
    let path = target.join("release").join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (`cargo build --release`)",
        path.display()
    );
    path
}

/// The Python with torch: `$ARL_PYTHON`, else the workspace's `.venv` (made by `scripts/setup`).
pub fn python() -> PathBuf {
    std::env::var_os("ARL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python3"))
}

/// The repository root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_owned()
}

/// The folder of the model parity fixtures, made by `scripts/fixtures/model_parity.py` on first
/// use (once per test process).
pub fn model_fixtures() -> PathBuf {
    static MADE: OnceLock<PathBuf> = OnceLock::new();
    MADE.get_or_init(|| fixtures("model", "model_parity.py"))
        .clone()
}

/// One model of the parity fixtures: its weights and its Hugging Face `config.json` as the
/// manifest names them (empty where it has none), and its inputs and transformers' outputs.
pub struct ModelFixture {
    /// The weights (safetensors).
    pub weights: PathBuf,
    /// The `config.json`.
    pub config: PathBuf,
    /// Inputs and expected outputs by name.
    pub io: std::collections::BTreeMap<String, tch::Tensor>,
}

/// The parity fixture `name` (`clip_tiny`, `roberta_tiny`, `bert_minilm`, …).
///
/// # Panics
/// If the fixtures cannot be made or read.
pub fn model_fixture(name: &str) -> ModelFixture {
    let dir = model_fixtures();
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let path = |key: &str| {
        PathBuf::from(
            manifest[name][key]
                .as_str()
                .unwrap_or_else(|| panic!("{name}.{key} in the manifest")),
        )
    };
    ModelFixture {
        weights: path("weights"),
        config: path("config"),
        io: arl_worker::model::load::read(&dir.join(format!("{name}.io.safetensors"))).unwrap(),
    }
}

/// The folder of the entity-input parity fixtures (`scripts/fixtures/entity_inputs.py`).
pub fn entity_input_fixtures() -> PathBuf {
    static MADE: OnceLock<PathBuf> = OnceLock::new();
    MADE.get_or_init(|| fixtures("entity_inputs", "entity_inputs.py"))
        .clone()
}

/// An Arrow file written the way ARL's make_arrow.py writes them (`scripts/fixtures/arl_arrow.py`).
pub fn arl_arrow_fixtures() -> PathBuf {
    static MADE: OnceLock<PathBuf> = OnceLock::new();
    MADE.get_or_init(|| fixtures("arl_arrow", "arl_arrow.py"))
        .clone()
}

/// `--set` values that give the model the vision tower of the tiny CLIP fixtures at 48 px.
pub const CLIP_TINY_VISION: [&str; 6] = [
    "model.vision.image_size=48",
    "model.vision.patch_size=8",
    "model.vision.width=32",
    "model.vision.layers=3",
    "model.vision.heads=4",
    "model.vision.keep_last_layer=false",
];

/// `--set` values of `[model.text]` from a Hugging Face `config.json`.
///
/// # Panics
/// If the file is no BERT or RoBERTa config.
pub fn text_overrides(config: &Path) -> Vec<String> {
    let text = arl_contract::config::model::TextConfig::from_hf_json(config).unwrap();
    let text = serde_json::to_value(text).unwrap();
    text.as_object()
        .unwrap()
        .iter()
        .map(|(key, value)| format!("model.text.{key}={value}"))
        .collect()
}

/// Tiny stand-ins for the weight downloads of `scripts/convert_weights.py`, in their real
/// formats (`scripts/fixtures/weight_downloads.py`).
pub fn weight_download_fixtures() -> PathBuf {
    static MADE: OnceLock<PathBuf> = OnceLock::new();
    MADE.get_or_init(|| fixtures("weight_downloads", "weight_downloads.py"))
        .clone()
}

/// Real images and PIL's `clip` transform of them (`scripts/fixtures/image_transforms.py`).
pub fn image_fixtures() -> PathBuf {
    static MADE: OnceLock<PathBuf> = OnceLock::new();
    MADE.get_or_init(|| fixtures("image_transforms", "image_transforms.py"))
        .clone()
}

/// pydicom's rendering of real DICOM files (`scripts/fixtures/dicom.py`); its manifest names the
/// folders of pydicom-data and of pydicom's test files.
pub fn dicom_fixtures() -> PathBuf {
    static MADE: OnceLock<PathBuf> = OnceLock::new();
    MADE.get_or_init(|| fixtures("dicom", "dicom.py")).clone()
}

/// What CPython's `random` draws for a few seeds (`scripts/fixtures/python_random.py`).
pub fn python_random_fixtures() -> PathBuf {
    static MADE: OnceLock<PathBuf> = OnceLock::new();
    MADE.get_or_init(|| fixtures("python_random", "python_random.py"))
        .clone()
}

/// The optimiser parity fixture (`scripts/fixtures/adamw.py`).
pub fn adamw_fixtures() -> PathBuf {
    static MADE: OnceLock<PathBuf> = OnceLock::new();
    MADE.get_or_init(|| fixtures("adamw", "adamw.py")).clone()
}

/// PyTorch's FLOP counts of the reference model's blocks (`scripts/fixtures/flops.py`).
pub fn flops_fixtures() -> PathBuf {
    static MADE: OnceLock<PathBuf> = OnceLock::new();
    MADE.get_or_init(|| fixtures("flops", "flops.py")).clone()
}

/// `tests/fixtures/NAME`, written by `scripts/fixtures/SCRIPT` unless its manifest exists.
fn fixtures(name: &str, script: &str) -> PathBuf {
    let dir = workspace_root().join("tests/fixtures").join(name);
    if !dir.join("manifest.json").exists() {
        let script = workspace_root().join("scripts/fixtures").join(script);
        let status = Command::new(python())
            .arg(&script)
            .arg(&dir)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            status.success(),
            "{} failed ({status}); run scripts/setup first",
            script.display()
        );
    }
    dir
}

/// Runs `arl ARGS` (quiet libtorch) and returns its output.
///
/// # Panics
/// If it cannot start or exits unsuccessfully (its stderr is shown).
pub fn arl_ok<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> std::process::Output {
    let out = Command::new(release_binary("arl"))
        .args(args)
        .env("TORCH_CPP_LOG_LEVEL", "ERROR")
        .output()
        .expect("starting arl");
    assert!(
        out.status.success(),
        "arl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `--set` values of a small pipeline on the synthetic benchmark: 60 scenes, 4 pretraining
/// steps, short fine-tunes.
pub const SMALL_PIPELINE: [&str; 9] = [
    "prepare.scenes=60",
    "prepare.transe_epochs=5",
    "train.steps=4",
    "checkpoint.every_steps=4",
    "finetune.vqa.epochs=1",
    "finetune.vqa.global_batch=8",
    "finetune.cls.epochs=2",
    "finetune.irtr.epochs=1",
    "finetune.irtr.negatives=2",
];

/// A TensorBoard log folder as TensorBoard's own reader sees it:
/// `{"scalars": {tag: [[step, value], …]}, "images": {tag: [[step, width, height, bytes], …]}}`.
///
/// # Panics
/// If the reader fails (its stderr is shown).
pub fn tensorboard_log(dir: &Path) -> Value {
    let out = Command::new(python())
        .arg(workspace_root().join("tests/scripts/read_tensorboard.py"))
        .arg(dir)
        .output()
        .expect("running the TensorBoard reader");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The steps of the committed checkpoints at `location`, oldest first.
pub fn committed_steps(location: &Path) -> Vec<u64> {
    arl_checkpoints::Checkpoints::open(&location.to_string_lossy())
        .unwrap()
        .committed()
        .unwrap()
        .iter()
        .map(|m| m.state.step)
        .collect()
}

/// A real S3-compatible server (s3s-fs, installed into `.venv/bin` by `scripts/setup`) on
/// 127.0.0.1 over a temporary folder; each bucket is a sub-folder. Killed on drop.
pub struct S3Server {
    child: Child,
    root: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl S3Server {
    const ACCESS_KEY: &'static str = "arl-test";
    const SECRET_KEY: &'static str = "arl-test-secret-key";

    /// Starts a server with these buckets and waits until it accepts connections.
    ///
    /// # Panics
    /// If s3s-fs is missing or does not start within 10 s.
    pub fn start(buckets: &[&str]) -> Self {
        let binary = workspace_root().join(".venv/bin/s3s-fs");
        assert!(
            binary.exists(),
            "{} is missing: run scripts/setup",
            binary.display()
        );
        let port = free_port();
        let root = std::env::temp_dir().join(format!("arl-s3-{}-{port}", std::process::id()));
        for bucket in buckets {
            std::fs::create_dir_all(root.join(bucket)).expect("bucket folder");
        }
        let child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--access-key",
                Self::ACCESS_KEY,
                "--secret-key",
                Self::SECRET_KEY,
            ])
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting s3s-fs");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            root,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Stops the server (SIGSTOP): connections are still accepted, requests get no answer.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} s3s-fs");
    }

    /// The object-store environment of a client (for child processes).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", Self::ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", Self::SECRET_KEY.to_owned()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
    }

    /// The same as builder options (for this process).
    pub fn options(&self) -> Vec<(String, String)> {
        self.env()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A `width × height` PNG of one grey `level`.
///
/// # Panics
/// If it cannot be encoded.
pub fn grey_png(width: u32, height: u32, level: u8) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::GrayImage::from_pixel(width, height, image::Luma([level]))
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    bytes
}

/// Writes a small sharded dataset into `dir`: 24 images with 1–3 texts each (48 items, image ids
/// `0.png`…), in shards of about 5 images; returns the number of items.
pub fn write_dataset(dir: &Path) -> usize {
    write_dataset_with(dir, 1000, |i| vec![i; 180])
}

/// As [`write_dataset`], with image `i`'s bytes from `image` and shards of `shard_bytes`.
pub fn write_dataset_with(dir: &Path, shard_bytes: usize, image: impl Fn(u8) -> Vec<u8>) -> usize {
    use arl_worker::data::{shard::ShardWriter, table::ImageTextRow};
    let mut writer = ShardWriter::new(dir, shard_bytes).expect("dataset folder");
    let mut items = 0;
    for i in 0..24u8 {
        let texts = 1 + usize::from(i % 3);
        items += texts;
        let row = ImageTextRow {
            image: image(i),
            captions: (0..texts).map(|t| format!("image {i} text {t}")).collect(),
            image_id: format!("{i}.png"),
            split: "train".into(),
            ..ImageTextRow::default()
        };
        writer.push(row).expect("writing a shard");
    }
    assert!(writer.finish().expect("manifest").shards.len() >= 4);
    items
}

/// A fresh temporary folder for one test (`arl-NAME-PID`).
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("arl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// Copies every file of `local` into the object-store folder `remote`.
pub fn upload_dir(remote: &arl_worker::data::remote::Remote, local: &Path) {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    for entry in std::fs::read_dir(local).expect("dataset folder") {
        let path = entry.expect("folder entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("file name");
        let bytes = bytes::Bytes::from(std::fs::read(&path).expect("reading a dataset file"));
        runtime.block_on(remote.put(name, bytes)).expect("upload");
    }
}

/// What `checkpoint_child` saves, and the kill-during-save harness that checks it.
pub mod checkpoint_child {
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use arl_checkpoints::{Checkpoints, Dtype, Loaded, Staging, Status, TensorSpec};
    use rand::{Rng, SeedableRng};

    /// The tensors: (group, name, f32 elements); the optimizer's file is larger than a
    /// multipart part, and the model group spans several 8 MiB files.
    pub const TENSORS: [(&str, &str, usize); 4] = [
        ("model", "encoder.weight", 1_500_000),
        ("model", "encoder.bias", 1_500_000),
        ("model", "head.weight", 1_500_000),
        ("optim", "encoder.weight.exp_avg", 5_000_000),
    ];

    /// The byte every element of tensor `index` holds at `step`.
    pub fn pattern(step: u64, index: usize) -> u8 {
        (step as u8).wrapping_mul(7).wrapping_add(index as u8)
    }

    /// Stages [`TENSORS`], each filled with its [`pattern`] for `step`.
    ///
    /// # Errors
    /// As [`Staging::stage`].
    pub fn stage_step(staging: &mut Staging, step: u64) -> anyhow::Result<()> {
        for (index, (group, name, elements)) in TENSORS.iter().enumerate() {
            let spec = TensorSpec {
                group: (*group).into(),
                name: (*name).into(),
                dtype: Dtype::F32,
                shape: vec![*elements],
            };
            staging.stage(spec)?.fill(pattern(step, index));
        }
        Ok(())
    }

    /// Checks that every tensor of `loaded` holds its step's bytes (no file of another save).
    ///
    /// # Panics
    /// On a tensor that is missing or holds other bytes.
    pub fn assert_contents(loaded: &Loaded) {
        let step = loaded.manifest.state.step;
        for (index, (group, name, elements)) in TENSORS.iter().enumerate() {
            let tensors = loaded.tensors(group).expect("group");
            let (_, view) = tensors
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("{name} missing from step {step}"));
            assert_eq!(view.data().len(), elements * 4, "{name}");
            let expected = pattern(step, index);
            assert!(
                view.data().iter().all(|&b| b == expected),
                "{name} of step {step} holds bytes of another save"
            );
        }
    }

    /// How many kills [`kill_during_saves`] makes: at least `trials`, then more (up to
    /// `max_trials`) until as many landed mid-save and left partial folders as wanted, so that
    /// a loaded machine, where kills land less evenly, still gets the kills the test needs.
    #[derive(Debug, Clone, Copy)]
    pub struct KillTarget {
        /// Kills made in any case.
        pub trials: usize,
        /// Kills that must land during a save.
        pub mid_save: usize,
        /// Kills that must leave a partial folder.
        pub partial_left: usize,
        /// Kills at most.
        pub max_trials: usize,
    }

    impl KillTarget {
        fn reached(&self, report: &KillReport) -> bool {
            report.mid_save >= self.mid_save && report.partial_left >= self.partial_left
        }
    }

    /// What [`kill_during_saves`] saw.
    #[derive(Debug, Default)]
    pub struct KillReport {
        /// Kills that landed while a save was being written (the last step the child handed to
        /// its writer was not committed).
        pub mid_save: usize,
        /// Kills after which a partial checkpoint folder was left (an object store shows one
        /// only once an object of it is complete).
        pub partial_left: usize,
        /// The newest committed step at the end.
        pub newest: u64,
    }

    /// Starts `checkpoint_child` on `location` `trials` times and kills it after a random delay
    /// (SIGKILL, or every other time SIGTERM, which the child does not handle: both end it
    /// wherever it is); after each kill, checks that the newest
    /// committed checkpoint is at least as new as before, loads with every hash verified and
    /// holds its own step's bytes, and that discovery never returns a partial folder.
    ///
    /// # Panics
    /// On any of those failing.
    pub fn kill_during_saves(
        location: &str,
        env: &[(&'static str, String)],
        options: &[(&str, &str)],
        target: KillTarget,
        seed: u64,
    ) -> KillReport {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut report = KillReport::default();
        let log =
            std::env::temp_dir().join(format!("arl-checkpoint-child-{}.log", std::process::id()));
        for trial in 0..target.max_trials {
            if trial >= target.trials && target.reached(&report) {
                break;
            }
            let mut child = Command::new(crate::release_binary("checkpoint_child"))
                .arg(location)
                .envs(env.iter().map(|(k, v)| (*k, v)))
                .stdout(std::fs::File::create(&log).expect("log file"))
                .stderr(Stdio::null())
                .spawn()
                .expect("starting checkpoint_child");
            // Kill once the child is saving (the first time, once it has committed something to
            // lose), at a random point of its saves.
            let ready = if trial == 0 { "committed" } else { "submitted" };
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(ready)
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "child not {ready} within 60 s"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..1000)));
            if trial % 2 == 0 {
                child.kill().expect("SIGKILL");
            } else {
                let status = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status()
                    .expect("kill -TERM");
                assert!(status.success());
            }
            let status = child.wait().expect("waiting for the child");
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                status.code().is_none(),
                "the child exited by itself: {output}"
            );
            assert!(!output.contains("error"), "the child failed: {output}");

            let checkpoints = Checkpoints::open_with(location, options).expect("location");
            let listed = checkpoints.list().expect("listing");
            assert!(
                !listed
                    .iter()
                    .any(|l| matches!(l.status, Status::Invalid(_))),
                "trial {trial}: {listed:?}"
            );
            let newest = checkpoints
                .latest()
                .expect("discovery")
                .unwrap_or_else(|| panic!("trial {trial}: no committed checkpoint; {output}"))
                .state
                .step;
            assert!(
                newest >= report.newest,
                "trial {trial}: committed step {} lost, newest is {newest}",
                report.newest
            );
            if let Some(last) = listed.last()
                && last.status == Status::Partial
            {
                assert!(last.step > newest, "discovery returned a partial folder");
                report.partial_left += 1;
            }
            let submitted = output
                .lines()
                .filter_map(|l| l.strip_prefix("submitted ")?.parse::<u64>().ok())
                .max()
                .unwrap_or(0);
            report.mid_save += usize::from(submitted > newest);
            let loaded = checkpoints
                .load(newest)
                .unwrap_or_else(|e| panic!("trial {trial}: step {newest}: {e:#}"));
            assert_contents(&loaded);
            report.newest = newest;
        }
        let _ = std::fs::remove_file(&log);
        report
    }
}
