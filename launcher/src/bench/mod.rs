//! `arl bench …`: side-by-side benchmarks against the Python reference, in the same run.

pub mod allreduce;
pub mod chaos;
pub mod checkpoint;
pub mod compare;
pub mod data;
pub mod faults;
pub mod link;
pub mod model;
pub mod s3;
