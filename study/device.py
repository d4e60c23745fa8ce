"""Which device a command computes on, chosen once at its entry point and named with its results.

    --device auto      the first CUDA device when torch sees one, else the CPU (the default)
    --device cpu       the CPU, even beside a GPU
    --device cuda      the first CUDA device; cuda:N the N-th

`resolve_device` turns the choice into a torch.device, or into one line saying why it cannot be had (a usage error,
exit 2); `describe` names it for metrics.json and the MLflow run tag `device`. What runs on the device follows from it:
bf16 autocast and a bf16 teacher on CUDA (study.distill.loop), fp32 on the CPU.
"""

from __future__ import annotations

import re

import torch

from study.errors import ConfigError

CHOICES = ("auto", "cpu", "cuda", "cuda:N")
DEVICE_TAG = "device"  # the key in metrics.json and the MLflow run tag
# What "within bf16's tolerance" means for a loss computed on CUDA in bf16 against the fp32 reference:
# |bf16 - fp32| <= BF16_RTOL |fp32| + BF16_ATOL (bf16 keeps 8 bits of mantissa: ~0.4% per rounding).
BF16_RTOL, BF16_ATOL = 2e-2, 2e-3


def cuda_count() -> int:
    """CUDA devices torch can use here (0 on a CPU-only build or machine)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(choice: str = "auto", count: int | None = None) -> torch.device:
    """The device `choice` names on a machine with `count` CUDA devices (default: this machine's). A choice the
    machine cannot honour (cuda without a GPU, cuda:3 on a machine with 2) is a ConfigError naming both."""
    count = cuda_count() if count is None else count
    if choice == "auto":
        return torch.device("cuda", 0) if count else torch.device("cpu")
    if choice == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", choice)
    if match is None:
        raise ConfigError(f"--device: must be one of {', '.join(CHOICES)}, got {choice!r}")
    if not count:
        raise ConfigError(f"--device {choice}: torch sees no CUDA device on this machine")
    index = int(match.group(1) or 0)
    if index >= count:
        raise ConfigError(f"--device {choice}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return torch.device("cuda", index)


def describe(device: torch.device | str) -> str:
    """`cpu`, or `cuda:0 (NVIDIA H200)`: the device and, for a GPU, its name."""
    device = torch.device(device)
    if device.type != "cuda":
        return device.type
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
