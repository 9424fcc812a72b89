//! The optimiser of ARL (ARL_SPEC.md §5.1): Hugging Face's `transformers.AdamW` (betas
//! (0.9, 0.98), eps 1e-8, bias correction, weight decay 0.01 applied after the Adam update,
//! unlike `torch.optim.AdamW`), over six parameter groups chosen by substrings of the
//! parameter names: {base, head, multi-modal} × {decay, no decay}.

use arl_contract::config::train::OptimConfig;
use tch::{Kind, Tensor, nn};

use crate::train_state::Named;

/// Name substrings of the heads' parameters (the align head counts only in pretraining).
const HEADS: [&str; 6] = [
    "mlm_head",
    "mim_head",
    "itm_head",
    "vqa_head",
    "cls_head",
    "irtr_head",
];
/// Name substrings of parameters without weight decay.
const NO_DECAY: [&str; 9] = [
    "bias",
    "LayerNorm.bias",
    "LayerNorm.weight",
    "norm.bias",
    "norm.weight",
    "norm1.bias",
    "norm1.weight",
    "norm2.bias",
    "norm2.weight",
];

/// The six groups, in the reference's order.
pub const GROUPS: [&str; 6] = [
    "base",
    "base_no_decay",
    "head",
    "head_no_decay",
    "multi_modal",
    "multi_modal_no_decay",
];

/// The group of parameter `name` (an index into [`GROUPS`]).
pub fn group_of(name: &str, pretraining: bool) -> usize {
    let head =
        HEADS.iter().any(|h| name.contains(h)) || (pretraining && name.contains("align_head"));
    let kind = if head {
        1
    } else if name.contains("multi_modal") {
        2
    } else {
        0
    };
    let no_decay = NO_DECAY.iter().any(|n| name.contains(n));
    2 * kind + usize::from(no_decay)
}

/// The peak learning rate of group `group` under `cfg`.
fn peak_lr(cfg: &OptimConfig, group: usize) -> f64 {
    cfg.lr
        * match group / 2 {
            1 => cfg.lr_multiplier_head,
            2 => cfg.lr_multiplier_multi_modal,
            _ => 1.0,
        }
}

struct Param {
    name: String,
    value: Tensor,
    group: usize,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// AdamW over a model's trainable parameters.
pub struct AdamW {
    params: Vec<Param>,
    cfg: OptimConfig,
    steps: u64,
}

impl AdamW {
    /// The optimiser of `vs`'s trainable variables, in name order.
    pub fn new(vs: &nn::VarStore, cfg: OptimConfig, pretraining: bool) -> Self {
        let mut variables: Vec<Named> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        let params = variables
            .into_iter()
            .map(|(name, value)| Param {
                group: group_of(&name, pretraining),
                exp_avg: value.zeros_like(),
                exp_avg_sq: value.zeros_like(),
                name,
                value,
            })
            .collect();
        Self {
            params,
            cfg,
            steps: 0,
        }
    }

    /// Optimiser steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Sets the step count (when resuming).
    pub fn set_steps(&mut self, steps: u64) {
        self.steps = steps;
    }

    /// The peak learning rate of group `group` (an index into [`GROUPS`]).
    pub fn peak_lr(&self, group: usize) -> f64 {
        peak_lr(&self.cfg, group)
    }

    /// Parameter names per group (for logs and tests).
    pub fn groups(&self) -> Vec<Vec<&str>> {
        let mut groups = vec![Vec::new(); GROUPS.len()];
        for p in &self.params {
            groups[p.group].push(p.name.as_str());
        }
        groups
    }

    /// The parameters, by name.
    pub fn parameters(&self) -> Vec<Named> {
        self.params
            .iter()
            .map(|p| (p.name.clone(), p.value.shallow_clone()))
            .collect()
    }

    /// Clears every parameter's gradient.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.value.zero_grad();
        }
    }

    /// The gradients that backward produced (parameters it did not reach have none).
    pub fn grads(&self) -> Vec<Tensor> {
        self.params
            .iter()
            .map(|p| p.value.grad())
            .filter(Tensor::defined)
            .collect()
    }

    /// The moment estimates, as `NAME.exp_avg` and `NAME.exp_avg_sq` (for checkpoints).
    pub fn state(&self) -> Vec<Named> {
        self.params
            .iter()
            .flat_map(|p| {
                [
                    (format!("{}.exp_avg", p.name), p.exp_avg.shallow_clone()),
                    (
                        format!("{}.exp_avg_sq", p.name),
                        p.exp_avg_sq.shallow_clone(),
                    ),
                ]
            })
            .collect()
    }

    /// The global L2 norm of the gradients (parameters without gradient count as zero).
    pub fn grad_norm(&self) -> f64 {
        let norms: Vec<Tensor> = self
            .grads()
            .iter()
            .map(|g| g.to_kind(Kind::Float).norm().square())
            .collect();
        if norms.is_empty() {
            return 0.0;
        }
        Tensor::stack(&norms, 0)
            .sum(Kind::Float)
            .sqrt()
            .double_value(&[])
    }

    /// Scales every gradient so that the global norm is at most `max_norm` (as
    /// `torch.nn.utils.clip_grad_norm_`); returns the norm before clipping.
    pub fn clip_grad_norm(&self, max_norm: f64) -> f64 {
        let norm = self.grad_norm();
        let scale = max_norm / (norm + 1e-6);
        if scale < 1.0 {
            for mut grad in self.grads() {
                let _ = grad.g_mul_scalar_(scale);
            }
        }
        norm
    }

    /// One AdamW step with every group's learning rate at `factor` of its peak; parameters
    /// without gradient are left alone (as the reference does). Every update is in place:
    /// the only temporaries are `g²` and the denominator, one parameter at a time.
    pub fn step(&mut self, factor: f64) {
        let (beta1, beta2) = self.cfg.betas;
        self.steps += 1;
        let step = self.steps as f64;
        let correction = (1.0 - beta2.powf(step)).sqrt() / (1.0 - beta1.powf(step));
        tch::no_grad(|| {
            for p in &mut self.params {
                let grad = p.value.grad();
                if !grad.defined() {
                    continue;
                }
                let lr = factor * peak_lr(&self.cfg, p.group);
                // m ← β₁m + (1-β₁)g;  v ← β₂v + (1-β₂)g²
                let _ = p.exp_avg.lerp_(&grad, 1.0 - beta1);
                let _ = p.exp_avg_sq.lerp_(&grad.square(), 1.0 - beta2);
                if lr == 0.0 {
                    continue; // the warm-up's first step moves nothing
                }
                // p ← p - lr·c·m / (√v + ε), written as p + m / ((√v + ε) / (-lr·c))
                let mut denom = p.exp_avg_sq.sqrt();
                let _ = denom.g_add_scalar_(self.cfg.eps);
                let _ = denom.g_div_scalar_(-lr * correction);
                let _ = p.value.addcdiv_(&p.exp_avg, &denom);
                if self.cfg.weight_decay > 0.0 && p.group % 2 == 0 {
                    // decoupled decay after the update, as Hugging Face's AdamW
                    let _ = p.value.g_mul_scalar_(1.0 - lr * self.cfg.weight_decay);
                }
            }
        });
    }
}
