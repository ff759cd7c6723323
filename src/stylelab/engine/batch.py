"""Several one-layer runs as one batch: one network forward and backward per step for all their images.

Feature inversions (or texture syntheses) of one image stacked as one batch: the convolutions see B images
at once, and each image leaves the batch after its own deepest layer. That pays deep in the network in bf16
and saves process start-ups for short runs (`benchmarks/speed.py --batch`; the workflow batches as
`jobs.batch` says, and its auto batches nowhere yet, README "Performance"). Everything else stays per run: each image
has its own objective, its own optimiser (one L-BFGS state per image) with its own loss scale, its own
bounds projection, history, saved images and record. The objectives are independent, so the gradient of
their sum with respect to one image is that image's own gradient: each run takes the steps its solo run
would, up to the rounding of a batched convolution (tests/test_batch.py).

    results = run_batch([feature_inversion(cat, "conv_10"), feature_inversion(cat, "relu_10")])
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch

from stylelab.run import runner
from stylelab.spec.errors import StylelabError
from stylelab.spec.layers import resolve_layer
from stylelab.spec.settings import TransferSettings
from stylelab.engine.transfer import OOM_ADVICE, StyleTransfer, TransferResult

# Settings that must agree for runs to share a batch (the layer and the kind's image are what differ).
SHARED = ("kind", "content", "style", "steps", "size", "style_loss", "style_weight", "content_weight", "tv_weight", "init",
          "seed", "weights", "device", "precision", "optimizer", "lr", "history_size", "bounds", "record_every",
          "max_pixels", "style_blend", "preserve_colors", "scales", "scale_steps")


def run_layer(settings: TransferSettings) -> str:
    """The one layer of an inversion or texture run."""
    layers = settings.content_layers if settings.kind == "inversion" else settings.style_layers
    if settings.kind not in ("inversion", "texture") or len(layers) != 1:
        raise StylelabError(f"only one-layer inversions and textures run as a batch, not a {settings.kind} run "
                            f"with layers {list(layers)}.")
    return layers[0]


def check_batch(members: Sequence[TransferSettings]) -> None:
    """One clear line if the runs cannot share a batch: fewer than one, a layer twice, a setting that differs."""
    if not members:
        raise StylelabError("a batch needs at least one run.")
    layers = [run_layer(m) for m in members]
    if members[0].scales:
        raise StylelabError("coarse-to-fine runs (scales) do not run as a batch; run them one at a time.")
    if len(set(layers)) != len(layers):
        raise StylelabError(f"a batch names a layer twice: {layers}.")
    first = members[0]
    for member in members[1:]:
        for name in SHARED:
            if getattr(member, name) != getattr(first, name):
                raise StylelabError(f"runs in one batch must share their settings but the layer; {name} differs: "
                                    f"{getattr(first, name)!r} ({layers[0]}) and {getattr(member, name)!r} "
                                    f"({run_layer(member)}).")


class BatchedTransfer:
    """One-layer runs of one kind and one image as a runner task: each step evaluates them as one batch."""

    oom_advice = OOM_ADVICE

    def __init__(self, members: Sequence[TransferSettings]):
        check_batch(members)
        self.runs = [StyleTransfer(m) for m in members]
        self.layers = [run_layer(m) for m in members]
        self.kind = members[0].kind
        self.total_steps = self.runs[0].total_steps

    def identity(self, device: torch.device) -> dict:
        return {"batch": [run.identity(device) for run in self.runs]}

    def describe(self) -> str:
        return f"{self.runs[0].describe()[:-1]}, a batch of {len(self.runs)}: {', '.join(self.layers)})"

    def setup(self, device: torch.device) -> None:
        first = self.runs[0]
        first.setup(device)
        for run in self.runs[1:]:
            run.vgg = first.vgg  # one network for the batch
            run.setup(device)
        self.vgg = first.vgg
        # The batch's rows deepest first: the network drops each image after its own deepest layer.
        depth = [max(resolve_layer(name).index for name in run.objective.layers) for run in self.runs]
        self.order = sorted(range(len(self.runs)), key=lambda i: -depth[i])

    def step(self, n: int, clock) -> dict[str, float]:
        for run in self.runs:
            run.prepare()
        ordered = [self.runs[i] for i in self.order]
        features = self.vgg.forward_each(torch.cat([run.image for run in ordered]),
                                         [run.objective.layers for run in ordered])
        evaluated = [None] * len(self.runs)
        for i, run, own in zip(self.order, ordered, features):
            evaluated[i] = run.objective(own, run.image)
        torch.stack([total for total, _ in evaluated]).sum().backward()
        shown = {}
        for run, layer, (total, parts) in zip(self.runs, self.layers, evaluated):
            loss = run.after_backward(total, parts)
            run.optimizer.step(lambda loss=loss: loss)  # the gradient is in place: the closure only reports
            shown[layer] = run.stepped(n, clock)["loss"]
        return shown

    def state(self) -> dict | None:
        states = [run.state() for run in self.runs]
        return None if any(s is None for s in states) else {"batch": states}

    def load_state(self, saved: dict) -> None:
        for run, state in zip(self.runs, saved["batch"]):
            run.load_state(state)

    def finish(self, info: runner.RunInfo) -> list[TransferResult]:
        results = [run.finish(info) for run in self.runs]
        for result in results:
            result.record.batch = list(self.layers)
        return results


def run_batch(members: Sequence[TransferSettings], progress: bool = True, checkpoints=None) -> list[TransferResult]:
    """Run one-layer inversions or textures as one batch; one result per run, in order."""
    members = [dataclasses.replace(m) for m in members]
    for member in members:
        member.validate()
    results, _ = runner.run_task(BatchedTransfer(members), members[0].device, progress, checkpoints)
    return results
