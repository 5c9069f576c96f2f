"""What the hardware can do fast, detected at runtime, so "auto" settings pick a precision that pays off.

bf16 halves the bytes of every matrix product, but it is only a speed-up where the processor multiplies
bf16 natively: AMX tiles or AVX512-BF16 dot products on recent x86 CPUs, bf16 tensor cores on GPUs
(compute capability 8.0+). Elsewhere PyTorch emulates it through fp32 and bf16 is slower *and* less
exact, so callers fall back to fp32 when these functions say no.

    >>> from blendkit.core.hardware import fast_bf16
    >>> fast_bf16("cpu")            # True on Sapphire Rapids / Zen 4, False on older CPUs  # doctest: +SKIP
"""

from __future__ import annotations

import functools

import torch

# /proc/cpuinfo flags that mean native bf16 arithmetic (AMX tiles, or AVX512 bf16 dot products).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def _cpu_flags() -> set[str]:
    """The CPU feature flags Linux reports for the first core; empty where there is no /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True if this CPU computes bf16 matrix products natively and PyTorch's oneDNN backend can use it.

    PyTorch's own probes (private, hence looked up defensively) are asked first; on builds without them
    the kernel's CPU flags decide. ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` alone is not enough:
    it also says yes on plain AVX512 CPUs, where bf16 is emulated and slower than fp32.
    """
    if not torch.backends.mkldnn.is_available():
        return False
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(probe) for probe in probes):
        return any(bool(probe()) for probe in probes)
    return bool(_cpu_flags().intersection(BF16_CPU_FLAGS))


def fast_bf16(device: str | torch.device) -> bool:
    """True if bf16 autocast is expected to be faster than fp32 on ``device`` (CPU or CUDA; others: False)."""
    device = torch.device(device)
    if device.type == "cpu":
        return cpu_has_fast_bf16()
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    return False
