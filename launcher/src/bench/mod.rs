//! `arl bench …`: side-by-side benchmarks against the Python reference, in the same run.

pub mod allreduce;
pub mod checkpoint;
pub mod compare;
pub mod data;
pub mod link;
pub mod model;
pub mod s3;
