//! One pretraining step of the tiny model: all four objectives run, give finite losses, and
//! every trainable module receives gradient except the one the reference also leaves unused.

use arl_contract::config::model::ModelConfig;
use arl_worker::model::arl::ArlModel;
use arl_worker::model::pretext::{PretrainBatch, pretrain_losses};
use std::sync::Mutex;
use tch::{Device, Kind, Tensor, nn};

/// The tests seed torch's one global generator, so they take turns.
static SEEDED: Mutex<()> = Mutex::new(());

#[test]
fn a_tiny_step_of_all_four_objectives_trains_every_module() {
    let _turn = SEEDED.lock().unwrap();
    tch::manual_seed(0);
    let cfg = ModelConfig::tiny();
    let entities = 12;
    let vs = nn::VarStore::new(Device::Cpu);
    let edges = Tensor::from_slice2(&[[0i64, 1, 2, 3, 5, 5], [1, 2, 3, 0, 6, 6]]);
    let model = ArlModel::new(&vs.root(), &cfg, entities, &edges);
    let batch = PretrainBatch::random(&cfg, 4, 16, 6, entities);
    let losses = pretrain_losses(&model, &cfg, &batch, true);
    for (name, loss) in [
        ("mlm", &losses.mlm),
        ("mim", &losses.mim),
        ("itm", &losses.itm),
        ("align", &losses.align),
    ] {
        let value = loss.double_value(&[]);
        assert!(value.is_finite() && value > 0.0, "{name} loss {value}");
    }
    let expected = losses.mlm.double_value(&[])
        + losses.mim.double_value(&[])
        + 0.1 * losses.itm.double_value(&[])
        + losses.align.double_value(&[]);
    assert!((losses.total.double_value(&[]) - expected).abs() < 1e-5);

    losses.total.backward();
    // The last text layer's knowledge feed-forward produces the entity input of a layer that
    // does not exist, so nothing reads it (as in the reference): it alone gets no gradient.
    let without: Vec<String> = vs
        .variables()
        .into_iter()
        .filter(|(_, var)| {
            let grad = var.grad();
            !grad.defined() || grad.abs().sum(Kind::Float).double_value(&[]) == 0.0
        })
        .map(|(name, _)| name)
        .collect();
    let last = cfg.fusion.layers - 1;
    let unused = |name: &str| {
        name.starts_with(&format!(
            "multi_modal_language_layers.{last}.knowledge_intermediate."
        )) || name.starts_with(&format!(
            "multi_modal_language_layers.{last}.knowledge_output."
        ))
    };
    let unexpected: Vec<&String> = without.iter().filter(|name| !unused(name)).collect();
    assert!(
        unexpected.is_empty(),
        "parameters without gradient: {unexpected:?}"
    );
    assert_eq!(without.len(), 6, "{without:?}");
}

#[test]
fn the_itm_images_gathered_from_the_shared_encoding_equal_encoding_them_again() {
    // pretext.rs encodes the batch's images once and gathers the ITM pairs' images from it;
    // that is exact only because the vision tower and its projection have no randomness.
    let _turn = SEEDED.lock().unwrap();
    tch::manual_seed(1);
    let cfg = ModelConfig::tiny();
    let vs = nn::VarStore::new(Device::Cpu);
    let edges = Tensor::zeros([2, 0], (Kind::Int64, Device::Cpu));
    let model = ArlModel::new(&vs.root(), &cfg, 4, &edges);
    let batch = PretrainBatch::random(&cfg, 4, 16, 6, 4);
    let encode = |images: &Tensor| model.embed_image(&model.vision.forward(images));
    let gathered = encode(&batch.images).index_select(0, &batch.itm_partners);
    let again = encode(&batch.images.index_select(0, &batch.itm_partners));
    assert!(gathered.allclose(&again, 1e-5, 1e-6, false));
    assert!(
        !batch
            .itm_partners
            .equal(&Tensor::arange(4, (Kind::Int64, Device::Cpu))),
        "the batch has negatives"
    );
}

/// The four losses and every gradient (in name order, flattened) of one tiny step, with CPU
/// bfloat16 autocast on or off.
fn step_numbers(bf16: bool) -> ([f64; 4], Tensor) {
    let mut cfg = ModelConfig::tiny();
    (cfg.text.dropout, cfg.fusion.dropout, cfg.entity.dropout) = (0.0, 0.0, 0.0);
    tch::manual_seed(3);
    let entities = 12;
    let vs = nn::VarStore::new(Device::Cpu);
    let edges = Tensor::from_slice2(&[[0i64, 1, 2, 3, 5], [1, 2, 3, 0, 6]]);
    let model = ArlModel::new(&vs.root(), &cfg, entities, &edges);
    let batch = PretrainBatch::random(&cfg, 4, 16, 6, entities);
    let losses = arl_c10d::autocast_bf16(Device::Cpu, bf16, || {
        pretrain_losses(&model, &cfg, &batch, true)
    })
    .unwrap();
    losses.total.backward();
    let values = [&losses.mlm, &losses.mim, &losses.itm, &losses.align].map(|l| {
        assert_eq!(l.kind(), Kind::Float, "losses are reduced in float32");
        l.double_value(&[])
    });
    let mut variables = vs.variables().into_iter().collect::<Vec<_>>();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    let grads: Vec<Tensor> = variables
        .iter()
        .map(|(_, v)| {
            let g = v.grad();
            if g.defined() {
                g.to_kind(Kind::Float).view([-1])
            } else {
                v.zeros_like().view([-1])
            }
        })
        .collect();
    (values, Tensor::cat(&grads, 0))
}

#[test]
fn bf16_autocast_on_the_cpu_stays_within_tolerance_of_float32() {
    let _turn = SEEDED.lock().unwrap();
    let (full, full_grads) = step_numbers(false);
    let (half, half_grads) = step_numbers(true);
    assert_ne!(full, half, "autocast changed nothing: it did not run");
    for ((name, a), b) in ["mlm", "mim", "itm", "align"].iter().zip(full).zip(half) {
        let relative = (a - b).abs() / a.abs();
        assert!(relative < 0.02, "{name}: float32 {a}, bfloat16 {b}");
    }
    let dot = (&full_grads * &half_grads)
        .sum(Kind::Double)
        .double_value(&[]);
    let norm = |g: &Tensor| g.to_kind(Kind::Double).norm().double_value(&[]);
    let (n_full, n_half) = (norm(&full_grads), norm(&half_grads));
    let cosine = dot / (n_full * n_half);
    assert!(cosine > 0.99, "gradient cosine {cosine}");
    assert!(
        (n_half / n_full - 1.0).abs() < 0.05,
        "gradient norms {n_full} and {n_half}"
    );
}
