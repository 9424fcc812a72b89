//! Fine-tuning and evaluation on the paper's benchmarks (ARL_SPEC.md §4.3–5.6): Med-VQA
//! (answer classification), Med-ITC (classification) and Med-ITR (retrieval), each a
//! data-parallel job started from the pipeline's pretrained weights.

pub mod build;
pub mod eval;
pub mod metrics;
pub mod progress;
pub mod run;
pub mod task;
pub mod weights;
