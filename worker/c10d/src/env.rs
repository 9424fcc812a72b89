//! The launcher↔worker contract: the standard torchrun-style variables, read and checked.

use std::env;

use crate::error::{C10dError, Result};

/// One rank's place in the job, from `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`,
/// `MASTER_ADDR` and `MASTER_PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankEnv {
    /// Global rank, `0..world_size`.
    pub rank: usize,
    /// Number of ranks in the job.
    pub world_size: usize,
    /// Rank on this node (selects the GPU).
    pub local_rank: usize,
    /// Ranks on this node.
    pub local_world_size: usize,
    /// Host of the rank-0 store.
    pub master_addr: String,
    /// Port of the rank-0 store.
    pub master_port: u16,
}

impl RankEnv {
    /// Reads the process environment.
    ///
    /// # Errors
    /// A missing or unparsable variable, or inconsistent values, named in the message.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| env::var(name).ok())
    }

    /// Reads the variables through `lookup` (the environment, or a map in tests).
    ///
    /// # Errors
    /// As [`RankEnv::from_env`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let rank = number(&lookup, "RANK", None)?;
        let world_size = number(&lookup, "WORLD_SIZE", None)?;
        let local_rank = number(&lookup, "LOCAL_RANK", Some(rank))?;
        let local_world_size = number(&lookup, "LOCAL_WORLD_SIZE", Some(world_size))?;
        let master_addr = lookup("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".to_owned());
        let master_port = number(&lookup, "MASTER_PORT", Some(29500))?;
        let env = Self {
            rank,
            world_size,
            local_rank,
            local_world_size,
            master_addr,
            master_port: u16::try_from(master_port)
                .map_err(|_| invalid(format!("MASTER_PORT={master_port} is not a port")))?,
        };
        env.check()?;
        Ok(env)
    }

    fn check(&self) -> Result<()> {
        if self.world_size == 0 {
            return Err(invalid("WORLD_SIZE must be at least 1".into()));
        }
        if self.rank >= self.world_size {
            return Err(invalid(format!(
                "RANK={} is not below WORLD_SIZE={}",
                self.rank, self.world_size
            )));
        }
        if self.local_rank >= self.local_world_size {
            return Err(invalid(format!(
                "LOCAL_RANK={} is not below LOCAL_WORLD_SIZE={}",
                self.local_rank, self.local_world_size
            )));
        }
        Ok(())
    }
}

fn number<T: std::str::FromStr>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: Option<T>,
) -> Result<T> {
    match (lookup(name), default) {
        (Some(text), _) => text
            .trim()
            .parse()
            .map_err(|_| invalid(format!("{name}={text:?} is not a non-negative integer"))),
        (None, Some(value)) => Ok(value),
        (None, None) => Err(invalid(format!("{name} is not set"))),
    }
}

fn invalid(reason: String) -> C10dError {
    C10dError::Invalid {
        op: "read rank environment".into(),
        rank: -1,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<RankEnv> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        RankEnv::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_fill_local_values_and_master() {
        let env = from(&[("RANK", "1"), ("WORLD_SIZE", "3")]).unwrap();
        assert_eq!(env.local_rank, 1);
        assert_eq!(env.local_world_size, 3);
        assert_eq!(
            (env.master_addr.as_str(), env.master_port),
            ("127.0.0.1", 29500)
        );
    }

    #[test]
    fn errors_name_the_variable() {
        let missing = from(&[("WORLD_SIZE", "2")]).unwrap_err().to_string();
        assert!(missing.contains("RANK is not set"), "{missing}");
        let bad = from(&[("RANK", "x"), ("WORLD_SIZE", "2")])
            .unwrap_err()
            .to_string();
        assert!(bad.contains("RANK=\"x\""), "{bad}");
        let high = from(&[("RANK", "2"), ("WORLD_SIZE", "2")])
            .unwrap_err()
            .to_string();
        assert!(high.contains("not below WORLD_SIZE=2"), "{high}");
        let port = from(&[("RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_PORT", "70000")]);
        assert!(port.unwrap_err().to_string().contains("MASTER_PORT=70000"));
    }
}
