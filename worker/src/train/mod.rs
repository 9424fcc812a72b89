//! Training: the data-parallel step loop every job runs and what it is made of (collectives,
//! optimiser, schedule, checkpointing, events and TensorBoard, throughput and MFU, stop signals), and the
//! pretraining job (collate, MLM masking, the four objectives).

pub mod checkpointing;
pub mod collate;
pub mod grad_sync;
pub mod init;
pub mod masking;
pub mod optim;
pub mod pretrain;
pub mod rank;
pub mod reconstruction;
pub mod report;
pub mod sample_log;
pub mod schedule;
pub mod seed;
pub mod step_loop;
pub mod stop;
pub mod tensorboard;
pub mod throughput;
