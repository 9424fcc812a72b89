//! The `arl` launcher: trains ARL (knowledge-enhanced medical vision-language pretraining) end
//! to end by launching one `arl-worker` per device, then the fine-tunes, then a results table.
//! The job contract (config, locations, events) is the `arl_contract` crate; this library holds
//! one module per user command, the worker processes (spawned in `spawn`, supervised in
//! `world`), the progress display and the results tables, and the benchmarks.

pub mod ablate;
pub mod bench;
pub mod check;
pub mod ckpt;
pub mod console;
pub mod failure;
pub mod finetune;
pub mod heartbeats;
pub mod job;
pub mod liveness;
pub mod membership;
pub mod model_init;
pub mod net_beats;
pub mod paths;
pub mod prepare;
pub mod pretrain;
pub mod progress;
pub mod restarts;
pub mod results;
pub mod run;
pub mod spawn;
pub mod topology;
pub mod watchdog;
pub mod world;
