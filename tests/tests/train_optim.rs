//! The optimiser against the reference: Hugging Face's AdamW (transcribed from transformers
//! 4.x by `scripts/fixtures/adamw.py`) under the warm-up + linear-decay schedule stepped by
//! PyTorch's LambdaLR, over parameters in all six of ARL's groups.

use std::collections::HashMap;

use arl_contract::config::train::OptimConfig;
use arl_tests::adamw_fixtures;
use arl_worker::train::optim::{AdamW, GROUPS};
use arl_worker::train::schedule::Schedule;
use tch::{Device, Kind, Tensor, nn};

fn max_relative_error(ours: &Tensor, reference: &Tensor) -> f64 {
    let scale = reference.abs().max().double_value(&[]).max(1e-12);
    (ours - reference).abs().max().double_value(&[]) / scale
}

#[test]
fn adamw_and_its_schedule_match_hugging_face_over_six_groups() {
    let dir = adamw_fixtures();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let tensors: HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.join("tensors.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let names: Vec<String> = tensors
        .keys()
        .filter_map(|k| k.strip_prefix("init.").map(str::to_owned))
        .collect();

    let vs = nn::VarStore::new(Device::Cpu);
    let mut params = HashMap::new();
    for name in &names {
        let init = &tensors[&format!("init.{name}")];
        let (path, leaf) = name.rsplit_once('.').unwrap();
        let var_path = path.split('.').fold(vs.root(), |p, part| p / part);
        let var = var_path.var_copy(leaf, init);
        params.insert(name.clone(), var);
    }
    let cfg = OptimConfig {
        lr: manifest["lr"].as_f64().unwrap(),
        ..OptimConfig::default()
    };
    let mut optimizer = AdamW::new(&vs, cfg, true);
    for (index, group) in optimizer.groups().iter().enumerate() {
        let mut expected: Vec<&str> = manifest["groups"][index]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        expected.sort_unstable();
        assert_eq!(group, &expected, "group {}", GROUPS[index]);
    }

    let schedule = Schedule::new(
        manifest["total"].as_u64().unwrap(),
        manifest["warmup"].as_f64().unwrap(),
    );
    for k in 0..manifest["steps"].as_u64().unwrap() {
        let mut loss = Tensor::zeros([], (Kind::Float, Device::Cpu));
        for (name, var) in &params {
            let mut var = var.shallow_clone();
            var.zero_grad();
            loss += (&var * &tensors[&format!("grad.{k}.{name}")]).sum(Kind::Float);
        }
        loss.backward();
        optimizer.step(schedule.factor(k));
    }
    let state: HashMap<String, Tensor> = optimizer.state().into_iter().collect();
    for name in &names {
        for (ours, key) in [
            (&params[name], format!("final.{name}")),
            (
                &state[&format!("{name}.exp_avg")],
                format!("exp_avg.{name}"),
            ),
            (
                &state[&format!("{name}.exp_avg_sq")],
                format!("exp_avg_sq.{name}"),
            ),
        ] {
            let error = max_relative_error(ours, &tensors[&key]);
            assert!(error < 1e-6, "{key}: relative error {error:e}");
        }
    }
    assert_eq!(optimizer.steps(), 6);
}
