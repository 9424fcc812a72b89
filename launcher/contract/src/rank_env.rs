//! The variables `arl` sets for each rank besides the standard ones (`RANK`, `WORLD_SIZE`, …;
//! see cluster/README.md).

/// The address this rank's node binds and advertises to the other nodes (Gloo's).
pub const NODE_ADDR_VAR: &str = "ARL_NODE_ADDR";
/// The descriptor of the rank's heartbeat pipe ([`crate::heartbeat`]).
pub const PROGRESS_FD_VAR: &str = "ARL_PROGRESS_FD";
/// The token of the run's world (job and restart round), checked at the rendezvous.
pub const RUN_TOKEN_VAR: &str = "ARL_RUN_TOKEN";
/// Restarts of the world so far in this launch.
pub const RESTART_COUNT_VAR: &str = "ARL_RESTART_COUNT";
