"""Can a bf16 one-layer run catch up with fp32 if its last steps are computed in fp32? (docs/performance.md)

    .venv/bin/python benchmarks/fp32_tail.py [--size 64] [--steps 1000] [--tails 100 200]
                                             [--runs inversion/conv_5 texture/conv_10 ...] [--threads 1]

For each run (an inversion or texture of the default configuration's kind, at one layer): the final objective
of the run in fp32, in bf16, and in bf16 for all but the last K steps, then fp32 for those K (the image, the
L-BFGS state and the loss scale carried over through the runner's checkpoint state, the network and its
targets rebuilt in fp32). The objectives are those of each run's final image as its own network scores it.
Needs a CPU (or GPU) that computes bf16; elsewhere bf16 is emulated and very slow. Prints a Markdown table;
the objectives only are compared (run the cases one at a time if you want their times).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tables  # noqa: E402  (benchmarks/tables.py, beside this script)
from stylelab.spec.config import part1_spec, read_configs  # noqa: E402
from stylelab.spec.settings import TransferSettings  # noqa: E402
from stylelab.engine.transfer import StyleTransfer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUNS = ("inversion/conv_5", "inversion/pool_2", "inversion/conv_10", "texture/conv_10", "texture/pool_2",
                "texture/conv_1")


def settings(run: str, precision: str, size: int, steps: int) -> TransferSettings:
    """The default configuration's settings of one run (stylelab.spec.config, as the workflow's rule gets them), at
    this size, step count and precision, on the CPU."""
    kind, layer = run.split("/")
    config = read_configs([ROOT / "config.yaml"])
    spec = {**part1_spec(config, kind), "size": size, "steps": [steps], "precision": precision, "device": "cpu"}
    if kind == "inversion":
        return TransferSettings(**spec, kind=kind, content=str(ROOT / config["images"]["content"]),
                                content_layers=[layer], style_layers=[], style_weight=0.0)
    return TransferSettings(**spec, kind=kind, style=str(ROOT / config["images"]["style"]), content_layers=[],
                            style_layers=[layer], content_weight=0.0)


def final_objective(run: str, size: int, steps: int, first: str, tail: int) -> float:
    """The run's final objective: `first` precision for steps - tail steps, then fp32 for the last `tail`."""
    task = StyleTransfer(settings(run, first, size, steps))
    task.setup(torch.device("cpu"))
    clock = lambda: 0.0  # noqa: E731 - no timing here
    for n in range(1, steps - tail + 1):
        task.step(n, clock)
    if tail:
        state = task.state()
        task = StyleTransfer(settings(run, "fp32", size, steps))
        task.setup(torch.device("cpu"))
        task.load_state(state)
        for n in range(steps - tail + 1, steps + 1):
            task.step(n, clock)
    return task.image_losses[steps]["total"]


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--tails", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (fp32's own result depends on it)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for run in args.runs:
        fp32 = final_objective(run, args.size, args.steps, "fp32", 0)
        row = {"run": run, "fp32": fp32, "bf16": final_objective(run, args.size, args.steps, "bf16", 0)}
        for tail in args.tails:
            row[tail] = final_objective(run, args.size, args.steps, "bf16", tail)
        rows.append(row)
        print(row, flush=True)
    columns = [("run", "---", lambda r: r["run"]), ("fp32", "---:", lambda r: f"{r['fp32']:.4g}"),
               ("bf16 (x fp32)", "---:", lambda r: f"{r['bf16']:.4g} ({r['bf16'] / r['fp32']:.2f})")]
    for tail in args.tails:
        columns.append((f"bf16, last {tail} in fp32 (x fp32)", "---:",
                        lambda r, t=tail: f"{r[t]:.4g} ({r[t] / r['fp32']:.2f})"))
    print(tables.markdown(f"{args.size} px, {args.steps} L-BFGS steps, {args.threads} thread(s)",
                          columns, rows))
    return rows


if __name__ == "__main__":
    main()
