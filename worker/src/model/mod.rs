//! The ARL model in tch (ARL_SPEC.md §1–3): one struct per block, forward functions with tensor
//! shapes in comments, and loaders for Hugging Face / OpenAI weights.

pub mod align;
pub mod arl;
pub mod flops;
pub mod fusion;
pub mod gat;
pub mod heads;
pub mod init_weights;
pub mod layers;
pub mod load;
pub mod pretext;
pub mod summary;
pub mod text;
pub mod vision;
