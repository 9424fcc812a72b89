//! AFL++ fuzzer of [`arl_tests::fuzz_targets::rrf`].

fn main() {
    // A panic that the parser contains (as that input's error) is no crash; one that escapes is.
    afl::fuzz_nohook!(|data: &[u8]| arl_tests::fuzz_targets::rrf(data));
}
