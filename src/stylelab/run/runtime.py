"""Device choice, default sizes, seeding, determinism, memory errors and the versions a record notes down."""

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


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them (/proc/cpuinfo); empty elsewhere."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


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
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{name} computes bfloat16"
        return False, f"{name} has no native bfloat16"
    if device.type == "cpu":
        flags = cpu_flags()
        found = sorted(flags & set(NATIVE_BF16_FLAGS))
        if not flags:  # not Linux: ask PyTorch's CPU capability check
            checks = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported",
                                                                   "_is_avx512_bf16_supported")]
            found = [name for name, check in zip(("amx", "avx512_bf16"), checks) if check is not None and check()]
        if found:
            return True, f"the CPU has {' and '.join(found)}"
        return False, "the CPU has no native bfloat16 (no amx_bf16 or avx512_bf16): it would be emulated, slowly"
    return False, f"bfloat16 is not used on {device.type}"


# Runs whose objective falls towards zero (one layer, no second term to balance): bf16's rounding of the
# features sets a floor under it (README, "Performance": 2 to 40 times fp32's final objective at 64 px,
# where fp32 with another thread count stays within 3% on the shallow layers), so auto keeps them fp32.
FP32_KINDS = ("inversion", "texture")


def choose_precision(requested: str, device: torch.device, kind: str | None = None) -> tuple[str, str]:
    """(fp32 or bf16, why): what was asked for; for auto, bf16 where the device computes it natively, but
    fp32 for a run of FP32_KINDS."""
    if requested != "auto":
        return requested, "asked for"
    if kind in FP32_KINDS:
        return "fp32", (f"auto: fp32 for {'an' if kind[0] in 'aeiou' else 'a'} {kind}, whose objective falls "
                        "towards zero, where bf16's rounding would hold it higher")
    native, why = native_bf16(device)
    return ("bf16" if native else "fp32"), f"auto: {why}"


def choose_diffusion_precision(requested: str, device: torch.device) -> tuple[str, str]:
    """(fp32, fp16 or bf16, why) of a diffusion model: for auto, fp16 on CUDA (as Stable Diffusion is run),
    bf16 on a CPU that computes it natively, fp32 elsewhere."""
    if requested != "auto":
        return requested, "asked for"
    if device.type == "cuda":
        return "fp16", f"auto: fp16 on {torch.cuda.get_device_name(device)}"
    native, why = native_bf16(device)
    return ("bf16" if native else "fp32"), f"auto: {why}"


def auto_size(device: torch.device) -> int:
    """The tutorial's image size: short side 512 on a GPU, 128 on a CPU."""
    return 128 if device.type == "cpu" else 512


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# glibc's mallopt parameters (malloc.h) and the largest mmap threshold it accepts on a 64-bit machine.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 2**20


def keep_freed_memory() -> bool:
    """Let glibc reuse the memory of freed tensors up to 32 MiB instead of returning it to the system.

    PyTorch has no caching allocator on the CPU, so each step allocates its feature maps and gradients anew;
    with glibc's defaults those above its mmap threshold are mapped fresh each time and every page faults on
    first touch (about 24,000 faults per step at 256 px, a tenth of the step). Changes no result. Returns
    whether the setting took (False off glibc)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**30))


def configure_determinism(device: torch.device) -> dict:
    """Ask for repeatable results on this device and return the settings in force, for the record.

    On a CPU, PyTorch's kernels are deterministic for a fixed number of threads, and nothing is changed.
    On CUDA, cuDNN is told to pick deterministic algorithms and not to benchmark (its choice could differ
    between runs), cuBLAS gets the fixed workspace it needs to be deterministic, and PyTorch warns about
    any operation that has no deterministic CUDA implementation (warn_only: refusing would stop runs that
    only lose the last bits). TF32 is left as it is: it changes precision, not repeatability.
    """
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


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"


def memory_report(device: torch.device) -> str:
    """The device's memory in words: total, free now, and (CUDA) how much PyTorch holds."""
    try:
        if device.type == "cuda":
            free, total = torch.cuda.mem_get_info(device)
            held = torch.cuda.memory_reserved(device)
            return (f"{device_name(device)}: {_gib(total)} in all, {_gib(free)} free, {_gib(held)} held by "
                    "PyTorch")
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        return f"CPU: {_gib(total)} of memory in all, {_gib(free)} free"
    except (RuntimeError, ValueError, OSError, AttributeError):
        return f"{device}: memory size unknown"


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    # The CPU allocator reports a failed allocation as a plain RuntimeError.
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


@contextmanager
def explain_out_of_memory(device: torch.device, what, advice: str):
    """Turn an out-of-memory error into one message: what was being computed, the memory, and the fix.

    `what` is text, or a callable that returns it (the image size is only known part-way through).
    """
    try:
        yield
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if not _is_out_of_memory(exc):
            raise
        where = "GPU" if device.type == "cuda" else "CPU"
        detail = what() if callable(what) else what
        raise StylelabError(f"out of {where} memory {detail} ({memory_report(device)}). {advice}") from None


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name (what /proc/cpuinfo says; the architecture where it says nothing)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
