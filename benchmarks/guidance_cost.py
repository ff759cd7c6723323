"""Cost of style guidance per denoising step: unguided against guided, same seed, on this machine.

    .venv/bin/python benchmarks/guidance_cost.py [--sd-v1] [--steps N] [--out FILE.json]

Tiny embedded Stable Diffusion at 64 px always; with --sd-v1 also Stable Diffusion v1's full UNet, VAE and
text encoder (random weights) at 256 px. Prints seconds per step (median over the timed steps, the first
step of each run left out as warm-up) and the guided/unguided ratio, and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from stylelab.diffusion.guidance import GuidanceSettings, sample
from stylelab.diffusion.models import build_sd_v1_architecture, load_model

STYLE = str(Path(__file__).resolve().parents[1] / "data" / "style" / "picasso_selfport1907.jpg")


def per_step(record: dict) -> float:
    times = record["history"]["time_s"]
    steps = [b - a for a, b in zip(times, times[1:])]  # leaves the first (warm-up) step out
    return statistics.median(steps) if steps else times[0]


def measure(model, size: int, steps: int) -> dict:
    rows = {}
    for label, factor, track in (("unguided", 0.0, 10**9), ("guided", 0.6, 1)):
        settings = GuidanceSettings(prompt="a cat", steps=steps, size=size, style=STYLE, guidance_factor=factor,
                                    track_every=track)
        _, record = sample(model, settings, device="cpu", progress=False)
        rows[label] = per_step(record)
    rows["ratio"] = rows["guided"] / rows["unguided"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sd-v1", action="store_true", help="also the full SD v1 architecture at 256 px")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", default="benchmarks/out/guidance_cost.json")
    args = parser.parse_args()
    results = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
               "torch": torch.__version__}
    results["embedded-sd 64px"] = measure(load_model("embedded-sd"), 64, args.steps)
    if args.sd_v1:
        start = time.perf_counter()
        model = build_sd_v1_architecture()
        results["sd-v1 build_s"] = round(time.perf_counter() - start, 1)
        results["sd-v1 256px"] = measure(model, 256, max(3, args.steps // 2))
    for name, row in results.items():
        if isinstance(row, dict):
            print(f"{name:>18}: unguided {row['unguided']:.3f} s/step, guided {row['guided']:.3f} s/step, "
                  f"ratio {row['ratio']:.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
