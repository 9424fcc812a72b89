//! The per-rank side of arl: joining the process group and the work one rank does.
//! (The model, data and tasks arrive with their issues; see ARCHITECTURE.md.)

pub mod bench;
pub mod dist;
pub mod model;
pub mod preflight;
