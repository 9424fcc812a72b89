#!/usr/bin/env bash
# GPU check: run on a machine with one (or two) NVIDIA GPUs; about 3-5 minutes once the CUDA
# build is warm, never more than ARL_GPU_CHECK_BUDGET_S (470 s) in all. Works offline: libtorch
# comes from an installed torch (LIBTORCH_USE_PYTORCH=1, the first of $ARL_PYTHON, .venv/bin/python3
# and python3 that imports torch) or from $LIBTORCH; scripts/setup is not run. Checks, each with
# its own time limit, each recorded as PASS, FAIL or SKIP, none stopping the others:
#   env          nvidia-smi, torch (CUDA, NCCL, bf16), cargo, the NCCL/CUDA headers of the shim
#   build        cargo build --release -p arl-launcher -p arl-worker with ARL_FEATURES (cuda,nccl)
#   unit tests   the CUDA variants of the tests: there are none today (the grep is in tests.log);
#                ARL_GPU_CHECK_CARGO_TEST="ARGS" runs `cargo test --release --features ... ARGS`
#   cuda smoke   tch on the GPU (bench-matmul must report Cuda(0)); bf16 8192^3 TFLOP/s
#   preflight    one NCCL rank through the c10d shim (arl-worker preflight)
#   pretrain     `arl run` on the synthetic benchmark, the base preset, bf16, one NCCL rank, 40
#                steps of 16 samples, checkpoints at steps 20 and 40: samples/s (median after
#                5 steps), TFLOP/s and MFU when the step events carry them, peak GPU memory
#   checkpoint   the stall of a checkpoint taken from GPU memory (checkpoint_staged.stall_ms)
#   reference    the same step (--step full --recompute, same batch, bf16 autocast) of the PyTorch
#                reference (scripts/fixtures/bench_model.py) on the same GPU; ratio = ARL/PyTorch
#   all-reduce   two NCCL ranks (arl-worker bench-allreduce), when two GPUs are visible
# Output, 8 files in ${OUT:-runs/gpu-check}: summary.txt (the table, also printed), env.txt,
# build.log, tests.log, pretrain.log, pretrain.jsonl (rank 0's events), bench.log, gpu-mem.csv.
# Exit status 1 when a check failed. Needs data/hpo/hp.obo (scripts/setup fetches it) for the
# synthetic benchmark, about 10 GB free under $TMPDIR (two 4.55 GB checkpoints) and, for the
# reference, transformers and torch_geometric beside torch.
# Settings (environment): OUT, ARL_FEATURES (cuda,nccl), ARL_PYTHON, LIBTORCH,
#   ARL_GPU_CHECK_BUDGET_S (470), ARL_GPU_CHECK_BUILD (1; 0 uses the binaries already built),
#   ARL_GPU_CHECK_BUILD_TIMEOUT_S (330), ARL_GPU_CHECK_STEPS (40), ARL_GPU_CHECK_CKPT_EVERY (20),
#   ARL_GPU_CHECK_BATCH (16), ARL_GPU_CHECK_WARMUP_STEPS (5), ARL_GPU_CHECK_KEEP (0; 1 keeps the
#   run folder), ARL_GPU_CHECK_CARGO_TEST, ARL_GPU_CHECK_MODEL_CONFIG (the base preset's JSON from
#   `arl-worker model-config --preset base`, for the reference when there is no arl-worker).

# shellcheck disable=SC2317,SC2015  # checks are called by name; `a && b || c` means "unless both"
set -uo pipefail   # no -e: every check runs, and records its own status

case "${1:-}" in
  -h | --help) sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--help]   (settings are environment variables, see --help)" >&2; exit 2 ;;
esac

caller=$PWD
cd "$(dirname "$0")/.." || exit 2
root=$PWD
if [ -n "${OUT:-}" ]; then
  out=$(cd "$caller" && mkdir -p "$OUT" && cd "$OUT" && pwd) || { echo "gpu-check: cannot use OUT=$OUT" >&2; exit 2; }
else
  out=$root/runs/gpu-check
  mkdir -p "$out" || exit 2
fi
summary=$out/summary.txt env_log=$out/env.txt build_log=$out/build.log tests_log=$out/tests.log
pretrain_log=$out/pretrain.log pretrain_jsonl=$out/pretrain.jsonl bench_log=$out/bench.log
mem_csv=$out/gpu-mem.csv
rm -f "$summary" "$env_log" "$build_log" "$tests_log" "$pretrain_log" "$pretrain_jsonl" "$bench_log" "$mem_csv"

budget=${ARL_GPU_CHECK_BUDGET_S:-470}
do_build=${ARL_GPU_CHECK_BUILD:-1}
build_timeout=${ARL_GPU_CHECK_BUILD_TIMEOUT_S:-330}
steps=${ARL_GPU_CHECK_STEPS:-40}
ckpt_every=${ARL_GPU_CHECK_CKPT_EVERY:-20}
batch=${ARL_GPU_CHECK_BATCH:-16}
warmup_steps=${ARL_GPU_CHECK_WARMUP_STEPS:-5}
text_len=64   # data.max_text_len of the run = --text-len of the reference (the paper's 64)
features=${ARL_FEATURES:-cuda,nccl}
cargo_features=$(tr ',' '\n' <<<"$features" | sed '/^$/d; s|^|arl-worker/|' | paste -sd, -)
for n in "$budget" "$build_timeout" "$steps" "$ckpt_every" "$batch" "$warmup_steps"; do
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "gpu-check: not a whole number: $n" >&2; exit 2; }
done
(( warmup_steps < steps )) || warmup_steps=0

tmp=$(mktemp -d "${TMPDIR:-/tmp}/arl-gpu-check.XXXXXX") || exit 2
run_dir=$tmp/run
target=${CARGO_TARGET_DIR:-$root/target}
arl=$target/release/arl
worker=$target/release/arl-worker
export ARL_WORKER_BIN=$worker
export TORCH_CPP_LOG_LEVEL=${TORCH_CPP_LOG_LEVEL:-ERROR} NCCL_DEBUG=${NCCL_DEBUG:-WARN}
export CARGO_TERM_COLOR=never CARGO_TERM_PROGRESS_WHEN=never PYTHONUNBUFFERED=1

sampler=""
cleanup() {
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null
  # After an interrupt: the time-limited commands still running (each `timeout` passes the
  # signal on to its command's process group).
  local pid
  if [ -f "$tmp/pids" ]; then
    while read -r pid; do
      [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = timeout ] && kill -TERM "$pid" 2>/dev/null
    done <"$tmp/pids"
  fi
  if [ "${ARL_GPU_CHECK_KEEP:-0}" = 1 ]; then
    echo "gpu-check: kept $tmp" >&2
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT
trap 'echo "gpu-check: interrupted" >&2; exit 130' INT TERM

# ---------------------------------------------------------------- time, results, small helpers
t0=$SECONDS
left() { echo $((budget - (SECONDS - t0))); }
# limit WANT MIN RESERVE: this check's time limit (WANT, less if the budget is short, keeping
# RESERVE seconds for the checks after it, and the 10 s that `timed` may add); fails when
# under MIN seconds remain.
limit() {
  local want=$1 min=$2 reserve=${3:-0} room
  room=$(($(left) - reserve - 10))
  ((room < want)) && want=$room
  ((want < min)) && return 1
  echo "$want"
}

names=() states=() details=()
detail=""
# run_check NAME FUNCTION: the function sets $detail and returns 0 (PASS), 2 (SKIP), else FAIL.
run_check() {
  local name=$1 rc state
  detail=""
  printf '\n== [%3ds] %s\n' "$((SECONDS - t0))" "$name" >&2
  "$2"
  rc=$?
  case $rc in 0) state=PASS ;; 2) state=SKIP ;; *) state=FAIL ;; esac
  names+=("$name") states+=("$state") details+=("$detail")
  printf '== %s: %s\n' "$state" "$detail" >&2
}

# timed SECONDS COMMAND...: the command under a time limit (SIGKILL 10 s after SIGTERM), in its
# own process group (timeout's), all of which the limit ends. It is waited for in the
# background so that Ctrl-C reaches the script, whose exit ends it (cleanup).
timed() {
  local t=$1 pid
  shift
  timeout -k 10 "$t" "$@" <&0 &
  pid=$!
  echo "$pid" >>"$tmp/pids"
  wait "$pid"
}
said_timeout() { [ "$1" -eq 124 ] || [ "$1" -eq 137 ]; }
json_field() { sed -n "s/.*\"$1\": *\(\"[^\"]*\"\|[-0-9.eE+]*\).*/\\1/p" | head -1 | tr -d '"'; }
num() { awk -v x="$1" -v f="${2:-%.1f}" 'BEGIN { if (x == "" || x == "n/a") print "n/a"; else printf f, x }'; }
free_port() {
  "${py:-python3}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((29500 + RANDOM % 2000))
}

# GPU memory: nvidia-smi sampled every 0.5 s during a check, appended to gpu-mem.csv.
mem_peak="n/a"
mem_start() {
  mem_peak="n/a"
  command -v nvidia-smi >/dev/null || return 0
  [ -s "$mem_csv" ] || echo "check, timestamp, gpu index, memory.used [MiB], utilization.gpu [%]" >"$mem_csv"
  nvidia-smi --query-gpu=timestamp,index,memory.used,utilization.gpu --format=csv,noheader,nounits \
    -lms 500 >"$tmp/mem.$1" 2>/dev/null &
  sampler=$!
}
mem_stop() {
  [ -n "$sampler" ] || return 0
  kill "$sampler" 2>/dev/null
  wait "$sampler" 2>/dev/null
  sampler=""
  sed "s/^/$1, /" "$tmp/mem.$1" >>"$mem_csv"
  # Peak memory.used per GPU, against that GPU's first sample (idle before the check's process).
  mem_peak=$(awk -F', *' 'BEGIN { best = -1 } { i = $2; m = $3 + 0; if (!(i in first)) first[i] = m; if (m > peak[i]) peak[i] = m }
    END { for (i in peak) if (peak[i] - first[i] > best) { best = peak[i] - first[i]; out = sprintf("%d MiB on GPU %s (idle before: %d MiB)", peak[i], i, first[i]) }
          print (out == "" ? "n/a" : out) }' "$tmp/mem.$1")
}

# ---------------------------------------------------------------- environment
py="" torch_ok=0 gpus=0 torch_lib="" cxx_extra="" offline=()
declare -A T=()

check_env() {
  local problems=() name=""
  {
    echo "# arl GPU check, $(date -u +%FT%TZ) on $(hostname)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(git status --porcelain 2>/dev/null | wc -l) files changed"
    echo "kernel: $(uname -srm); cores: $(nproc); CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-<unset>}"
    free -g | head -2
    df -h "$tmp" "$root" 2>/dev/null
    echo "settings: budget ${budget}s, build=$do_build, features=$features, steps=$steps, checkpoint every $ckpt_every, batch $batch"
  } >>"$env_log" 2>&1

  if command -v nvidia-smi >/dev/null; then
    {
      echo; echo "## nvidia-smi"
      timed 20 nvidia-smi --query-gpu=index,name,memory.total,memory.used,driver_version,compute_cap --format=csv
      timed 20 nvidia-smi topo -m
    } >>"$env_log" 2>&1
    name=$(timed 20 nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  else
    echo "nvidia-smi: not found" >>"$env_log"
    problems+=("no nvidia-smi")
  fi

  # A Python with torch: it gives libtorch (LIBTORCH_USE_PYTORCH=1) and runs the reference.
  local candidate
  for candidate in "${ARL_PYTHON:-}" "$root/.venv/bin/python3" "$(command -v python3 2>/dev/null)"; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    if timed 45 "$candidate" -c 'import torch' >/dev/null 2>&1; then py=$candidate; break; fi
  done
  echo >>"$env_log"; echo "## python and torch" >>"$env_log"
  if [ -z "$py" ]; then
    py=$(command -v python3 2>/dev/null || true)
    echo "no python with torch (tried \$ARL_PYTHON, .venv/bin/python3, python3)" >>"$env_log"
    problems+=("no python with torch")
  else
    local key value
    while IFS='=' read -r key value; do [ -n "$key" ] && T[$key]=$value; done < <(timed 120 "$py" - <<'PY' 2>>"$env_log"
import importlib.metadata as md, importlib.util, os, sys, torch
print("python=" + sys.executable + " " + sys.version.split()[0])
print("torch=" + torch.__version__)
print("torch_cuda=" + str(torch.version.cuda))
print("torch_lib=" + os.path.join(os.path.dirname(torch.__file__), "lib"))
ok = torch.cuda.is_available()
print("cuda_available=" + str(int(ok)))
print("gpus=" + str(torch.cuda.device_count() if ok else 0))
if ok:
    print("gpu0=" + torch.cuda.get_device_name(0))
    print("capability=%d.%d" % torch.cuda.get_device_capability(0))
    print("bf16=" + str(int(torch.cuda.is_bf16_supported())))
    try:
        print("nccl=" + ".".join(map(str, torch.cuda.nccl.version())))
    except Exception as e:
        print("nccl=unavailable (%s)" % e)
for pkg in ("transformers", "torch_geometric"):
    have = importlib.util.find_spec(pkg) is not None
    print(pkg + "=" + (md.version(pkg.replace("_", "-")) if have else "missing"))
PY
    )
    for key in python torch torch_cuda torch_lib cuda_available gpus gpu0 capability bf16 nccl transformers torch_geometric; do
      echo "$key: ${T[$key]:-?}" >>"$env_log"
    done
    torch_lib=${T[torch_lib]:-}
    [ "${T[cuda_available]:-0}" = 1 ] && torch_ok=1
    gpus=${T[gpus]:-0}
    [ "$torch_ok" = 1 ] || problems+=("torch ${T[torch]:-?} sees no CUDA device (torch.version.cuda=${T[torch_cuda]:-?})")
    [ "${T[bf16]:-1}" = 1 ] || problems+=("GPU 0 has no bf16 (compute capability ${T[capability]:-?})")
  fi
  # Without torch's view, count what the launcher counts: CUDA_VISIBLE_DEVICES, else the driver's.
  if [ "$gpus" = 0 ] && [ "$torch_ok" = 0 ] && command -v nvidia-smi >/dev/null; then
    if [ -n "${CUDA_VISIBLE_DEVICES+x}" ]; then
      gpus=$(tr ',' '\n' <<<"$CUDA_VISIBLE_DEVICES" | grep -c '[^[:space:]]')
    else
      gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
    fi
  fi
  [ -n "${LIBTORCH:-}" ] && torch_lib=$LIBTORCH/lib

  # The toolchain, and whether crates.io answers (else cargo must build --offline).
  {
    echo; echo "## toolchain"
    if command -v cargo >/dev/null; then cargo --version; rustc --version; else echo "cargo: not found"; fi
  } >>"$env_log" 2>&1
  if command -v cargo >/dev/null && ! timeout 5 bash -c ': </dev/tcp/index.crates.io/443' 2>/dev/null; then
    offline=(--offline)
    echo "crates.io: unreachable, so cargo builds --offline (every crate of Cargo.lock must be in ~/.cargo/registry)" >>"$env_log"
  fi

  # The c10d shim's NCCL build includes <torch lib>/../../nvidia/{nccl,cu13}/include
  # (worker/c10d/build.rs); where a header is missing there, a system copy goes into CXXFLAGS.
  if [ -n "$torch_lib" ]; then
    local nvidia=$torch_lib/../../nvidia dir found
    echo; echo "## headers for the NCCL shim (nvidia/ beside torch: $nvidia)" >>"$env_log"
    for want in nccl.h cuda_runtime_api.h crt/host_config.h; do
      found=""
      for dir in "$nvidia/nccl/include" "$nvidia/cu13/include" ${CUDA_HOME:+"$CUDA_HOME/include"} /usr/local/cuda/include /usr/include; do
        if [ -f "$dir/$want" ]; then found=$dir; break; fi
      done
      echo "$want: ${found:-NOT FOUND}" >>"$env_log"
      case "$found" in
        "") [[ ",$features," == *",nccl,"* ]] && problems+=("no $want for the NCCL shim") ;;
        "$nvidia"/* | /usr/include) ;;
        *) [[ " $cxx_extra " == *" -isystem $found "* ]] || cxx_extra+=" -isystem $found" ;;
      esac
    done
    [ -n "$cxx_extra" ] && echo "added to CXXFLAGS:$cxx_extra" >>"$env_log"
  fi

  [ -f "$root/data/hpo/hp.obo" ] || echo "data/hpo/hp.obo: missing (the pretraining check needs it)" >>"$env_log"
  local version
  version=$(sed -n 's/^TORCH_VERSION=//p' scripts/setup)
  if [ -n "${T[torch]:-}" ] && [ "${T[torch]%%+*}" != "$version" ]; then
    echo "torch ${T[torch]} is not the $version that tch 0.26 is made for (scripts/setup)" >>"$env_log"
  fi

  local driver=""
  command -v nvidia-smi >/dev/null && driver=$(timed 20 nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
  detail="${gpus} GPU(s)${name:+ ($name)}${driver:+, driver $driver}; torch ${T[torch]:-none}, CUDA ${T[torch_cuda]:-?}, NCCL ${T[nccl]:-?}"
  if ((${#problems[@]})); then
    local joined
    joined=$(printf '%s; ' "${problems[@]}")
    detail="${joined%; } | $detail"
    return 1
  fi
  ((gpus > 0)) || { detail="no GPU visible | $detail"; return 1; }
  return 0
}

# ---------------------------------------------------------------- build
bins=0 cargo_ready=0
cargo_env() {
  # The environment of every cargo call: libtorch from the Python's torch (as scripts/setup
  # does, without its venv), that Python first on PATH under both names torch-sys may call,
  # system headers where the wheels have none.
  ((cargo_ready)) && return 0
  cargo_ready=1
  if [ -n "${LIBTORCH:-}" ]; then
    unset LIBTORCH_USE_PYTORCH
  else
    export LIBTORCH_USE_PYTORCH=1
    mkdir -p "$tmp/pybin"
    printf '#!/bin/sh\nexec "%s" "$@"\n' "$py" >"$tmp/pybin/python"
    cp "$tmp/pybin/python" "$tmp/pybin/python3"
    chmod +x "$tmp/pybin/python" "$tmp/pybin/python3"
    export PATH="$tmp/pybin:$PATH"
  fi
  # tch 0.26 is made for scripts/setup's torch; another one compiles only if its C++ API agrees.
  local expected found
  expected=$(sed -n 's/^TORCH_VERSION=//p' scripts/setup)
  if [ -n "${LIBTORCH:-}" ]; then
    found=$(cat "$LIBTORCH/build-version" 2>/dev/null)
  else
    found=${T[torch]:-}
  fi
  if [ -n "$found" ] && [ "${found%%+*}" != "$expected" ]; then
    export LIBTORCH_BYPASS_VERSION_CHECK=1
    torch_mismatch="torch $found, not the $expected that tch 0.26 is made for"
  fi
  [ -n "$cxx_extra" ] && export CXXFLAGS="${CXXFLAGS:-}$cxx_extra"
  return 0
}
torch_mismatch=""

binaries_ready() {
  [ -x "$arl" ] && [ -x "$worker" ] || { detail="no $arl and $worker"; return 1; }
  if ldd "$worker" 2>/dev/null | grep -q 'not found' && [ -n "$torch_lib" ]; then
    export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "the binaries do not find their libtorch: LD_LIBRARY_PATH=$torch_lib" >>"$build_log"
  fi
  if ldd "$worker" 2>/dev/null | grep -q 'not found'; then
    detail="arl-worker misses libraries: $(ldd "$worker" | grep 'not found' | awk '{print $1}' | paste -sd' ' -)"
    return 1
  fi
  ldd "$worker" 2>/dev/null | grep -q libtorch_cuda ||
    { detail="arl-worker is not linked to libtorch_cuda: a build without the cuda feature, or a CPU torch"; return 1; }
  bins=1
}

check_build() {
  echo "== build ($(date -u +%T))" >>"$build_log"
  if [ "$do_build" = 0 ]; then
    binaries_ready || return 1
    detail="ARL_GPU_CHECK_BUILD=0: using $arl and $worker ($(ldd "$worker" | awk '/libtorch_cuda/ {print $3}'))"
    return 0
  fi
  command -v cargo >/dev/null ||
    { detail="cargo not found: install Rust (rustup), or build elsewhere against this torch and rerun with ARL_GPU_CHECK_BUILD=0"; return 1; }
  [ -n "${LIBTORCH:-}" ] || [ -n "$torch_lib" ] ||
    { detail="no libtorch: no python with torch (set ARL_PYTHON) and no LIBTORCH"; return 1; }
  cargo_env
  local t rc started=$SECONDS command
  # Keep room for at least the smoke checks and a short pretraining after the build.
  t=$(limit "$build_timeout" 60 150) || { detail="under 60 s left of the ${budget}s budget"; return 1; }
  command=(cargo build --release "${offline[@]}" -p arl-launcher -p arl-worker --features "$cargo_features")
  {
    echo "LIBTORCH=${LIBTORCH:-} LIBTORCH_USE_PYTORCH=${LIBTORCH_USE_PYTORCH:-} python=$py"
    echo "LIBTORCH_BYPASS_VERSION_CHECK=${LIBTORCH_BYPASS_VERSION_CHECK:-} CXXFLAGS=${CXXFLAGS:-}"
    echo "limit ${t}s: ${command[*]}"
  } >>"$build_log"
  timed "$t" "${command[@]}" >>"$build_log" 2>&1
  rc=$?
  local took=$((SECONDS - started))
  if said_timeout "$rc"; then
    detail="timed out after ${t}s (a cold build takes several minutes: rerun with ARL_GPU_CHECK_BUDGET_S=900 once; later builds are incremental)"
    return 1
  fi
  if ((rc != 0)); then
    detail="cargo failed ($rc) after ${took}s: $(grep -m1 -E '^error|error:' "$build_log" | cut -c1-160)"
    [ -n "$torch_mismatch" ] && detail+=" [$torch_mismatch: LIBTORCH_BYPASS_VERSION_CHECK=1 was tried]"
    return 1
  fi
  binaries_ready || return 1
  detail="${took}s, features $cargo_features${offline[*]:+, offline}${torch_mismatch:+; $torch_mismatch (version check bypassed)}"
}

need_gpu() { ((gpus > 0)) || { detail="no GPU visible"; return 1; }; }
need_bins() { ((bins)) || { detail="no CUDA build of arl and arl-worker (see build)"; return 1; }; }

# ---------------------------------------------------------------- unit tests
check_unit_tests() {
  {
    echo "== CUDA variants of the unit tests ($(date -u +%T))"
    echo "Every test runs on the CPU: none selects Device::Cuda, reads a device variable or is #[ignore]d."
    echo "What a grep of the sources finds (tests/, worker/, launcher/, checkpoints/):"
    grep -rnE 'Device::Cuda|cuda_if_available|Cuda::|is_cuda|ARL_TEST_CUDA|CUDA_VISIBLE|#\[ignore' \
      --include='*.rs' tests worker launcher checkpoints
    echo
    echo "Note: tests/tests/cli.rs a_failing_rank_is_named_and_its_c10d_error_shown expects NCCL to fail"
    echo "(a build without nccl or a machine without GPU); it does not hold for this build on a GPU."
  } >>"$tests_log" 2>&1
  if [ -z "${ARL_GPU_CHECK_CARGO_TEST:-}" ]; then
    detail="none exist (no test picks a CUDA device; grep in tests.log); ARL_GPU_CHECK_CARGO_TEST=ARGS runs cargo test"
    return 2
  fi
  command -v cargo >/dev/null || { detail="cargo not found"; return 1; }
  cargo_env
  local args t rc
  read -ra args <<<"$ARL_GPU_CHECK_CARGO_TEST"
  t=$(limit 240 60 200) || { detail="no time left in the budget"; return 1; }
  echo "limit ${t}s: cargo test --release --features $cargo_features ${args[*]}" >>"$tests_log"
  timed "$t" cargo test --release "${offline[@]}" --features "$cargo_features" "${args[@]}" >>"$tests_log" 2>&1
  rc=$?
  said_timeout "$rc" && { detail="cargo test timed out after ${t}s"; return 1; }
  detail="cargo test ${args[*]}: $(grep -E '^test result' "$tests_log" | tail -1)"
  ((rc == 0))
}

# ---------------------------------------------------------------- CUDA through tch
check_cuda_smoke() {
  need_gpu && need_bins || return 2
  local probe big device tflops rc t
  t=$(limit 60 15 150) || { detail="no time left in the ${budget}s budget"; return 1; }
  echo "== tch on the GPU: arl-worker bench-matmul, limit ${t}s each ($(date -u +%T))" >>"$tests_log"
  probe=$(timed "$t" "$worker" bench-matmul --kind bf16 --size 1024 --iters 3 2>>"$tests_log")
  rc=$?
  echo "$probe" >>"$tests_log"
  device=$(json_field device <<<"$probe")
  ((rc == 0)) || { detail="bench-matmul failed ($rc): $(tail -2 "$tests_log" | tr '\n' ' ' | cut -c1-160)"; return 1; }
  [[ "$device" == Cuda* ]] ||
    { detail="tch ran on the CPU ($device): CUDA is not registered in arl-worker (worker/build.rs keeps libtorch_cuda linked)"; return 1; }
  big=$(timed "$t" "$worker" bench-matmul --kind bf16 --size 8192 --iters 20 2>>"$tests_log")
  rc=$?
  echo "$big" >>"$tests_log"
  ((rc == 0)) || { detail="8192^3 bf16 matmul failed ($rc)"; return 1; }
  tflops=$(json_field tflops <<<"$big")
  detail="$device; bf16 8192^3 matmul $(num "$tflops") TFLOP/s"
}

check_preflight() {
  need_gpu && need_bins || return 2
  local resolved=$tmp/preflight.toml port report rc t
  t=$(limit 60 15 140) || { detail="no time left in the ${budget}s budget"; return 1; }
  echo "== NCCL preflight, one rank, limit ${t}s ($(date -u +%T))" >>"$tests_log"
  "$arl" check --set launch.backend=nccl --set launch.nproc_per_node=1 --set launch.slurm=false \
    --set dist.init_timeout_s=60 >"$resolved" 2>>"$tests_log" ||
    { detail="arl check refused the preflight config (tests.log)"; return 1; }
  port=$(free_port)
  report=$(timed "$t" env RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 \
    MASTER_PORT="$port" "$worker" preflight --config "$resolved" 2>>"$tests_log")
  rc=$?
  echo "$report" >>"$tests_log"
  ((rc == 0)) && grep -q '"event":"preflight"' <<<"$report" ||
    { detail="preflight failed ($rc): $(grep -v '^\s*$' "$tests_log" | tail -1 | cut -c1-160)"; return 1; }
  detail="$(grep '"preflight"' <<<"$report" | head -1)"
}

# ---------------------------------------------------------------- pretraining, checkpoint stall
declare -A P=()
arl_sps=""
pretrain_sets() {
  sets=(
    --set launch.backend=nccl --set launch.nproc_per_node=1 --set launch.slurm=false
    --set launch.max_restarts=0 --set dist.init_timeout_s=120 --set dist.timeout_s=120
    --set model.preset=base --set prepare.entity_dim=256
    --set train.precision=bf16 --set "train.steps=$steps" --set "train.global_batch=$batch"
    --set train.grad_accum=1 --set "train.run_dir=$run_dir" --set train.tensorboard=false
    --set train.image_every=0 --set "data.max_text_len=$text_len" --set data.threads=8
    --set optim.lr=1e-5 --set optim.max_grad_norm=1.0
    --set "checkpoint.every_steps=$ckpt_every" --set checkpoint.retention.keep_last=1
    --set 'pipeline.jobs=["pretrain"]'
  )
}

check_pretrain() {
  need_gpu && need_bins || return 2
  [ -f "$root/data/hpo/hp.obo" ] ||
    { detail="data/hpo/hp.obo missing (the synthetic benchmark links HPO): run scripts/setup where pip works, or copy data/hpo/hp.obo here"; return 1; }
  local sets t rc free_gb
  pretrain_sets
  {
    echo "== arl run: base preset, bf16, one NCCL rank, $steps steps of $batch, checkpoints every $ckpt_every ($(date -u +%T))"
    echo "${sets[*]}"
  } >>"$pretrain_log"
  "$arl" check "${sets[@]}" >"$tmp/pretrain.toml" 2>>"$pretrain_log" ||
    { detail="arl check refused the config: $(tail -1 "$pretrain_log" | cut -c1-160)"; return 1; }
  free_gb=$(df -Pk "$tmp" | awk 'NR == 2 { printf "%d", $4 / 1048576 }')
  ((free_gb >= 10)) || echo "warning: ${free_gb} GB free under $tmp; two base checkpoints take 9.1 GB" >>"$pretrain_log"
  # Keep the minimum of the reference (50 s) and of the all-reduce (30 s, with two GPUs).
  t=$(limit 240 90 $((50 + (gpus >= 2 ? 30 : 0)))) || { detail="under 90 s left of the ${budget}s budget"; return 1; }
  echo "limit ${t}s" >>"$pretrain_log"
  mem_start pretrain
  timed "$t" "$arl" run --nproc-per-node 1 "${sets[@]}" >>"$pretrain_log" 2>&1
  rc=$?
  mem_stop pretrain
  P[mem]=$mem_peak
  if [ -f "$run_dir/logs/rank0.log" ]; then
    { echo; echo "== last 150 lines of rank 0's log ($run_dir/logs/rank0.log)"; tail -150 "$run_dir/logs/rank0.log"; } >>"$pretrain_log"
  fi
  [ -f "$run_dir/rank0.jsonl" ] && cp "$run_dir/rank0.jsonl" "$pretrain_jsonl"

  if [ -s "$pretrain_jsonl" ]; then
    local key value
    while IFS='=' read -r key value; do [ -n "$key" ] && P[$key]=$value; done < <("${py:-python3}" - "$pretrain_jsonl" "$warmup_steps" "$steps" <<'PY' 2>>"$pretrain_log"
import json, math, statistics, sys
path, warm, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
steps, staged, committed, skipped = [], [], {}, 0
for line in open(path):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    kind = e.get("event")
    if kind == "step":
        steps.append(e)
    elif kind == "checkpoint_staged":
        staged.append(e)
    elif kind == "checkpoint_committed":
        committed[e["step"]] = e
    elif kind == "skipped":
        skipped += 1
def med(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return statistics.median(xs) if xs else None
timed = [s for s in steps if s["step"] > warm] or steps
print("steps=%d" % len(steps))
print("skipped=%d" % skipped)
if steps:
    print("last_loss=%.4f" % steps[-1]["loss"])
    print("finite=%d" % all(math.isfinite(s["loss"]) for s in steps))
    print("timed=%d-%d" % (timed[0]["step"], timed[-1]["step"]))
    print("sps=%.3f" % med([s["samples_per_s"] for s in timed]))
    print("data_wait=%.3f" % med([s.get("data_wait", 0) for s in timed]))
    print("comm_exposed=%.3f" % med([s.get("comm_exposed", 0) for s in timed]))
    # TFLOP/s and MFU: logged by newer workers as `tflops` and `mfu` in each step event.
    for key in ("tflops", "mfu"):
        value = med([s.get(key) for s in timed])
        print("%s=%s" % (key, "n/a" if value is None else "%.4g" % value))
parts = []
for s in staged:
    c = committed.get(s["step"])
    part = "step %d: stall %.0f ms (waited %.0f ms)" % (s["step"], s["stall_ms"], s["waited_ms"])
    if c:
        part += ", %.2f GB committed in %.1f s" % (c["bytes"] / 1e9, c["write_s"])
    parts.append(part)
if staged:
    mid = [s for s in staged if s["step"] < last] or staged
    print("stall_ms=%.0f" % mid[0]["stall_ms"])
    print("stall_step=%d" % mid[0]["step"])
    print("stall_max_ms=%.0f" % max(s["stall_ms"] for s in staged))
print("checkpoints=" + ("; ".join(parts) if parts else "none"))
print("committed=%d" % len(committed))
PY
    )
  fi
  arl_sps=${P[sps]:-}
  local mfu="n/a (the step events carry no mfu yet)"
  if [ "${P[mfu]:-n/a}" != n/a ]; then
    mfu=$(awk -v m="${P[mfu]}" 'BEGIN { if (m <= 1) printf "%.1f %%", 100 * m; else printf "%s", m }')
  fi
  local numbers
  numbers="${P[steps]:-0}/$steps steps, last loss ${P[last_loss]:-n/a}; $(num "${P[sps]:-}" %.2f) samples/s (median of steps ${P[timed]:-n/a}, data wait $(num "${P[data_wait]:-}" %.3f)); TFLOP/s ${P[tflops]:-n/a}; MFU $mfu; peak GPU memory ${P[mem]}"
  if said_timeout "$rc"; then
    detail="timed out after ${t}s | $numbers"
    return 1
  fi
  if ((rc != 0)); then
    detail="arl run exited $rc: $(grep -m1 -iE 'panicked|error' "$pretrain_log" | cut -c1-200) | $numbers"
    return 1
  fi
  [ "${P[steps]:-0}" = "$steps" ] && [ "${P[finite]:-0}" = 1 ] ||
    { detail="arl run exited 0 but logged ${P[steps]:-0} of $steps steps (finite losses: ${P[finite]:-?}) | $numbers"; return 1; }
  detail=$numbers
}

check_checkpoint_stall() {
  [ -s "$pretrain_jsonl" ] || { detail="no pretraining log"; return 2; }
  [ -n "${P[stall_ms]:-}" ] ||
    { detail="no checkpoint_staged event in pretrain.jsonl (${P[checkpoints]:-})"; return 1; }
  detail="stall ${P[stall_ms]} ms at step ${P[stall_step]} (max ${P[stall_max_ms]} ms); ${P[checkpoints]}"
  ((${P[committed]:-0} >= 1)) || { detail="nothing committed | $detail"; return 1; }
}

# ---------------------------------------------------------------- the PyTorch reference
check_reference() {
  need_gpu || return 2
  ((torch_ok)) || { detail="no python with CUDA torch (set ARL_PYTHON)"; return 2; }
  local missing=()
  [ "${T[transformers]:-missing}" = missing ] && missing+=(transformers)
  [ "${T[torch_geometric]:-missing}" = missing ] && missing+=(torch_geometric)
  ((${#missing[@]} == 0)) || { detail="$py lacks ${missing[*]} (scripts/fixtures/arl_reference.py imports them)"; return 2; }
  if [ -x "$worker" ] && "$worker" model-config --preset base >"$tmp/base.json" 2>>"$bench_log"; then
    :
  elif [ -s "${ARL_GPU_CHECK_MODEL_CONFIG:-}" ]; then
    cp "$ARL_GPU_CHECK_MODEL_CONFIG" "$tmp/base.json"
  else
    detail="no model config: arl-worker model-config --preset base did not run (or set ARL_GPU_CHECK_MODEL_CONFIG to its output)"
    return 2
  fi
  local entities=64
  if [ -f "$run_dir/knowledge/knowledge.json" ]; then
    entities=$("$py" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["entities"]))' \
      "$run_dir/knowledge/knowledge.json" 2>/dev/null || echo 64)
  fi
  # bench_model.py as `arl bench pretrain` runs it (--step full --recompute), moved to the GPU:
  # tensors are made on CUDA, the losses autocast to bf16 as train.precision = "bf16" does,
  # and the clock reads wait for the GPU.
  cat >"$tmp/reference.py" <<'PY'
import json, os, runpy, sys, time
import torch
fixtures, config, batch, text_len, entities, iters = sys.argv[1:7]
sys.path.insert(0, fixtures)
torch.set_default_device("cuda")
import arl_reference
losses = arl_reference.pretrain_losses
def bf16_losses(*args, **kwargs):
    with torch.autocast("cuda", dtype=torch.bfloat16):
        return losses(*args, **kwargs)
arl_reference.pretrain_losses = bf16_losses
clock = time.perf_counter
def synced():
    torch.cuda.synchronize()
    return clock()
time.perf_counter = synced
sys.argv = [os.path.join(fixtures, "bench_model.py"), config, "--batch", batch, "--text-len", text_len,
            "--entities", entities, "--iters", iters, "--step", "full", "--recompute"]
runpy.run_path(sys.argv[0], run_name="__main__")
print("reference: %s, torch %s, peak allocated %.0f MiB" % (torch.cuda.get_device_name(),
      torch.__version__, torch.cuda.max_memory_allocated() / 2**20), file=sys.stderr)
PY
  local t rc line median
  t=$(limit 150 50 $((gpus >= 2 ? 30 : 0))) || { detail="under 50 s left of the ${budget}s budget"; return 1; }
  echo "== PyTorch reference, base, batch $batch, text $text_len, $entities entities, bf16, limit ${t}s ($(date -u +%T))" >>"$bench_log"
  mem_start reference
  PYTHONWARNINGS=ignore timed "$t" "$py" "$tmp/reference.py" "$root/scripts/fixtures" "$tmp/base.json" \
    "$batch" "$text_len" "$entities" 10 >"$tmp/reference.out" 2>>"$bench_log"
  rc=$?
  mem_stop reference
  cat "$tmp/reference.out" >>"$bench_log"
  echo "peak GPU memory (nvidia-smi): $mem_peak" >>"$bench_log"
  said_timeout "$rc" && { detail="timed out after ${t}s"; return 1; }
  ((rc == 0)) || { detail="the reference failed ($rc): $(grep -v '^\s*$' "$bench_log" | tail -1 | cut -c1-160)"; return 1; }
  line=$(tail -1 "$tmp/reference.out")
  median=$(json_field median_s <<<"$line")
  [ -n "$median" ] || { detail="no timing printed: $line"; return 1; }
  local torch_sps ratio="n/a"
  torch_sps=$(awk -v m="$median" -v b="$batch" 'BEGIN { printf "%.3f", b / m }')
  [ -n "$arl_sps" ] && ratio=$(awk -v a="$arl_sps" -v t="$torch_sps" 'BEGIN { printf "%.2f", a / t }')
  P[torch_sps]=$torch_sps P[ratio]=$ratio
  detail="PyTorch $(num "$torch_sps" %.2f) samples/s (median of 10 steps, peak $mem_peak); ARL $(num "$arl_sps" %.2f); ratio ARL/PyTorch $ratio (>1: ARL faster; ARL's figure includes data loading and its 1-rank reductions)"
}

# ---------------------------------------------------------------- two-rank NCCL all-reduce
check_allreduce() {
  need_gpu && need_bins || return 2
  ((gpus >= 2)) || { detail="$gpus GPU visible; two are needed"; return 2; }
  local t port pid rc rc1 args
  t=$(limit 90 30 0) || { detail="under 30 s left of the ${budget}s budget"; return 1; }
  port=$(free_port)
  args=(bench-allreduce --backend nccl --skip-layout-check --sizes-mb "16,128,512" --warmup 5 --iters 20
    --init-timeout-s 60 --timeout-s 60)
  echo "== NCCL all-reduce, 2 ranks on GPUs 0 and 1 (local ranks), limit ${t}s ($(date -u +%T))" >>"$bench_log"
  mem_start allreduce
  timed "$t" env RANK=1 WORLD_SIZE=2 LOCAL_RANK=1 LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 \
    MASTER_PORT="$port" "$worker" "${args[@]}" >>"$bench_log" 2>&1 &
  pid=$!
  timed "$t" env RANK=0 WORLD_SIZE=2 LOCAL_RANK=0 LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 \
    MASTER_PORT="$port" "$worker" "${args[@]}" >"$tmp/allreduce.out" 2>>"$bench_log"
  rc=$?
  wait "$pid"
  rc1=$?
  mem_stop allreduce
  cat "$tmp/allreduce.out" >>"$bench_log"
  ((rc == 0 && rc1 == 0)) || { detail="rank 0 exited $rc, rank 1 $rc1 (bench.log)"; return 1; }
  # Bus bandwidth of a ring all-reduce: size × 2(n-1)/n / time, n = 2.
  detail=$(awk -F'[:,}]' '/size_mb/ { printf "%s%s MiB %.1f GB/s", sep, $2, $2 * 1048576 / $4 / 1e9; sep = ", " }' "$tmp/allreduce.out")
  [ -n "$detail" ] || { detail="no timings printed"; return 1; }
  detail="bus bandwidth (2 ranks): $detail"
}

# ---------------------------------------------------------------- run them all
run_check "env: GPU, torch, toolchain" check_env
run_check "build --features $features" check_build
run_check "unit tests, CUDA variants" check_unit_tests
run_check "cuda smoke: tch bf16 matmul" check_cuda_smoke
run_check "nccl preflight, 1 rank" check_preflight
run_check "pretrain base bf16, 1 NCCL rank" check_pretrain
run_check "checkpoint stall from GPU" check_checkpoint_stall
run_check "PyTorch reference, same GPU" check_reference
run_check "nccl all-reduce, 2 ranks" check_allreduce

failed=0
for state in "${states[@]}"; do [ "$state" = FAIL ] && failed=1; done
{
  echo "arl GPU check: $(date -u +%FT%TZ), $(hostname), $((SECONDS - t0)) s; output in $out"
  echo
  printf '%-34s %-5s %s\n' check result detail
  for i in "${!names[@]}"; do
    printf '%-34s %-5s %s\n' "${names[$i]}" "${states[$i]}" "${details[$i]}"
  done
  echo
  echo "values:"
  echo "  arl_samples_per_s=${P[sps]:-n/a} torch_samples_per_s=${P[torch_sps]:-n/a} ratio=${P[ratio]:-n/a}"
  echo "  tflops=${P[tflops]:-n/a} mfu=${P[mfu]:-n/a} peak_gpu_memory=\"${P[mem]:-n/a}\""
  echo "  checkpoint_stall_ms=${P[stall_ms]:-n/a} (step ${P[stall_step]:-n/a}; ${P[checkpoints]:-n/a})"
} | tee "$summary"
exit "$failed"
