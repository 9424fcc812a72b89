//! Where the launcher finds its helpers: the venv's Python and files of the project checkout.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The Python with torch: `explicit`, else `$ARL_PYTHON`, else `$VIRTUAL_ENV/bin/python3`,
/// else the project's `.venv/bin/python3` above this executable (made by `scripts/setup`).
///
/// # Errors
/// If none is found.
pub fn python(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    if let Some(path) = std::env::var_os("ARL_PYTHON") {
        return Ok(PathBuf::from(path));
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        return Ok(Path::new(&venv).join("bin/python3"));
    }
    let exe = std::env::current_exe().context("locating the arl executable")?;
    exe.ancestors()
        .map(|dir| dir.join(".venv/bin/python3"))
        .find(|candidate| candidate.exists())
        .context(
            "no Python with torch found: pass --python, or set ARL_PYTHON, or run scripts/setup",
        )
}

/// A file of the project checkout, found above this executable (e.g. `data/hpo/hp.obo`).
///
/// # Errors
/// If no folder above the executable holds `relative` (then `scripts/setup` has not run).
pub fn project_file(relative: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the arl executable")?;
    exe.ancestors()
        .map(|dir| dir.join(relative))
        .find(|candidate| candidate.exists())
        .with_context(|| {
            format!(
                "{relative} not found above {}: run scripts/setup",
                exe.display()
            )
        })
}
