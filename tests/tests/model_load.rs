//! Loading and exporting whole-model weights: ARL names round-trip, METER names through the
//! explicit map (knowledge sublayers start fresh, nothing else may be missing), OpenAI CLIP
//! names with the text tower dropped, and position tables resized across resolutions.

use std::path::PathBuf;

use arl_contract::config::model::ModelConfig;
use arl_worker::model::arl::ArlModel;
use arl_worker::model::load::{self, METER_TO_ARL, Weights};
use arl_worker::model::vision::{ClipVision, interpolate_positions};
use tch::{Device, Kind, Tensor, nn};

fn tiny_model(seed: i64, cfg: &ModelConfig) -> (nn::VarStore, ArlModel) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let edges = Tensor::from_slice2(&[[0i64, 1, 2], [1, 2, 0]]);
    let model = ArlModel::new(&vs.root(), cfg, 3, &edges);
    (vs, model)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("arl-model-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn variables(vs: &nn::VarStore) -> Weights {
    vs.variables().into_iter().collect()
}

fn same(a: &Weights, b: &Weights, skip: impl Fn(&str) -> bool) -> bool {
    a.iter()
        .filter(|(k, _)| !skip(k))
        .all(|(k, v)| v.equal(&b[k]))
}

#[test]
fn exported_arl_weights_load_back_exactly() {
    let cfg = ModelConfig::tiny();
    let (source, reference) = tiny_model(1, &cfg);
    let path = scratch("arl.safetensors");
    load::export(&source, &path).unwrap();
    let (target, model) = tiny_model(2, &cfg);
    assert!(!same(&variables(&source), &variables(&target), |_| false));
    load::assign(&target, "", load::read(&path).unwrap(), |_| false, &path).unwrap();
    assert!(same(&variables(&source), &variables(&target), |_| false));
    let images = Tensor::randn([1, 3, 32, 32], (Kind::Float, Device::Cpu));
    let a = tch::no_grad(|| model.vision.forward(&images));
    let b = tch::no_grad(|| reference.vision.forward(&images));
    assert!(a.equal(&b));
}

/// The exported tiny model renamed to METER's names, without the parts METER never had.
fn meter_file(source: &nn::VarStore) -> Weights {
    variables(source)
        .into_iter()
        .filter(|(k, _)| !load::is_fresh_from_meter(k))
        .map(|(k, v)| {
            let renamed = METER_TO_ARL
                .iter()
                .find_map(|(meter, arl)| k.strip_prefix(arl).map(|rest| format!("{meter}{rest}")))
                .unwrap_or(k);
            (renamed, v)
        })
        .collect()
}

#[test]
fn meter_weights_load_through_the_map_with_knowledge_starting_fresh() {
    let cfg = ModelConfig::tiny();
    let (source, _) = tiny_model(1, &cfg);
    let meter = meter_file(&source);
    assert!(
        meter
            .keys()
            .any(|k| k.starts_with("cross_modal_text_layers."))
    );
    let file = PathBuf::from("meter.ckpt.safetensors");
    let (target, _) = tiny_model(2, &cfg);
    let clone = |w: &Weights| {
        w.iter()
            .map(|(k, v)| (k.clone(), v.copy()))
            .collect::<Weights>()
    };
    load::assign(
        &target,
        "",
        load::arl_from_meter(clone(&meter), &cfg.vision),
        load::is_fresh_from_meter,
        &file,
    )
    .unwrap();
    assert!(same(
        &variables(&source),
        &variables(&target),
        load::is_fresh_from_meter
    ));

    // Without the knowledge sublayers on the allow-list, they are reported missing, by name.
    let heads_only = |k: &str| k.starts_with("align_head.") || k.starts_with("mim_head.");
    let error = load::assign(
        &target,
        "",
        load::arl_from_meter(meter, &cfg.vision),
        heads_only,
        &file,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("missing keys") && error.contains("knowledge_attention"),
        "{error}"
    );
    assert!(error.contains("meter.ckpt.safetensors"), "{error}");
}

#[test]
fn openai_clip_weights_drop_the_text_tower_and_resize_positions() {
    let cfg = ModelConfig::tiny().vision; // 32 px, 3 blocks, the last one not built
    let full = arl_contract::config::model::VisionConfig {
        keep_last_layer: true,
        ..cfg.clone()
    };
    tch::manual_seed(3);
    let source_vs = nn::VarStore::new(Device::Cpu);
    let _source = ClipVision::new(source_vs.root() / "visual", &full);
    let mut openai: Weights = variables(&source_vs);
    for extra in [
        "token_embedding.weight",
        "positional_embedding",
        "ln_final.weight",
        "text_projection",
        "visual.proj",
    ] {
        openai.insert(
            extra.to_owned(),
            Tensor::zeros([2], (Kind::Float, Device::Cpu)),
        );
    }
    let at_48 = arl_contract::config::model::VisionConfig {
        image_size: 48,
        ..cfg.clone()
    };
    let target_vs = nn::VarStore::new(Device::Cpu);
    let _target = ClipVision::new(target_vs.root() / "visual", &at_48);
    let original_positions = openai["visual.positional_embedding"].copy();
    let file = PathBuf::from("ViT-B-16.safetensors");
    load::assign(
        &target_vs,
        "visual",
        load::clip_from_openai(openai, &at_48),
        |_| false,
        &file,
    )
    .unwrap();
    let loaded = &variables(&target_vs)["visual.positional_embedding"];
    assert_eq!(loaded.size(), [37, 64]);
    assert!(loaded.equal(&interpolate_positions(&original_positions, 6)));
}

#[test]
fn an_arl_checkpoint_from_another_resolution_loads_with_resized_positions() {
    let mut at_48 = ModelConfig::tiny();
    at_48.vision.image_size = 48;
    let (source, _) = tiny_model(1, &at_48);
    let cfg = ModelConfig::tiny();
    let (target, _) = tiny_model(2, &cfg);
    let file = PathBuf::from("pretrained.safetensors");
    let error = load::assign(&target, "", variables(&source), |_| false, &file)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("shape mismatches (1): vision_encoder.visual.positional_embedding"),
        "{error}"
    );
    load::assign(
        &target,
        "",
        load::resize_arl_positions(variables(&source), &cfg.vision),
        |_| false,
        &file,
    )
    .unwrap();
}

#[test]
fn the_base_align_head_loads_the_reference_gat_shapes_under_its_names() {
    // ARL_SPEC.md §2.4: conv1 = GATConv(256, 64, heads=8) (512 wide), conv2 = GATConv(512, 256),
    // named as torch-geometric 2.0 saves them in an ARL checkpoint.
    let cfg = ModelConfig::base().entity;
    let vs = nn::VarStore::new(Device::Cpu);
    let edges = Tensor::from_slice2(&[[0i64, 1], [1, 0]]);
    let _head =
        arl_worker::model::align::AlignHead::new(vs.root() / "align_head", &cfg, 2, &edges, 8);
    let reference: Weights = [
        ("conv1.lin_src.weight", vec![512, 256]),
        ("conv1.lin_dst.weight", vec![512, 256]),
        ("conv1.att_src", vec![1, 8, 64]),
        ("conv1.att_dst", vec![1, 8, 64]),
        ("conv1.bias", vec![512]),
        ("conv2.lin_src.weight", vec![256, 512]),
        ("conv2.lin_dst.weight", vec![256, 512]),
        ("conv2.att_src", vec![1, 1, 256]),
        ("conv2.att_dst", vec![1, 1, 256]),
        ("conv2.bias", vec![256]),
    ]
    .into_iter()
    .map(|(name, shape)| {
        (
            name.to_owned(),
            Tensor::ones(shape, (Kind::Float, Device::Cpu)),
        )
    })
    .collect();
    let file = scratch("reference_gat.safetensors");
    let gat = load::gat_from_pyg(reference).unwrap();
    let in_gat = |key: &str| !key.starts_with("conv");
    load::assign(&vs, "align_head", gat, in_gat, &file).unwrap();
    let loaded = variables(&vs);
    assert!(
        loaded["align_head.conv1.att_src"]
            .equal(&Tensor::ones([1, 8, 64], (Kind::Float, Device::Cpu)))
    );
    assert_eq!(loaded["align_head.conv2.lin_src.weight"].size(), [256, 512]);
}

#[test]
fn model_init_whole_tells_meter_from_arl_files_and_loads_both() {
    let (source, _) = tiny_model(1, &ModelConfig::tiny());
    let named = |w: Weights| -> Vec<(String, Tensor)> { w.into_iter().collect() };
    let (arl, meter) = (
        scratch("whole-arl.safetensors"),
        scratch("whole-meter.safetensors"),
    );
    Tensor::write_safetensors(&named(variables(&source)), &arl).unwrap();
    Tensor::write_safetensors(&named(meter_file(&source)), &meter).unwrap();
    for (file, format, fresh) in [
        (&arl, "ARL", (|_: &str| false) as fn(&str) -> bool),
        (&meter, "METER", load::is_fresh_from_meter),
    ] {
        let mut cfg = ModelConfig::tiny();
        cfg.init.whole = Some(file.clone());
        let (target, _) = tiny_model(2, &cfg);
        let loaded = arl_worker::model::init_weights::load(&target, &cfg).unwrap();
        assert_eq!(loaded[0].format, format);
        assert!(
            same(&variables(&source), &variables(&target), fresh),
            "{format}"
        );
    }
    // An OpenAI CLIP file is no whole model: refused with its keys shown.
    let mut cfg = ModelConfig::tiny();
    let clip = scratch("whole-clip.safetensors");
    let tower = [(
        "visual.conv1.weight".to_owned(),
        Tensor::zeros([1], (Kind::Float, Device::Cpu)),
    )];
    Tensor::write_safetensors(&tower, &clip).unwrap();
    cfg.init.whole = Some(clip);
    let (target, _) = tiny_model(2, &cfg);
    let error = arl_worker::model::init_weights::load(&target, &cfg)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("not METER") && error.contains("visual.conv1.weight"),
        "{error}"
    );
}
