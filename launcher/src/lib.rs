//! The `arl` launcher: trains ARL (knowledge-enhanced medical vision-language pretraining) end
//! to end by launching one `arl-worker` per device, then the fine-tunes, then a results table.
//! This library holds the config, the local world of rank processes, and the benchmarks.

pub mod ablate;
pub mod bench;
pub mod ckpt;
pub mod config;
pub mod console;
pub mod finetune;
pub mod job;
pub mod paths;
pub mod prepare;
pub mod pretrain;
pub mod results;
pub mod run;
pub mod topology;
pub mod world;
