"""Distributed data parallel under ``torchrun``: gloo on CPU, nccl on GPU.

``torchrun --nproc_per_node 2 -m detseg train ...`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``;
every process trains on its shard of the data, and only rank 0 evaluates, logs and saves.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; other names unchanged."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def init_distributed(device: str) -> torch.device:
    """Join the process group when launched by torchrun; return this process's device."""
    n = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device)
    if n > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device == "cuda" and n > 1:
            device = f"cuda:{local}"
        torch.cuda.set_device(torch.device(device))
    return torch.device(device)


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def broadcast_flag(flag: bool) -> bool:
    """Rank 0's boolean, on every rank (used to stop all ranks together)."""
    if world_size() == 1:
        return flag
    t = torch.tensor([int(flag)])
    dist.broadcast(t, src=0)
    return bool(t.item())


def all_reduce_mean(value: float) -> float:
    if world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / world_size()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
