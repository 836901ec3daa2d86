"""Device, precision and data parallelism, decided in one place.

A run is one process (CPU or one GPU) or several launched by `torchrun`, which sets RANK,
WORLD_SIZE and LOCAL_RANK; `start_runtime` reads them, joins the process group (NCCL on GPUs,
gloo on CPUs) and picks the autocast dtype: bf16 on GPUs that support it, fp32 on CPU. The rest
of the training code asks the `Runtime` instead of testing devices and ranks itself.

On CUDA everything that makes a GPU step fast is on: bf16 autocast (with precision "auto"), TF32
matmuls for what stays in fp32, the fused AdamW kernel, pinned host memory with non-blocking
copies, and `torch.compile` when the config asks for it. On CPU all of them are off: they are
CUDA features, or (bf16 autocast on most CPUs) slower than fp32. `Runtime.accelerations` says
which are on, and the run records it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed import _functional_collectives as functional_collectives
from torch.nn.parallel import DistributedDataParallel

from nft_pipeline.train.config import TrainConfig, config_arguments


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int
    local_rank: int
    world_size: int
    autocast_dtype: torch.dtype | None  # None: full fp32
    compile: bool = False  # torch.compile the training module

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    def accelerations(self) -> dict[str, bool]:
        """Which speed-ups this process uses (all on CUDA, none on CPU except a requested compile)."""
        return {
            "bf16_autocast": self.autocast_dtype == torch.bfloat16,
            "tf32_matmul": self.on_gpu and torch.get_float32_matmul_precision() != "highest",
            "fused_adamw": self.on_gpu,
            "pinned_memory": self.on_gpu,
            "non_blocking_copies": self.on_gpu,
            "torch_compile": self.compile,
        }

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """A batch tensor on this device; from pinned memory on a GPU the copy overlaps compute."""
        return tensor.to(self.device, non_blocking=self.on_gpu)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def precision_name(self) -> str:
        return "fp32" if self.autocast_dtype is None else str(self.autocast_dtype).removeprefix("torch.")

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module to call for training: DDP when distributed (it averages gradients), compiled if asked."""
        wrapped = model
        if self.is_distributed:
            device_ids = [self.device.index] if self.on_gpu else None
            wrapped = DistributedDataParallel(model, device_ids=device_ids)
        return torch.compile(wrapped) if self.compile else wrapped

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()

    def gather_with_grad(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's batch (rank order), keeping gradients flowing back to each rank.

        The contrastive loss then sees the global batch's negatives; the backward of the gather
        (a reduce-scatter sum) returns each rank the gradient of every rank's loss copy with
        respect to its own rows, and DDP's averaging makes the update that of the global loss.
        (This is the replacement torch names for the deprecated torch.distributed.nn all_gather.)
        """
        if not self.is_distributed:
            return tensor
        return functional_collectives.all_gather_single(tensor, 0, dist.group.WORLD)

    def mean_across_ranks(self, value: float) -> float:
        if not self.is_distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def broadcast_from_main(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (any picklable object)."""
        if not self.is_distributed:
            return value
        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def gather_to_all(self, value: Any) -> list[Any]:
        if not self.is_distributed:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered


def _choose_device(config: TrainConfig, local_rank: int) -> torch.device:
    if config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for but CUDA is not available")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def _choose_autocast(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if config.precision == "fp32":
        return None
    if config.precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def start_runtime(config: TrainConfig) -> Runtime:
    """The runtime of this process; joins the process group when launched by torchrun."""
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _choose_device(config, local_rank)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for the matmuls autocast leaves in fp32
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if world_size > 1 and device.type == "cpu":
        # Ranks on one machine share its cores; oversubscribing threads slows every rank down.
        local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world_size))
    return Runtime(
        device=device,
        rank=rank,
        local_rank=local_rank,
        world_size=world_size,
        autocast_dtype=_choose_autocast(config, device),
        compile=config.compile,
    )


def stop_runtime(runtime: Runtime) -> None:
    if runtime.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def weights_digest(model: torch.nn.Module) -> str:
    """A digest of every parameter and buffer: equal on all ranks if and only if the replicas agree."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def main_first(runtime: Runtime) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. to build a file the others then read), then the others."""
    if not runtime.is_main:
        runtime.barrier()
    yield
    if runtime.is_main:
        runtime.barrier()


def torchrun_command(
    config: TrainConfig, inputs_dir: Path, output_dir: Path, processes: int, restart: bool = False
) -> list[str]:
    """The command that trains on `processes` local devices (GPUs, or CPU processes on gloo).

    `--standalone` lets torchrun pick a free rendezvous port, so concurrent runs do not collide.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command += ["-m", "nft_pipeline.train", "--inputs", str(inputs_dir), "--output-dir", str(output_dir)]
    return command + (["--restart"] if restart else []) + config_arguments(config)
