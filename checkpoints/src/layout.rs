//! Names inside a checkpoint location.

/// The manifest of a checkpoint.
pub const MANIFEST: &str = "manifest.json";
/// The commit marker, written last.
pub const COMMIT: &str = "COMMITTED";
/// Written in place of the commit marker when a committed checkpoint fails verification.
pub const REJECTED: &str = "REJECTED";
/// The format written into manifests and markers.
pub const FORMAT: &str = "arl-checkpoint/1";

/// The folder of the checkpoint of `step`: `step-000000001000`.
pub fn step_dir(step: u64) -> String {
    format!("step-{step:012}")
}

/// The step of a checkpoint folder name, if it is one.
pub fn parse_step_dir(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("step-")?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The `index`-th tensor file of `group`: `model-00000.safetensors`.
pub fn tensor_file(group: &str, index: usize) -> String {
    format!("{group}-{index:05}.safetensors")
}

/// Whether `name` can be a group name (it becomes part of file names).
pub fn valid_group(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether `name` can be a file of a checkpoint (no folders, nothing hidden).
pub fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_folders_sort_by_step_and_parse_back() {
        assert_eq!(step_dir(1000), "step-000000001000");
        assert!(step_dir(99) < step_dir(100));
        assert_eq!(parse_step_dir(&step_dir(42)), Some(42));
        for other in ["step-", "step-12a", "steps-1", "tmp", "step--1"] {
            assert_eq!(parse_step_dir(other), None, "{other}");
        }
    }

    #[test]
    fn file_names_stay_inside_the_checkpoint() {
        assert!(valid_file_name(&tensor_file("optim", 3)));
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(!valid_file_name(bad), "{bad}");
        }
        assert!(valid_group("model") && !valid_group("a-b") && !valid_group(""));
    }
}
