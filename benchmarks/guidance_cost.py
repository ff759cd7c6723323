"""Cost of style guidance per denoising step, and what cheaper guidance keeps of its effect.

    .venv/bin/python benchmarks/guidance_cost.py [--sd-v1] [--steps N] [--out DIR]

Same model, prompt and seed for every row. Modes: unguided; full guidance (every step); every k-th step;
a window of the schedule (the first part, where the image's layout and colours are decided). For each:
seconds per step (sampling time over all steps, so that a mode that guides every 4th step is charged its
mean), the ratio to the unguided step, the final image's distance to the style image in the guided loss,
and the share of full guidance's reduction it keeps: (unguided - mode) / (unguided - full).

Models: the tiny embedded Stable Diffusion at 64 px always; with --sd-v1 also Stable Diffusion v1's full
UNet, VAE and text encoder with random weights at 256 px (slow on a CPU: a few steps per mode). Neither
has trained weights, so the retained shares describe how the schedule spreads guidance's effect on the
loss, not image quality. Writes guidance_cost.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from stylelab.diffusion.guidance import sample
from stylelab.spec.settings import GuidanceSettings
from stylelab.spec.settings import STYLE_LOSSES
from stylelab.diffusion.models import build_sd_v1_architecture, load_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tables  # noqa: E402  (benchmarks/tables.py, beside this script)

ROOT = Path(__file__).resolve().parents[1]
STYLE = str(ROOT / "data" / "style" / "picasso_selfport1907.jpg")
FACTOR = 0.6

# name -> (guidance_every, guidance_start, guidance_end); None: unguided
MODES = {
    "unguided": None,
    "full": (1, 0.0, 1.0),
    "every 2nd step": (2, 0.0, 1.0),
    "every 4th step": (4, 0.0, 1.0),
    "first half": (1, 0.0, 0.5),
    "first quarter": (1, 0.0, 0.25),
    "first half, every 2nd": (2, 0.0, 0.5),
}


def run_mode(model, size: int, steps: int, mode, loss: str, device: str = "cpu") -> dict:
    every, start, end = mode or (1, 0.0, 1.0)
    settings = GuidanceSettings(prompt="a cat", steps=steps, size=size, style=STYLE, style_loss=loss,
                                guidance_factor=FACTOR if mode else 0.0, guidance_every=every,
                                guidance_start=start, guidance_end=end, track_every=10**9, seed=0)
    _, record = sample(model, settings, device=device, progress=False)
    timing = record.timing
    return {"s_per_step": timing.sampling_s / timing.steps, "guided_steps": timing.guided_steps,
            "distance": record.style_distances[loss]}


def measure(model, label: str, size: int, steps: int, loss: str, device: str = "cpu") -> list[dict]:
    results = {name: run_mode(model, size, steps, mode, loss, device) for name, mode in MODES.items()}
    base, full = results["unguided"], results["full"]
    rows = []
    for name, row in results.items():
        reduction = base["distance"] - full["distance"]
        kept = (base["distance"] - row["distance"]) / reduction if reduction > 0 else None
        rows.append({"model": label, "size": size, "steps": steps, "loss": loss, "mode": name,
                     "guided_steps": row["guided_steps"], "s_per_step": round(row["s_per_step"], 4),
                     "cost_ratio": round(row["s_per_step"] / base["s_per_step"], 2),
                     "distance": row["distance"], "kept": round(kept, 3) if kept is not None else None})
        print(f"{label} {loss:>7} {name:>22}: {row['s_per_step']:.3f} s/step, x{rows[-1]['cost_ratio']:.2f}, "
              f"distance {row['distance']:.4g}" + (f", keeps {kept:.0%}" if kept is not None else ""), flush=True)
    return rows


COLUMNS = (
    ("model", "---", lambda r: f"{r['model']} {r['size']} px"), ("loss", "---", lambda r: r["loss"]),
    ("mode", "---", lambda r: r["mode"]), ("guided steps", "---:", lambda r: f"{r['guided_steps']}/{r['steps']}"),
    ("s per step", "---:", lambda r: f"{r['s_per_step']:.3f}"), ("x unguided", "---:", lambda r: f"{r['cost_ratio']:.2f}"),
    ("distance", "---:", lambda r: f"{r['distance']:.4g}"),
    ("kept", "---:", lambda r: f"{r['kept']:.0%}" if r["kept"] is not None else "-"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sd-v1", action="store_true", help="also the full SD v1 architecture at 256 px")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--sd-v1-steps", type=int, default=8)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out"))
    args = parser.parse_args()
    title = f"{tables.machine(torch.device('cpu'))}, torch {torch.__version__}, guidance factor {FACTOR}"
    print(title, flush=True)
    start = time.perf_counter()
    rows = []
    tiny = load_model("embedded-sd")
    for loss in STYLE_LOSSES:
        rows += measure(tiny, "embedded-sd", 64, args.steps, loss)
    if args.sd_v1:
        rows += measure(build_sd_v1_architecture(), "sd-v1 (random weights)", 256, args.sd_v1_steps, "gram")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"machine": title, "wall_s": round(time.perf_counter() - start, 1), "rows": rows}
    (out / "guidance_cost.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "guidance_cost.md").write_text(tables.markdown(title, COLUMNS, rows))
    print(f"wrote {out}/guidance_cost.json and .md in {result['wall_s']} s")


if __name__ == "__main__":
    main()
