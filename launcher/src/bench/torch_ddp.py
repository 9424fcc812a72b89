"""The Python peer of `arl bench ddp`: the protocol of `arl-worker bench-ddp`
(worker/src/ddp_bench.rs) with PyTorch's DistributedDataParallel on the Gloo backend. One rank,
started with the standard RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT variables; rank 0 prints
one JSON line with the median seconds of the three variants.
"""

import argparse
import json
import time

import torch
import torch.distributed as dist
from torch import nn


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--bucket-mb", type=float, default=25.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", init_method="env://")
    torch.manual_seed(0)
    layers = []
    for _ in range(args.depth):
        layers += [nn.Linear(args.width, args.width), nn.GELU()]
    model = nn.parallel.DistributedDataParallel(
        nn.Sequential(*layers), bucket_cap_mb=args.bucket_mb, gradient_as_bucket_view=True
    )
    batch = torch.randn(args.batch, args.width)

    def backward():
        model.zero_grad(set_to_none=False)
        model(batch).square().mean().backward()

    # The reduction alone: DDP's buckets (1 MiB first, then bucket_mb, in reverse parameter
    # order), launched together and waited for, as the reducer does without a backward.
    sizes, cap, current = [], 1024 * 1024, 0
    for param in reversed(list(model.parameters())):
        nbytes = param.numel() * 4
        if current and current + nbytes > cap:
            sizes.append(current // 4)
            current, cap = 0, int(args.bucket_mb * 1024 * 1024)
        current += nbytes
    sizes.append(current // 4)
    buckets = [torch.zeros(n) for n in sizes]

    times = {"step_s": [], "local_s": [], "comm_s": []}
    for round_ in range(args.warmup + args.iters):
        dist.barrier()
        start = time.perf_counter()
        backward()
        step_s = time.perf_counter() - start

        dist.barrier()
        start = time.perf_counter()
        with model.no_sync():
            backward()
        local_s = time.perf_counter() - start

        dist.barrier()
        start = time.perf_counter()
        for work in [dist.all_reduce(b, async_op=True) for b in buckets]:
            work.wait()
        for b in buckets:
            b.div_(dist.get_world_size())
        comm_s = time.perf_counter() - start
        if round_ >= args.warmup:
            times["step_s"].append(step_s)
            times["local_s"].append(local_s)
            times["comm_s"].append(comm_s)
    if dist.get_rank() == 0:
        print(json.dumps({name: median(values) for name, values in times.items()}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
