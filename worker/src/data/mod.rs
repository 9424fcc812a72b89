//! Data: the text pipeline (and, with issue 5, shards, streaming and images).

pub mod text;
