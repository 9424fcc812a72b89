//! AFL++ fuzzer of [`arl_tests::fuzz_targets::config`].

fn main() {
    afl::fuzz!(|data: &[u8]| arl_tests::fuzz_targets::config(data));
}
