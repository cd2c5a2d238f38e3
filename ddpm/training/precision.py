"""`trainer.precision=auto`: bf16 autocast where the hardware computes bf16 natively, fp32 where it would be
emulated. On a CPU, bf16 matrix and convolution kernels are native with AVX512-BF16 or AMX-BF16 (oneDNN uses them);
without either, autocast converts to bf16 and computes in fp32 anyway, slower than plain fp32 (docs/speed.md)."""

from pathlib import Path

import torch

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags as `lscpu` lists them (empty where /proc/cpuinfo is missing: not Linux)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def uses_cuda(accelerator: str) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def auto_precision(accelerator: str, flags: set[str] | None = None) -> tuple[str, str]:
    """The precision `auto` stands for on this machine, and why (for the log)."""
    if uses_cuda(str(accelerator)):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed", "the GPU computes bf16"
        return "32-true", "the GPU has no bf16"
    flags = cpu_flags() if flags is None else flags
    native = [f for f in NATIVE_BF16_FLAGS if f in flags]
    if native:
        return "bf16-mixed", f"the CPU computes bf16 natively ({', '.join(native)})"
    return "32-true", f"the CPU has none of {', '.join(NATIVE_BF16_FLAGS)}: bf16 would be emulated"
