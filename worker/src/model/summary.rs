//! `arl model summary`: parameters per module of a built model, and the total.

use std::collections::BTreeMap;

use tch::{Device, Kind, Tensor, nn};

use super::arl::ArlModel;
use arl_contract::config::model::ModelConfig;

/// Parameter counts of one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Top-level module → parameters, in name order.
    pub modules: BTreeMap<String, i64>,
    /// Parameters of the knowledge sublayers of the text-side fusion layers.
    pub knowledge: i64,
    /// Everything.
    pub total: i64,
}

/// Builds the model described by `cfg` over `entities` entities (no edges) and counts.
pub fn summarize(cfg: &ModelConfig, entities: i64) -> Summary {
    let vs = nn::VarStore::new(Device::Cpu);
    let no_edges = Tensor::zeros([2, 0], (Kind::Int64, Device::Cpu));
    let _model = ArlModel::new(&vs.root(), cfg, entities, &no_edges);
    let mut modules = BTreeMap::new();
    let mut knowledge = 0;
    for (name, var) in vs.variables() {
        let count = var.numel() as i64;
        let top = name.split('.').next().unwrap_or(&name).to_owned();
        *modules.entry(top).or_insert(0) += count;
        if name.starts_with("multi_modal_language_layers.") && name.contains("knowledge") {
            knowledge += count;
        }
    }
    let total = modules.values().sum();
    Summary {
        modules,
        knowledge,
        total,
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{:<32} {:>14}", "module", "parameters")?;
        for (name, count) in &self.modules {
            writeln!(f, "{name:<32} {:>14}", group_digits(*count))?;
        }
        writeln!(f, "{:<32} {:>14}", "total", group_digits(self.total))?;
        write!(
            f,
            "{:<32} {:>14}",
            "  of which knowledge sublayers",
            group_digits(self.knowledge)
        )
    }
}

/// 12345678 → "12,345,678".
fn group_digits(n: i64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_grouped_by_thousands() {
        assert_eq!(group_digits(12_238_848), "12,238,848");
        assert_eq!(group_digits(512), "512");
    }

    #[test]
    fn base_knowledge_sublayers_cost_what_the_paper_reports() {
        // ARL_SPEC.md §1.5: 2,039,808 per text layer, 12,238,848 for six (the paper's "+12M").
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = ModelConfig::base().fusion;
        let _layer = super::super::fusion::TextLayer::new(vs.root() / "layer", &cfg);
        let knowledge: i64 = vs
            .variables()
            .iter()
            .filter(|(name, _)| name.contains("knowledge"))
            .map(|(_, var)| var.numel() as i64)
            .sum();
        assert_eq!(knowledge, 2_039_808);
    }

    #[test]
    fn without_reasoning_with_knowledge_the_sublayers_are_gone_and_nothing_else() {
        let with = summarize(&ModelConfig::tiny(), 10);
        let mut cfg = ModelConfig::tiny();
        cfg.fusion.knowledge = false;
        let without = summarize(&cfg, 10);
        assert_eq!(without.knowledge, 0);
        assert_eq!(without.total, with.total - with.knowledge);
    }

    #[test]
    fn tiny_summary_adds_up_and_counts_the_knowledge_sublayers() {
        let summary = summarize(&ModelConfig::tiny(), 10);
        assert_eq!(summary.total, summary.modules.values().sum::<i64>());
        assert!(
            summary.knowledge > 0
                && summary.knowledge < summary.modules["multi_modal_language_layers"]
        );
        assert_eq!(
            summary.modules["align_head"]
                - summarize(&ModelConfig::tiny(), 0).modules["align_head"],
            10 * 32
        );
    }
}
