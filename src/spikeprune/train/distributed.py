"""Process-group helpers for ``torchrun`` (gloo on CPU, NCCL on CUDA); no-ops in a single process."""

from __future__ import annotations

import atexit
import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_leave_process_group)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _leave_process_group() -> None:
    """Let the backend's worker threads drop their last collective before the interpreter shuts down.

    A gloo worker thread releases the tensors of a finished collective under the GIL. If the
    process is already finalizing by then (the run ended a few milliseconds after its last
    collective), the thread cannot take the GIL and the process aborts with "terminate called
    without an active exception" (pytorch/pytorch#190489). The short sleep releases the GIL so that
    those threads finish first. No barrier: a barrier's own work object keeps the earlier ones alive
    until a worker thread drops it, and a rank leaving on an error would wait in it for the others.
    """
    if dist.is_initialized():
        time.sleep(0.1)
        dist.destroy_process_group()


def all_gather_cat(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate a tensor from every rank along dim 0 (ranks may hold different lengths)."""
    if not info.enabled:
        return tensor
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(info.world_size)]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.shape[0]] = tensor
    gathered = [torch.zeros_like(padded) for _ in range(info.world_size)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[: int(s.item())] for g, s in zip(gathered, sizes, strict=True)])


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(values)
    return values


def sync_buffers(model: torch.nn.Module, info: DistInfo) -> None:
    """Average floating buffers (BatchNorm running statistics) over ranks; copy the rest from rank 0.

    DDP keeps parameters in step, but each rank updates running statistics on its own shard, so
    replicas drift apart after the last forward of an epoch unless this is called.
    """
    if not info.enabled:
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer.div_(info.world_size)
        else:
            dist.broadcast(buffer, src=0)
