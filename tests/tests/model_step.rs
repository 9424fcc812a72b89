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
