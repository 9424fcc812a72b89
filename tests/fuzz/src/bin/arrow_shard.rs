//! AFL++ fuzzer of [`arl_tests::fuzz_targets::arrow_shard`].

fn main() {
    afl::fuzz!(|data: &[u8]| arl_tests::fuzz_targets::arrow_shard(data));
}
