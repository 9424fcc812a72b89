//! The learning-rate schedule (ARL_SPEC.md §5.2): `get_polynomial_decay_schedule_with_warmup`
//! with power 1 and end 0, stepped once per optimiser step as PyTorch's `LambdaLR` does, so
//! optimiser step `k` (from 0) runs at `base · factor(k)` (the first warm-up step at 0).

use serde::{Deserialize, Serialize};

/// Warm-up then linear decay to zero.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Warm-up optimiser steps.
    pub warmup_steps: u64,
    /// Optimiser steps of the whole run.
    pub total_steps: u64,
}

impl Schedule {
    /// The schedule of a run of `total_steps`, warming up over `warmup` of them: a fraction
    /// when below 1 (the reference's `warmup_steps=0.1` means `int(0.1 · total)`), else a count.
    pub fn new(total_steps: u64, warmup: f64) -> Self {
        let warmup_steps = if warmup < 1.0 {
            (warmup * total_steps as f64) as u64
        } else {
            warmup as u64
        };
        Self {
            warmup_steps,
            total_steps,
        }
    }

    /// The multiplier of every group's learning rate at optimiser step `step`.
    pub fn factor(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return step as f64 / self.warmup_steps.max(1) as f64;
        }
        // At the end and past it: zero (also when the warm-up is the whole run, where the
        // decay below would divide zero by zero).
        if step >= self.total_steps {
            return 0.0;
        }
        let decay_steps = (self.total_steps - self.warmup_steps) as f64;
        1.0 - (step - self.warmup_steps) as f64 / decay_steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_linearly_then_decays_to_zero() {
        let schedule = Schedule::new(100, 0.1);
        assert_eq!(schedule.warmup_steps, 10);
        assert_eq!(schedule.factor(0), 0.0);
        assert_eq!(schedule.factor(5), 0.5);
        assert_eq!(schedule.factor(10), 1.0);
        assert_eq!(schedule.factor(55), 0.5);
        assert_eq!(schedule.factor(100), 0.0);
        assert_eq!(schedule.factor(150), 0.0);
        assert_eq!(Schedule::new(100, 20.0).warmup_steps, 20);
        let all_warmup = Schedule::new(2, 2.0);
        assert_eq!((all_warmup.factor(1), all_warmup.factor(2)), (0.5, 0.0));
    }
}
