//! Our model's towers against Hugging Face transformers on the same weights and inputs, in
//! float32 (fixtures from scripts/fixtures/model_parity.py), and strict weight loading.

use std::path::{Path, PathBuf};

use arl_contract::config::model::{CrossSource, FusionConfig};
use arl_contract::config::model::{TextConfig, VisionConfig};
use arl_tests::model_fixture as fixture;
use arl_worker::model::fusion::{FusionLayer, FusionMasks};
use arl_worker::model::gat::{GatConv, LoopedEdges};
use arl_worker::model::heads::{patchify_normalised, sincos_positions_2d};
use arl_worker::model::layers::additive_mask;
use arl_worker::model::load::{self, Weights};
use arl_worker::model::text::TextEncoder;
use arl_worker::model::vision::ClipVision;
use tch::{Kind, Tensor, nn};

/// The largest tolerated absolute difference in float32.
const TOLERANCE: f64 = 1e-5;

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

fn text_matches_transformers(name: &str) {
    let fx = fixture(name);
    let cfg = TextConfig::from_hf_json(&fx.config).unwrap();
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let encoder = TextEncoder::new(vs.root(), &cfg);
    load::assign(
        &vs,
        "",
        load::text_from_hf(load::read(&fx.weights).unwrap()),
        |_| false,
        &fx.weights,
    )
    .unwrap();
    let out = tch::no_grad(|| encoder.forward(&fx.io["ids"], &fx.io["mask"], false));
    let diff = max_abs_diff(&out, &fx.io["expected"]);
    assert!(diff <= TOLERANCE, "{name}: max abs diff {diff:e}");
}

#[test]
fn bert_with_real_minilm_weights_matches_transformers() {
    text_matches_transformers("bert_minilm");
}

#[test]
fn roberta_with_padding_matches_transformers() {
    text_matches_transformers("roberta_tiny");
}

fn clip_at_48px(keep_last_layer: bool, expected: &str) {
    let fx = fixture("clip_tiny");
    let cfg = VisionConfig::from_hf_clip_json(&fx.config, 48, keep_last_layer).unwrap();
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let tower = ClipVision::new(vs.root() / "visual", &cfg);
    let weights = load::clip_from_hf(load::read(&fx.weights).unwrap(), &cfg).unwrap();
    load::assign(&vs, "visual", weights, |_| false, &fx.weights).unwrap();
    let out = tch::no_grad(|| tower.forward(&fx.io["pixels"]));
    let diff = max_abs_diff(&out, &fx.io[expected]);
    assert!(diff <= TOLERANCE, "{expected}: max abs diff {diff:e}");
}

#[test]
fn clip_vision_matches_transformers_with_interpolated_positions() {
    clip_at_48px(true, "expected_all_blocks");
}

#[test]
fn clip_vision_without_its_last_block_matches_the_reference_default() {
    clip_at_48px(false, "expected_last_dropped");
}

fn roberta_weights() -> (TextConfig, Weights, PathBuf) {
    let fx = fixture("roberta_tiny");
    let cfg = TextConfig::from_hf_json(&fx.config).unwrap();
    (
        cfg,
        load::text_from_hf(load::read(&fx.weights).unwrap()),
        fx.weights,
    )
}

fn load_error(
    cfg: &TextConfig,
    weights: Weights,
    fresh: impl Fn(&str) -> bool,
    file: &Path,
) -> String {
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let _encoder = TextEncoder::new(vs.root() / "language_encoder", cfg);
    match load::assign(&vs, "language_encoder", weights, fresh, file) {
        Ok(()) => String::new(),
        Err(error) => format!("{error:#}"),
    }
}

#[test]
fn a_missing_key_fails_with_its_name_unless_allowed_to_start_fresh() {
    let (cfg, mut weights, file) = roberta_weights();
    let key = "encoder.layer.1.attention.self.key.weight";
    assert!(weights.remove(key).is_some(), "the fixture has {key}");
    let error = load_error(
        &cfg,
        weights
            .iter()
            .map(|(k, v)| (k.clone(), v.shallow_clone()))
            .collect(),
        |_| false,
        &file,
    );
    assert!(
        error.contains("missing keys (1)") && error.contains(key),
        "{error}"
    );
    assert!(error.contains(&file.display().to_string()), "{error}");
    assert_eq!(
        load_error(
            &cfg,
            weights,
            |k| k.starts_with("encoder.layer.1.attention"),
            &file
        ),
        ""
    );
}

#[test]
fn unexpected_keys_and_wrong_shapes_are_listed() {
    let (cfg, mut weights, file) = roberta_weights();
    weights.insert(
        "encoder.layer.9.output.dense.weight".into(),
        Tensor::zeros([2, 2], tch::kind::FLOAT_CPU),
    );
    weights.insert(
        "embeddings.word_embeddings.weight".into(),
        Tensor::zeros([3, 32], tch::kind::FLOAT_CPU),
    );
    let error = load_error(&cfg, weights, |_| false, &file);
    assert!(
        error.contains("unexpected keys (1): encoder.layer.9.output.dense.weight"),
        "{error}"
    );
    assert!(
        error.contains("shape mismatches (1): embeddings.word_embeddings.weight"),
        "{error}"
    );
}

fn fusion_layer_matches_the_spec_reference(cross_source: CrossSource, mode: &str) {
    let fx = fixture("fusion_tiny");
    let cfg = FusionConfig {
        hidden: 32,
        heads: 4,
        intermediate: 64,
        layers: 1,
        entity_hidden: 16,
        entity_heads: 2,
        entity_intermediate: 32,
        layer_norm_eps: 1e-12,
        dropout: 0.1,
        cross_source,
        knowledge: true,
    };
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let root = vs.root();
    let layer = FusionLayer::new(
        &(&root / "multi_modal_language_layers"),
        &(&root / "multi_modal_vision_layers"),
        0,
        &cfg,
    );
    load::assign(
        &vs,
        "",
        load::read(&fx.weights).unwrap(),
        |_| false,
        &fx.weights,
    )
    .unwrap();
    let io = &fx.io;
    let text_mask = additive_mask(&io["text_keep"], Kind::Float);
    let entity_mask = additive_mask(&io["entity_ids"].ne(-100), Kind::Float);
    let masks = FusionMasks {
        text: &text_mask,
        image: None,
        entity: &entity_mask,
    };
    let (text, image, entities) = tch::no_grad(|| {
        layer.forward(
            &io["text"],
            &io["image"],
            &io["entities"],
            &io["positions"],
            &masks,
            false,
        )
    });
    for (name, out) in [("text", text), ("image", image), ("entities", entities)] {
        let diff = max_abs_diff(&out, &io[&format!("{mode}.{name}")]);
        assert!(diff <= TOLERANCE, "{mode}.{name}: max abs diff {diff:e}");
    }
}

#[test]
fn fusion_layer_with_knowledge_matches_the_reference_code_order() {
    fusion_layer_matches_the_spec_reference(CrossSource::PreviousLayer, "previous_layer");
}

#[test]
fn fusion_layer_with_the_papers_same_layer_cross_attention() {
    fusion_layer_matches_the_spec_reference(CrossSource::SameLayer, "same_layer");
}

#[test]
fn gat_matches_torch_geometric_with_duplicate_edges_and_sources_only_nodes() {
    let fx = fixture("gat_tiny");
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let concat = GatConv::new(vs.root() / "concat", 8, 4, 3, true, 0.2);
    let mean = GatConv::new(vs.root() / "mean", 12, 5, 2, false, 0.2);
    let weights = load::gat_from_pyg(load::read(&fx.weights).unwrap()).unwrap();
    load::assign(&vs, "", weights, |_| false, &fx.weights).unwrap();
    let edges = LoopedEdges::new(&fx.io["edge_index"], 7);
    for (name, layer) in [("concat", &concat), ("mean", &mean)] {
        let out = tch::no_grad(|| layer.forward(&fx.io[&format!("x_{name}")], &edges, false));
        let diff = max_abs_diff(&out, &fx.io[&format!("expected_{name}")]);
        assert!(diff <= TOLERANCE, "{name}: max abs diff {diff:e}");
    }
}

#[test]
fn pyg_2_0_gat_weights_drop_the_shared_target_map_and_refuse_a_different_one() {
    let map = Tensor::ones([4, 2], tch::kind::FLOAT_CPU);
    let shared: Weights = [
        ("conv1.lin_src.weight", map.copy()),
        ("conv1.lin_dst.weight", map.copy()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mapped = load::gat_from_pyg(shared).unwrap();
    assert_eq!(mapped.keys().collect::<Vec<_>>(), ["conv1.lin_src.weight"]);
    let different: Weights = [
        ("conv1.lin_src.weight", map.copy()),
        ("conv1.lin_dst.weight", map.zeros_like()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let error = load::gat_from_pyg(different).unwrap_err().to_string();
    assert!(error.contains("conv1"), "{error}");
}

#[test]
fn mim_positions_and_targets_match_the_mae_recipe() {
    let fx = fixture("mim_tiny");
    let diff = max_abs_diff(&sincos_positions_2d(16, 3), &fx.io["positions"]);
    assert!(diff <= TOLERANCE, "positions: max abs diff {diff:e}");
    let diff = max_abs_diff(&patchify_normalised(&fx.io["images"], 4), &fx.io["target"]);
    assert!(diff <= TOLERANCE, "targets: max abs diff {diff:e}");
}

#[test]
fn masked_vision_keeping_every_patch_in_order_equals_the_plain_forward() {
    let cfg = VisionConfig {
        image_size: 32,
        patch_size: 8,
        width: 32,
        layers: 2,
        heads: 4,
        keep_last_layer: true,
    };
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let tower = ClipVision::new(vs.root(), &cfg);
    let images = Tensor::randn([2, 3, 32, 32], tch::kind::FLOAT_CPU);
    let in_order = Tensor::arange(16, tch::kind::FLOAT_CPU)
        .unsqueeze(0)
        .repeat([2, 1]);
    let masked = tch::no_grad(|| tower.forward_masked(&images, &in_order, 16));
    let plain = tch::no_grad(|| tower.forward(&images));
    assert!(max_abs_diff(&masked.tokens, &plain) <= TOLERANCE);
    assert_eq!(masked.mask.sum(tch::Kind::Float).double_value(&[]), 0.0);
    let partial = tch::no_grad(|| {
        tower.forward_masked(&images, &Tensor::rand([2, 16], tch::kind::FLOAT_CPU), 4)
    });
    assert_eq!(partial.tokens.size(), [2, 5, 32]);
    assert_eq!(partial.mask.sum(tch::Kind::Float).double_value(&[]), 24.0);
}
