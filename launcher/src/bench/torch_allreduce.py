"""The Python peer of `arl bench allreduce`: the same protocol as `arl-worker bench-allreduce`
(worker/src/bench.rs) on torch.distributed's Gloo backend. One rank, started with the standard
RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT variables; rank 0 prints one JSON line per size.
"""

import argparse
import json
import statistics
import time

import torch
import torch.distributed as dist


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes-mb", default="1,16,128")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=20)
    args = parser.parse_args()

    dist.init_process_group("gloo", init_method="env://")
    rank, world = dist.get_rank(), dist.get_world_size()
    for size_mb in (int(s) for s in args.sizes_mb.split(",")):
        tensor = torch.ones(size_mb * 1024 * 1024 // 4, dtype=torch.float32)
        times = []
        for i in range(args.warmup + args.iters):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(tensor)
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
        expected = float(world) ** (args.warmup + args.iters)
        assert tensor.min().item() == expected == tensor.max().item(), "wrong all-reduce result"
        times.sort()
        if rank == 0:
            print(json.dumps({"size_mb": size_mb, "median_s": times[len(times) // 2]}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
