//! Checkpoints in a real S3-compatible server (s3s-fs on 127.0.0.1): the kill-during-save
//! check, the asynchronous writer with retention, verification of a flipped byte, and a
//! weights export, all through object-store URLs.

use arl_checkpoints::export::export_weights;
use arl_checkpoints::{AsyncSaver, Checkpoints, Retention, SaverConfig, Status, TrainingState};
use arl_tests::S3Server;
use arl_tests::checkpoint_child::{KillTarget, assert_contents, kill_during_saves, stage_step};
use object_store::{ObjectStoreExt, PutPayload};

fn options(server: &S3Server) -> Vec<(String, String)> {
    server.options()
}

fn borrowed(options: &[(String, String)]) -> Vec<(&str, &str)> {
    options
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[test]
fn checkpoints_in_s3_survive_kills_verify_and_export() {
    let server = S3Server::start(&["ckpt"]);
    let owned = options(&server);
    let options = borrowed(&owned);

    let target = KillTarget {
        trials: 6,
        mid_save: 2,
        partial_left: 0,
        max_trials: 20,
    };
    let report = kill_during_saves("s3://ckpt/killed", &server.env(), &options, target, 3);
    eprintln!("{report:?}");
    assert!(report.mid_save >= target.mid_save, "{report:?}");

    let location = "s3://ckpt/run";
    let config = SaverConfig {
        retention: Retention {
            keep_last: 2,
            keep_every: 0,
        },
    };
    let mut saver =
        AsyncSaver::new(Checkpoints::open_with(location, &options).unwrap(), config).unwrap();
    for step in 1..=3u64 {
        let mut begin = saver.begin().unwrap();
        stage_step(&mut begin.staging, step).unwrap();
        let state = TrainingState::new(step, 1);
        saver.submit(begin.staging, state).unwrap();
    }
    for outcome in saver.finish().unwrap() {
        outcome.unwrap();
    }
    let checkpoints = Checkpoints::open_with(location, &options).unwrap();
    let steps: Vec<u64> = checkpoints.list().unwrap().iter().map(|l| l.step).collect();
    assert_eq!(steps, [2, 3], "retention keeps the last two");
    let loaded = checkpoints.load(3).unwrap();
    assert_contents(&loaded);

    let export = "s3://ckpt/exports/model.safetensors";
    export_weights(&loaded, "model", export, &options).unwrap();
    let (store, path) = arl_checkpoints::url::open_store(export, &options).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let bytes = runtime
        .block_on(async { store.get(&path).await?.bytes().await })
        .unwrap();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(metadata.tensors().len(), 3);
    assert_eq!(metadata.metadata().as_ref().unwrap()["step"], "3");

    let (store, path) = arl_checkpoints::url::open_store(
        "s3://ckpt/run/step-000000000003/model-00000.safetensors",
        &options,
    )
    .unwrap();
    let mut bytes = runtime
        .block_on(async { store.get(&path).await?.bytes().await })
        .unwrap()
        .to_vec();
    bytes[1000] ^= 1;
    runtime
        .block_on(store.put(&path, PutPayload::from(bytes)))
        .unwrap();
    let error = format!("{:#}", checkpoints.load(3).unwrap_err());
    assert!(
        error.contains("s3://ckpt/run/step-000000000003/model-00000.safetensors"),
        "{error}"
    );
    assert_eq!(
        checkpoints.resume().unwrap().unwrap().manifest.state.step,
        2
    );
    assert!(matches!(
        checkpoints.list().unwrap()[1].status,
        Status::Invalid(_)
    ));
}
