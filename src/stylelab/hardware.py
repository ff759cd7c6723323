"""What the CPU computes natively, read without torch (the Snakefile decides batching with it)."""

from __future__ import annotations

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
