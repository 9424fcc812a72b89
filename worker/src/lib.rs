//! The per-rank side of arl: joining the process group, the ARL model, and the work one rank
//! does: the preflight, the shared step loop, pretraining and the fine-tunes, and the tools
//! behind `arl data`, `arl knowledge`, `arl model` and `arl bench`.

pub mod bench;
pub mod checkpoint_bench;
pub mod convert;
pub mod data;
pub mod data_check;
pub mod ddp_bench;
pub mod dist;
pub mod finetune;
pub mod heartbeat;
pub mod knowledge;
pub mod model;
pub mod preflight;
pub mod stream_bench;
pub mod synth;
pub mod train;
pub mod train_state;
