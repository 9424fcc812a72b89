//! AFL++ fuzzer of [`arl_tests::fuzz_targets::checkpoint_manifest`].

fn main() {
    afl::fuzz!(|data: &[u8]| arl_tests::fuzz_targets::checkpoint_manifest(data));
}
