//! AFL++ fuzzer of [`arl_tests::fuzz_targets::image`].

fn main() {
    afl::fuzz!(|data: &[u8]| arl_tests::fuzz_targets::image(data));
}
