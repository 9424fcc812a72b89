//! CI's smoke pass over the fuzzers' work (RELIABILITY.md): every committed corpus input and
//! every regression input of `tests/fuzz/` goes once through its target, and none may panic.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use arl_tests::fuzz_targets::TARGETS;
use arl_tests::workspace_root;

/// The files of `tests/fuzz/<folder>/<target>`, sorted (none when it does not exist).
fn inputs(folder: &str, target: &str) -> Vec<PathBuf> {
    let dir = workspace_root()
        .join("tests/fuzz")
        .join(folder)
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|path| path.is_file());
    files.sort();
    files
}

/// The inputs of `files` on which `target` panics.
fn panicking(target: fn(&[u8]), files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .filter(|path| {
            let bytes = std::fs::read(path).unwrap();
            catch_unwind(AssertUnwindSafe(|| target(&bytes))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect()
}

#[test]
fn every_corpus_and_regression_input_runs_without_a_panic() {
    let mut failures = Vec::new();
    for (name, target) in TARGETS {
        let corpus = inputs("corpus", name);
        assert!(!corpus.is_empty(), "tests/fuzz/corpus/{name} has no inputs");
        failures.extend(panicking(*target, &corpus));
        failures.extend(panicking(*target, &inputs("regressions", name)));
    }
    assert!(failures.is_empty(), "panicked on {failures:#?}");
}

#[test]
fn the_fuzz_folders_name_only_known_targets() {
    let fuzz = workspace_root().join("tests/fuzz");
    for folder in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(folder)) else {
            continue;
        };
        for entry in entries {
            let name = entry.unwrap().file_name();
            assert!(
                TARGETS.iter().any(|(target, _)| Path::new(target) == name),
                "tests/fuzz/{folder}/{name:?} is no target of arl_tests::fuzz_targets"
            );
        }
    }
}
