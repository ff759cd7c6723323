"""Device choice, precision, default sizes, seeding, determinism and memory errors."""

from __future__ import annotations

import os
import platform
import random
from contextlib import contextmanager

import numpy as np
import torch

from stylelab.spec.errors import StylelabError
from stylelab.spec.settings import DEVICES


# Either flag means bfloat16 matrix products in hardware (AMX tiles, or AVX-512 dot products).
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def _cpuinfo(key: str) -> str | None:
    """The value of the first /proc/cpuinfo line starting with `key` (None off Linux)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(key):
                    return line.split(":", 1)[1]
    except OSError:
        pass
    return None


def cpu_flags() -> set[str]:
    return set((_cpuinfo("flags") or "").split())


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(device: str = "auto") -> torch.device:
    """auto: CUDA where PyTorch sees a GPU, else Apple's Metal (mps), else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise StylelabError(f"device '{device}' asked for, but no CUDA GPU is visible to PyTorch. "
                                "Use --device cpu (or device: auto in the config).")
        return torch.device(device)
    if device == "mps":
        if not _mps_available():
            raise StylelabError("device 'mps' asked for, but PyTorch sees no Apple Metal GPU here. "
                                "Use --device cpu (or device: auto in the config).")
        return torch.device("mps")
    if device == "cpu":
        return torch.device("cpu")
    raise StylelabError(f"unknown device '{device}'; choose one of {', '.join(DEVICES)}.")


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether `device` computes bfloat16 natively (not emulated in fp32, which is far slower), and why."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return native, f"{name} computes bfloat16" if native else f"{name} has no native bfloat16"
    if device.type == "cpu":
        flags = cpu_flags()
        found = sorted(flags & set(NATIVE_BF16_FLAGS))
        if not flags:  # not Linux: ask PyTorch's CPU capability check
            checks = {"amx": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported"}
            found = [name for name, check in checks.items() if getattr(torch.cpu, check, lambda: False)()]
        if found:
            return True, f"the CPU has {' and '.join(found)}"
        return False, "the CPU has no native bfloat16 (no amx_bf16 or avx512_bf16): it would be emulated, slowly"
    return False, f"bfloat16 is not used on {device.type}"


# Runs whose objective falls towards zero: bf16's rounding sets a floor under it (docs/performance.md, "Precision"),
# so auto keeps them fp32.
FP32_KINDS = ("inversion", "texture")


def choose_precision(requested: str, device: torch.device, kind: str | None = None) -> tuple[str, str]:
    """(fp32 or bf16, why): for auto, bf16 where the device computes it natively, but fp32 for FP32_KINDS."""
    if requested != "auto":
        return requested, "asked for"
    if kind in FP32_KINDS:
        return "fp32", (f"auto: fp32 for {'an' if kind[0] in 'aeiou' else 'a'} {kind}, whose objective falls "
                        "towards zero, where bf16's rounding would hold it higher")
    native, why = native_bf16(device)
    return ("bf16" if native else "fp32"), f"auto: {why}"


def choose_diffusion_precision(requested: str, device: torch.device) -> tuple[str, str]:
    """(fp32, fp16 or bf16, why) of a diffusion model: for auto, fp16 on CUDA, else bf16 where native, else fp32."""
    if requested == "auto" and device.type == "cuda":
        return "fp16", f"auto: fp16 on {torch.cuda.get_device_name(device)}"
    return choose_precision(requested, device)


def auto_size(device: torch.device) -> int:  # the tutorial's short side: 512 on a GPU, 128 on a CPU
    return 128 if device.type == "cpu" else 512


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# glibc's mallopt parameters (malloc.h) and the largest mmap threshold it accepts on a 64-bit machine.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 2**20


def keep_freed_memory() -> bool:
    """Let glibc reuse freed tensors' memory up to 32 MiB: PyTorch has no CPU caching allocator, so each step's large
    tensors were mapped fresh, every page faulting on first touch. Changes no result; False off glibc."""
    try:
        import ctypes
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**30))


def configure_determinism(device: torch.device) -> dict:
    """Ask for repeatable results and return the settings in force. A CPU is deterministic for a fixed thread count;
    CUDA gets deterministic cuDNN and cuBLAS, warn_only for ops without a deterministic kernel. TF32 is left as is."""
    if device.type == "cuda":
        # cuBLAS reads this when it creates its handle, so it must be set before the first matrix product.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    settings = {"threads": torch.get_num_threads(),
                "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}
    if device.type == "cuda":
        settings.update({
            "deterministic_algorithms_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        })
    return settings


def memory_report(device: torch.device) -> str:
    """The device's memory in words: total, free now, and (CUDA) how much PyTorch holds."""
    def _gib(n_bytes: float) -> str:
        return f"{n_bytes / 2**30:.1f} GiB"

    try:
        if device.type == "cuda":
            free, total = torch.cuda.mem_get_info(device)
            held = torch.cuda.memory_reserved(device)
            return f"{device_name(device)}: {_gib(total)} in all, {_gib(free)} free, {_gib(held)} held by PyTorch"
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        return f"CPU: {_gib(total)} of memory in all, {_gib(free)} free"
    except (RuntimeError, ValueError, OSError, AttributeError):
        return f"{device}: memory size unknown"


@contextmanager
def explain_out_of_memory(device: torch.device, what, advice: str):
    """An out-of-memory error as one message: what was computed (`what`: text or a callable), the memory, the fix."""
    try:
        yield
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        # The CPU allocator reports a failed allocation as a plain RuntimeError.
        if not isinstance(exc, torch.OutOfMemoryError) and "can't allocate memory" not in str(exc):
            raise
        where = "GPU" if device.type == "cuda" else "CPU"
        detail = what() if callable(what) else what
        raise StylelabError(f"out of {where} memory {detail} ({memory_report(device)}). {advice}") from None


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name (what /proc/cpuinfo says; the architecture where it says nothing)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = _cpuinfo("model name")
    return model.strip() if model is not None else platform.processor() or platform.machine()
