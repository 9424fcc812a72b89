//! Training: the pretraining loop and what it is made of (config, collate, MLM masking,
//! optimiser, schedule, checkpointing, step reports and TensorBoard, stop signals).

pub mod checkpointing;
pub mod collate;
pub mod config;
pub mod init;
pub mod masking;
pub mod optim;
pub mod pretrain;
pub mod rank;
pub mod reconstruction;
pub mod report;
pub mod schedule;
pub mod stop;
pub mod tensorboard;
