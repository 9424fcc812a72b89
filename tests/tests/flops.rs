//! The model FLOPs that MFU divides by (`arl_worker::model::flops`) against PyTorch's own FLOP
//! counter (`torch.utils.flop_counter.FlopCounterMode`) on the reference model
//! (scripts/fixtures/flops.py): every block of a pretraining step, exactly, for the tiny preset
//! and a model whose sizes all differ; the steps built from them; and the backward the counter
//! sees against the 3 × forward convention.

use arl_contract::config::model::ModelConfig;
use arl_tests::flops_fixtures;
use arl_worker::model::flops::{PretrainFlops, PretrainShape, TRAINING_PER_FORWARD};
use serde_json::Value;

/// Each case of the fixture: its name, the counter's numbers, and ours.
fn cases() -> Vec<(String, Value, PretrainFlops)> {
    let path = flops_fixtures().join("manifest.json");
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cases = manifest["cases"].as_object().unwrap();
    assert!(cases.contains_key("tiny") && cases.contains_key("small"));
    cases
        .iter()
        .map(|(name, case)| {
            let cfg: ModelConfig = serde_json::from_value(case["model"].clone())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            // The fixture's presets are ours.
            match name.as_str() {
                "tiny" => assert_eq!(cfg, ModelConfig::tiny()),
                "base" => assert_eq!(cfg, ModelConfig::base()),
                _ => {}
            }
            let shape = &case["shape"];
            let int = |key: &str| shape[key].as_i64().unwrap();
            let shape = PretrainShape {
                batch: int("batch"),
                text_len: int("text_len"),
                slots: int("slots"),
                entities: int("entities"),
                align: shape["align"].as_bool().unwrap(),
            };
            (name.clone(), case.clone(), PretrainFlops::new(&cfg, shape))
        })
        .collect()
}

fn counted(case: &Value, key: &str) -> u64 {
    case[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no count {key}"))
}

#[test]
fn every_block_counts_what_pytorchs_flop_counter_counts() {
    for (name, case, ours) in cases() {
        let blocks = [
            ("vision", ours.vision),
            ("vision_masked", ours.vision_masked),
            ("text", ours.text),
            ("language_proj", ours.language_proj),
            ("vision_proj", ours.vision_proj),
            ("vision_proj_masked", ours.vision_proj_masked),
            ("fusion", ours.fusion),
            ("fusion_masked", ours.fusion_masked),
            ("mlm_head", ours.mlm_head),
            ("mim_head", ours.mim_head),
            ("itm_head", ours.itm_head),
            ("align_queries", ours.align_queries),
            ("align_logits", ours.align_logits),
            ("graph", ours.graph),
        ];
        let theirs = case["blocks"].as_object().unwrap();
        assert_eq!(theirs.len(), blocks.len(), "{name}: {theirs:?}");
        for (block, flops) in blocks {
            assert_eq!(flops, counted(&case["blocks"], block), "{name}: {block}");
        }
        println!(
            "{name}: {} forward FLOPs per micro-batch of {}, {:.4e} training FLOPs per sample",
            ours.step_forward(),
            ours.shape.batch,
            ours.training_per_sample()
        );
    }
}

#[test]
fn our_step_is_the_reference_step_without_its_itm_vision_pass_and_the_arl_codes_without_recomputation()
 {
    for (name, case, ours) in cases() {
        // The reference model's step encodes the ITM images afresh; ours gathers the batch's
        // own encodings (pretext.rs).
        assert_eq!(
            ours.step_forward() + ours.vision + ours.vision_proj,
            counted(&case, "reference_step"),
            "{name}"
        );
        // The ARL code's step: every objective encodes its own inputs, so the GAT runs five
        // times, the plain text and the full image three times each.
        let recomputed = 4 * ours.graph
            + 2 * (ours.text + ours.language_proj)
            + 2 * (ours.vision + ours.vision_proj);
        assert_eq!(
            ours.step_forward() + recomputed,
            counted(&case, "arl_code_step"),
            "{name}"
        );
    }
}

#[test]
fn the_counted_backward_is_at_most_the_two_forwards_the_convention_adds() {
    for (name, case, _) in cases() {
        let forward = counted(&case, "reference_step");
        let backward = counted(&case, "reference_step_backward");
        let ratio = backward as f64 / forward as f64;
        println!("{name}: backward / forward = {ratio:.3}");
        // Two products per forward product at most; inputs that need no gradient (images, P)
        // and outputs that reach no loss (the MIM pass after its tap) make it less.
        assert!(
            (1.0..=(TRAINING_PER_FORWARD - 1) as f64).contains(&ratio),
            "{name}: {ratio}"
        );
    }
}
