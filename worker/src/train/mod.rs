//! Training: the optimiser and its learning-rate schedule (the trainer that drives them
//! arrives with the rest of issue 8).

pub mod collate;
pub mod masking;
pub mod optim;
pub mod schedule;
