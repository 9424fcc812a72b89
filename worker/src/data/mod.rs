//! Data: sharded image-text datasets in object storage, streamed through a local cache in a
//! deterministic order partitioned across ranks, decoded and transformed off the training
//! thread; and the text pipeline.

pub mod annotate;
pub mod cache;
pub mod dicom;
pub mod image;
pub mod inspect;
pub mod labels;
pub mod loader;
pub mod remote;
pub mod sample_check;
pub mod sampler;
pub mod shard;
pub mod stream;
pub mod table;
pub mod text;
pub mod tokenizer_train;
