//! The job contract that the `arl` launcher and every `arl-worker` rank share, with no tensor
//! library behind it: the whole config as types with one validation pass ([`config`],
//! [`validate`]), every location of a run ([`locations`]), the run identity and its hash
//! ([`identity`]), the metrics ([`metrics`]), the typed events a rank reports ([`events`]) and
//! the heartbeats every rank sends its launcher ([`heartbeat`]).

pub mod config;
pub mod events;
pub mod heartbeat;
pub mod identity;
pub mod locations;
pub mod metrics;
pub mod rank_env;
pub mod validate;

pub use config::{JobConfig, PRETRAIN_JOB};
pub use events::Event;
pub use locations::Locations;
