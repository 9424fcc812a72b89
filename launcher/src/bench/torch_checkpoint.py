"""The peer of `arl bench checkpoint`: PyTorch's own asynchronous checkpoint
(torch.distributed.checkpoint.async_save, single process, files flushed to disk) of a state with
the same tensor names and shapes as ours.

Usage: torch_checkpoint.py LAYOUT_JSON FOLDER SAVES
Prints one JSON line: {"stall_ms": [...], "durable_s": [...], "bytes": N}.
"""

import json
import shutil
import sys
import time
import warnings

import torch
import torch.distributed.checkpoint as dcp

warnings.filterwarnings("ignore", message=".*single process.*")


def main():
    layout_path, folder, saves = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(layout_path) as f:
        layout = json.load(f)
    state = {name: torch.zeros(shape) for name, shape in layout}
    nbytes = sum(t.numel() * t.element_size() for t in state.values())
    stalls, durables = [], []
    previous = None
    for step in range(1, saves + 1):
        with torch.no_grad():
            for tensor in state.values():
                tensor.add_(1e-3)
        target = f"{folder}/step-{step}"
        started = time.perf_counter()
        future = dcp.async_save(state, checkpoint_id=target)
        stall = time.perf_counter() - started
        future.result()
        durables.append(time.perf_counter() - started)
        stalls.append(stall * 1e3)
        print(f"torch checkpoint: save {step}/{saves}: stall {stall * 1e3:.0f} ms, "
              f"durable after {durables[-1]:.1f} s", file=sys.stderr)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
        previous = target
    print(json.dumps({"stall_ms": stalls, "durable_s": durables, "bytes": nbytes}))


if __name__ == "__main__":
    main()
