#!/usr/bin/env bash
# GPU check (needs a machine with an NVIDIA GPU): builds with --features cuda,nccl, then runs
#   1. a single-rank NCCL all-reduce through our c10d shim (arl-worker preflight/bench),
#   2. a bf16 matrix-multiply throughput check through tch,
#   3. `arl run` on the embedded default with one NCCL rank and bf16 autocast (10 steps),
# and prints a small table. Exits non-zero if any check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

ARL_FEATURES=cuda,nccl scripts/setup
export TORCH_CPP_LOG_LEVEL=ERROR
port=$((29000 + RANDOM % 1000))
env1=(RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port)

resolved=$(mktemp -d)/config.toml
target/release/arl check --set launch.backend=nccl --set launch.nproc_per_node=1 >"$resolved"
preflight=$(env "${env1[@]}" timeout 300 target/release/arl-worker preflight --config "$resolved")
bench=$(env "${env1[@]}" MASTER_PORT=$((port + 1)) timeout 300 \
  target/release/arl-worker bench-allreduce --backend nccl --sizes-mb 16,128 --warmup 3 --iters 20)
matmul=$(timeout 300 target/release/arl-worker bench-matmul --kind bf16 --size 8192 --iters 20)

rm -rf runs/gpu-check && mkdir -p runs
timeout 600 target/release/arl run --set launch.backend=nccl --nproc-per-node 1 \
  --set train.precision=bf16 --set train.steps=10 --set prepare.scenes=40 \
  --set train.run_dir=runs/gpu-check 2>runs/gpu-check.log || { tail -30 runs/gpu-check.log; exit 1; }
pretrain=$(grep '"loss"' runs/gpu-check/rank0.jsonl | tail -1)

printf '\n%-34s %s\n' "check" "result"
printf '%-34s %s\n' "nccl preflight (1 rank)" "$preflight"
while read -r line; do printf '%-34s %s\n' "nccl all-reduce (1 rank)" "$line"; done <<<"$bench"
printf '%-34s %s\n' "bf16 matmul 8192^3" "$matmul"
printf '%-34s %s\n' "pretrain tiny, nccl + bf16" "$pretrain"
