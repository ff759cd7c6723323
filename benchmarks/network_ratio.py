"""The configuration's one-layer runs against the network alone (docs/performance.md, "Network-bound one-layer runs").

    .venv/bin/python benchmarks/network_ratio.py [--configfile config.yaml ...] [--steps 60] [--out DIR]

For every inversion and texture run of the configuration (fp32, as `precision: auto` makes them), in this one
process, interleaved so that drift of the machine hits both alike:

  run      the run as its job runs it: `run_transfer` with the job's settings for --steps steps, then its image
           and record written (what `stylelab invert|texture` does after its imports), timed whole; and its
           seconds per step, the median step of its record.
  network  VGG-19 alone as the run computes it (same weights, precision, size and device): forward to the run's
           layer and backward to the image, --steps times; its seconds per step, the median.

The full run's time is estimated as (the timed run less --steps of its steps) + the config's steps x its seconds
per step: what is not a step (loading the images and the network, the targets, writing) is paid once. The ratio
is that over the config's steps x the network's seconds per step; the set's ratio is the sum over the sum.
Written as network.json and network.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from stylelab.engine.transfer import run_transfer, write_outputs
from stylelab.engine.vgg import VGGFeatures
from stylelab.spec.config import part1_spec, read_configs
from stylelab.spec.settings import feature_inversion, texture_synthesis


def _settings(config: dict, group: str, layer: str, steps: int):
    spec = {**part1_spec(config, group), "steps": (steps,)}
    if group == "inversion":
        return feature_inversion(config["images"]["content"], layer, **spec)
    return texture_synthesis(config["images"]["style"], layer, **spec)


def time_run(settings, out: Path) -> tuple[float, float, dict]:
    """(whole seconds, median seconds per step, the record) of one run as its job runs it."""
    start = time.perf_counter()
    result = run_transfer(settings, progress=False)
    write_outputs(result, out, "image.png", "record.json")
    whole = time.perf_counter() - start
    times = result.record.history["time_s"]
    return whole, statistics.median(b - a for a, b in zip(times, times[1:])), result.record


def time_network(record, layer: str, steps: int) -> float:
    """Median seconds of VGG-19 forward to `layer` and backward to the image, as the run computed it."""
    vgg = VGGFeatures(record.settings.weights, precision=record.precision).to(record.device)
    height, width = record.image_size
    image = torch.rand(1, 3, height, width, device=record.device, requires_grad=True)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        features = vgg(image, [layer])[layer]
        features.backward(torch.ones_like(features))
        image.grad = None
        if record.device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def measure(config: dict, steps: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for group in ("inversion", "texture"):
            for layer in config[group]["layers"]:
                settings = _settings(config, group, layer, steps)
                whole, per_step, record = time_run(settings, Path(tmp) / f"{group}-{layer}")
                network = time_network(record, layer, steps)
                full_steps = part1_spec(config, group)["steps"][-1]
                once = max(whole - steps * per_step, 0.0)
                run_s = once + full_steps * per_step
                rows.append({"run": f"{group} {layer}", "size": f"{record.image_size[1]}x{record.image_size[0]}",
                             "precision": record.precision, "steps": full_steps, "network_step_s": network,
                             "run_step_s": per_step, "once_s": once, "run_s": run_s,
                             "network_s": full_steps * network, "ratio": run_s / (full_steps * network)})
                print(f"{rows[-1]['run']:<20} network {network * 1e3:7.2f} ms/step  run {per_step * 1e3:7.2f} "
                      f"ms/step + {once:5.2f} s once  ratio {rows[-1]['ratio']:.3f}", flush=True)
    return rows


def table(rows: list[dict], machine: str) -> str:
    lines = [f"Machine: {machine}", "",
             "| run | size | precision | network ms/step | run ms/step | once (s) | run (s) | network (s) | ratio |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['size']} | {r['precision']} | {r['network_step_s'] * 1e3:.2f} | "
                     f"{r['run_step_s'] * 1e3:.2f} | {r['once_s']:.2f} | {r['run_s']:.1f} | {r['network_s']:.1f} | "
                     f"{r['ratio']:.3f} |")
    run_s, network_s = sum(r["run_s"] for r in rows), sum(r["network_s"] for r in rows)
    lines.append(f"| **all {len(rows)}** | | | | | | **{run_s:.0f}** | **{network_s:.0f}** | "
                 f"**{run_s / network_s:.3f}** |")
    return "\n".join(lines) + "\n"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", nargs="+", default=["config.yaml"])
    parser.add_argument("--steps", type=int, default=60, help="steps of each run and of the network (default 60)")
    parser.add_argument("--out", default="benchmarks/out")
    args = parser.parse_args(argv)
    config = read_configs(args.configfile)
    rows = measure(config, args.steps)
    machine = f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine, "configfiles": args.configfile, "steps": args.steps, "rows": rows,
              "ratio": sum(r["run_s"] for r in rows) / sum(r["network_s"] for r in rows)}
    (out / "network.json").write_text(json.dumps(result, indent=1))
    (out / "network.md").write_text(table(rows, machine))
    print(table(rows, machine))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
