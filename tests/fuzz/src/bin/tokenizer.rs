//! AFL++ fuzzer of [`arl_tests::fuzz_targets::tokenizer`].

fn main() {
    afl::fuzz!(|data: &[u8]| arl_tests::fuzz_targets::tokenizer(data));
}
