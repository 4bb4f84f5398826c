"""Data parallelism on torch.distributed, for the stages that read a lot of text: profiling,
calibration and healing.

Launch any babel-edge command with torchrun (or `--nproc N`, which relaunches under it):

    torchrun --nproc-per-node 2 -m babel_edge profile --langs en,de,fr --out p.safetensors
    torchrun --nnodes 2 --node-rank 0 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
             --nproc-per-node 8 -m babel_edge profile ...

Each rank processes a deterministic shard of the sequences (sequence i goes to rank
i mod world); per-layer statistics are summed with all_reduce(SUM) — counts as int64,
sums and second moments in float64 — so rank 0 writes the same file a single process
would (counts exactly, sums up to the order of float64 additions). The backend is gloo
on CPU and NCCL on GPU. Without torchrun every function here is the single-process
identity, so the library never needs to ask.
"""
from __future__ import annotations

import os
from typing import Iterable, Iterator, Sequence, TypeVar

T = TypeVar("T")


def launched() -> bool:
    """Started by torchrun (its environment is set)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def init(device: str = "cpu") -> None:
    """Join the process group torchrun describes (no-op without torchrun, or when joined)."""
    if not launched():
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device == "cuda" else "gloo"
        if device == "cuda":
            import torch
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)


def active() -> bool:
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    if not active():
        return 0
    import torch.distributed as dist
    return dist.get_rank()


def world() -> int:
    if not active():
        return 1
    import torch.distributed as dist
    return dist.get_world_size()


def is_main() -> bool:
    return rank() == 0


def shard(items: Iterable[T]) -> Iterator[T]:
    """This rank's share of `items`: item i goes to rank i mod world (deterministic)."""
    r, w = rank(), world()
    for i, x in enumerate(items):
        if i % w == r:
            yield x


def all_reduce_(tensors: Sequence, op: str = "sum") -> None:
    """Reduce every tensor in place across ranks (sum or max); no-op in one process. Tensors
    are reduced on the device the process group uses and copied back."""
    if not active():
        return
    import torch
    import torch.distributed as dist

    reduce_op = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op]
    dev = torch.device("cuda", torch.cuda.current_device()) \
        if dist.get_backend() == "nccl" else torch.device("cpu")
    for t in tensors:
        if t.device == dev:
            dist.all_reduce(t, op=reduce_op)
        else:
            x = t.to(dev)
            dist.all_reduce(x, op=reduce_op)
            t.copy_(x.to(t.device))


def all_reduce_int(n: int) -> int:
    """An integer summed across ranks."""
    if not active():
        return n
    import torch

    t = torch.tensor([n], dtype=torch.long)
    all_reduce_([t])
    return int(t.item())


def barrier() -> None:
    if active():
        import torch.distributed as dist
        dist.barrier()


def finish() -> None:
    if active():
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()


def relaunch(nproc: int, argv: Sequence[str]) -> int:
    """Run `python -m babel_edge ARGV` under torch.distributed.run with `nproc` processes on
    this machine (what `--nproc N` does); returns its exit code."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", "-m", "babel_edge", *argv]
    return subprocess.call(cmd)
