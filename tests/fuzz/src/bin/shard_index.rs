//! AFL++ fuzzer of [`arl_tests::fuzz_targets::shard_index`].

fn main() {
    afl::fuzz!(|data: &[u8]| arl_tests::fuzz_targets::shard_index(data));
}
