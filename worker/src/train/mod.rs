//! Training: the pretraining loop and what it is made of (config, collate, MLM masking,
//! optimiser, schedule).

pub mod collate;
pub mod config;
pub mod masking;
pub mod optim;
pub mod pretrain;
pub mod schedule;
