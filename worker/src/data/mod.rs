//! Data: the sample order across ranks and the text pipeline (shards, streaming and images
//! arrive with the rest of issue 5).

pub mod cache;
pub mod image;
pub mod remote;
pub mod sampler;
pub mod shard;
pub mod stream;
pub mod table;
pub mod text;
