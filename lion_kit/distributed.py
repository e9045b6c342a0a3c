"""Several processes (torchrun): set-up, device choice, gathering per-sample updates, BN averaging.

On one process every function here is the identity, so the training code reads the same either
way. With N processes each draws its own batches; LION's per-sample state (candidate weights,
complementary bank, prototypes) must still evolve identically on every rank, so each rank gathers
all ranks' rows before it updates that state, and keeps its own rows for its losses.
"""
from __future__ import annotations

import os
import types

from pathlib import Path

import torch
import torch.distributed as dist


def setup() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    return dist.get_rank(), dist.get_world_size()


def pick_device(name: str) -> torch.device:
    """'auto' (CUDA when present), 'cpu' or 'cuda'; under torchrun each rank takes its own GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={name!r} but CUDA is not available; use --device cpu or auto")
    if name.startswith("cuda") and dist.is_initialized():
        name = f"cuda:{os.environ.get('LOCAL_RANK', 0)}"
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX-BF16). Elsewhere PyTorch
    emulates bf16 on the CPU, slower than fp32, so the trainer refuses --bf16 there."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no way to tell
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def check_bf16(device: torch.device):
    if device.type == "cpu" and not cpu_has_native_bf16():
        raise RuntimeError("bf16=True on a CPU without native bf16 (no avx512_bf16 or amx_bf16 in /proc/cpuinfo): "
                           "PyTorch would emulate it, slower than fp32; train in fp32 (--no-bf16)")


class Group:
    """This process's place among the others: gather rows from all ranks, take back one's own."""

    def __init__(self, rank: int = 0, world: int = 1):
        self.rank, self.world = rank, world

    def gather(self, **tensors) -> types.SimpleNamespace:
        """Every rank's rows of each tensor, concatenated in rank order (as given on one process)."""
        out = {}
        for name, t in tensors.items():
            if self.world == 1:
                out[name] = t
                continue
            parts = [torch.empty_like(t) for _ in range(self.world)]
            dist.all_gather(parts, t.contiguous())
            out[name] = torch.cat(parts)
        return types.SimpleNamespace(**out)

    def own(self, gathered: torch.Tensor, n: int) -> torch.Tensor:
        """This rank's n rows of a gathered tensor."""
        return gathered[self.rank * n:(self.rank + 1) * n]

    def average_(self, tensors: list[torch.Tensor]):
        """Average tensors (BN running statistics) over ranks in place, so that all ranks agree."""
        if self.world == 1 or not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        torch._foreach_copy_(tensors, list((flat / self.world).split([t.numel() for t in tensors])))
