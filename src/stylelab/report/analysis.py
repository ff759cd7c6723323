"""The report's numbers and the sentences that read them, from records and images only (torch-free). Each
sentence states a comparison the numbers make, its words following their sign and size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from stylelab.spec.errors import StylelabError
from stylelab.spec.files import load_pixels
from stylelab.spec.settings import STYLE_LOSSES, format_number
from stylelab.report.runs import STYLE_LOSS_NAMES, Run, blend_shares
from stylelab.spec.layers import resolve_layer


def g(value: float | None, digits: int = 3) -> str:
    """A number for prose and tables: 3 significant digits, '-' when there is none."""
    return "-" if value is None else f"{value:.{digits}g}"


def _change_words(before: float, after: float) -> str:
    """'lowered by 42%' / 'raised by 7%' / 'left practically unchanged'."""
    change = 100.0 * (after - before) / before if before else float("nan")
    if change != change:
        return "changed from 0"
    if abs(change) < 0.5:
        return "left practically unchanged"
    return f"{'lowered' if change < 0 else 'raised'} by {abs(change):.0f}%"


def image_metrics(run: Run, prefix: str = "") -> list[dict]:
    """A row of the report's metrics table (labelled prefix + the run's label) per saved image of a transfer or
    generation run: the unweighted content loss (summed over content layers, None without any), Gram and
    MeanVar distances."""
    rows = []
    for step in run.steps:
        distances = run.distances(step)
        terms = [value for key, value in run.record.images[str(step)].losses.items() if key.startswith("content/")]
        rows.append({"label": prefix + run.label, "step": step, "content": float(sum(terms)) if terms else None,
                     "gram": distances.get("gram"), "meanvar": distances.get("meanvar"),
                     "stand_in": bool(run.stand_in)})
    return rows


def pixel_rmse(run: Run) -> float | None:
    """RMSE in [0, 1] units between a run's final image and its content image at the same size."""
    content = run.record.settings.content
    if not content or not Path(content).is_file():
        return None
    h, w = run.record.image_size
    try:
        # As the runs load it (stylelab.engine.images.load_image): float32 pixels / 255.
        reference = load_pixels(content, (h, w)).astype(np.float32) / np.float32(255)
    except StylelabError:
        return None
    image = run.image().astype(np.float64) / 255.0
    if image.shape != reference.shape:
        return None
    return float(np.sqrt(np.mean((image - reference) ** 2)))


def inversion_findings(runs: Sequence[Run]) -> tuple[dict[str, float | None], list[str]]:
    """Pixel error of each inversion against the content image, and what it says about depth and type."""
    errors = {run.layer: pixel_rmse(run) for run in runs}
    known = {layer: e for layer, e in errors.items() if e is not None}
    if len(known) < 2:
        return errors, []
    best, worst = min(known, key=known.get), max(known, key=known.get)
    text = [f"Measured in pixels (RMSE against the content image, on a 0 to 1 scale), the reconstruction "
            f"is closest from {best} ({g(known[best])}) and furthest from {worst} ({g(known[worst])})."]
    ranks = {}  # each layer's depth rank within its type (0 = shallowest), as the grid's rows
    for kind in ("conv", "relu", "pool"):
        mine = sorted((run for run in runs if resolve_layer(run.layer).kind == kind),
                      key=lambda run: resolve_layer(run.layer).index)
        ranks.update((run.layer, rank) for rank, run in enumerate(mine))
        chain = sorted((layer for layer in known if resolve_layer(layer).kind == kind), key=ranks.get)
        if len(chain) < 2:
            continue
        listing = ", ".join(f"{layer} {g(known[layer])}" for layer in chain)
        grows = all(known[b] > known[a] for a, b in zip(chain, chain[1:]))
        text.append(f"For {kind} layers the error {'grows' if grows else 'does not grow steadily'} with depth "
                    f"({listing}).")
    by_rank: dict[int, list[float]] = {}
    for layer, value in known.items():
        by_rank.setdefault(ranks[layer], []).append(value)
    shared = {rank: values for rank, values in by_rank.items() if len(values) > 1}
    if len(shared) > 1:
        within = max(max(v) - min(v) for v in shared.values())
        means = [float(np.mean(v)) for _, v in sorted(shared.items())]
        across = max(means) - min(means)
        if within < across:
            verdict = (f"smaller than the {g(across)} between the shallowest and the deepest row: depth, more "
                       f"than the type of layer, decides how much of the image comes back.")
        else:
            verdict = (f"at least as large as the {g(across)} between the shallowest and the deepest row: the "
                       f"type of layer matters as much as depth here.")
        text.append(f"At the same depth the layer types differ by at most {g(within)} in RMSE, {verdict}")
    return errors, text


def texture_findings(runs: Sequence[Run]) -> list[str]:
    factors = {run.layer: float(run.record.initial_loss) / float(run.record.final_losses["total"])
               for run in runs if float(run.record.final_losses["total"]) > 0}
    if not factors:
        return []
    low, high = min(factors, key=factors.get), max(factors, key=factors.get)
    return [f"From noise, each run lowered its single-layer Gram loss by a factor between {g(factors[low])} "
            f"({low}) and {g(factors[high])} ({high}). Gram losses of different layers are not on one scale, "
            f"so the grid, not these factors, is the comparison between layers."]


def transfer_findings(runs: Sequence[Run]) -> list[str]:
    """How the saved steps and the style weights move content loss and both style distances."""
    text, finals = [], {}
    for run in runs:
        metrics = image_metrics(run)
        a, b = metrics[0], metrics[-1]
        finals[id(run)] = b
        if a["step"] == b["step"]:
            continue
        own = run.record.settings.style_loss
        own_a, own_b = a[own], b[own]
        if None in (own_a, own_b, a["content"], b["content"]):
            continue
        text.append(f"{run.label}: from step {a['step']} to {b['step']} the {run.loss_name} distance was "
                    f"{_change_words(own_a, own_b)} ({g(own_a)} to {g(own_b)}) and the content loss "
                    f"{_change_words(a['content'], b['content'])} ({g(a['content'])} to {g(b['content'])}).")
    meanvar = sorted((run for run in runs if run.record.settings.style_loss == "meanvar"),
                     key=lambda run: run.record.settings.style_weight)
    if len(meanvar) > 1:
        lo, hi = meanvar[0], meanvar[-1]
        a, b = finals[id(lo)], finals[id(hi)]
        if None not in (a["meanvar"], b["meanvar"], a["content"], b["content"]):
            text.append(f"Raising the MeanVar style weight from {format_number(lo.record.settings.style_weight)} "
                        f"to {format_number(hi.record.settings.style_weight)} "
                        f"{_change_words(a['meanvar'], b['meanvar'])} the final MeanVar distance ({g(a['meanvar'])} "
                        f"to {g(b['meanvar'])}) and {_change_words(a['content'], b['content'])} the content loss "
                        f"({g(a['content'])} to {g(b['content'])}).")
    gram = [run for run in runs if run.record.settings.style_loss == "gram"]
    if gram and meanvar:
        gr = finals[id(gram[0])]
        mv_gram = [finals[id(run)]["gram"] for run in meanvar if finals[id(run)]["gram"] is not None]
        mv_mv = [finals[id(run)]["meanvar"] for run in meanvar if finals[id(run)]["meanvar"] is not None]
        if gr["gram"] is not None and mv_gram and gr["meanvar"] is not None and mv_mv:
            text.append(f"Judged by both measures: the Gram run ends at Gram distance {g(gr['gram'])} and MeanVar "
                        f"distance {g(gr['meanvar'])}; the MeanVar runs end at Gram distances {g(min(mv_gram))} to "
                        f"{g(max(mv_gram))} and MeanVar distances {g(min(mv_mv))} to {g(max(mv_mv))}.")
    return text


def guidance_findings(runs: Sequence[Run], transfers: Sequence[Run] = ()) -> list[str]:
    """Part 2 A: each guided sample against the unguided one of the same prompt and seed (and, where there is
    one, the same number of steps), and Part 1 transfer on the unguided sample against the best guided one."""
    text = []
    unguided = [run for run in runs if run.record.settings.guidance_factor == 0]
    guided = [run for run in runs if run.record.settings.guidance_factor > 0]
    for run in guided:
        settings, steps = run.record.settings, run.record.timing.steps
        same = [other for other in unguided if other.record.settings.prompt == settings.prompt
                and other.record.settings.seed == settings.seed]
        if not same:
            continue
        reference = ([other for other in same if other.record.timing.steps == steps] or same)[0]
        loss = settings.style_loss
        other = "meanvar" if loss == "gram" else "gram"
        mine, base = run.record.style_distances, reference.record.style_distances
        steps_note = "" if reference.record.timing.steps == steps else f" ({reference.record.timing.steps} steps)"
        text.append(f"{run.label}: against the unguided sample of the same seed{steps_note}, guidance "
                    f"{_change_words(base[loss], mine[loss])} the {STYLE_LOSS_NAMES[loss]} distance "
                    f"({g(base[loss])} to {g(mine[loss])}) and {_change_words(base[other], mine[other])} the "
                    f"{STYLE_LOSS_NAMES[other]} distance.")
    for transfer in transfers:
        loss = transfer.record.settings.style_loss
        final = image_metrics(transfer)[-1]
        same_loss = [run.record.style_distances[loss] for run in guided if run.record.settings.style_loss == loss]
        if final[loss] is None or not same_loss:
            continue
        name = STYLE_LOSS_NAMES[loss]
        text.append(f"Part 1 {name} transfer on the unguided sample reaches {name} distance {g(final[loss])} after "
                    f"{final['step']} steps; the best {name}-guided sample reaches {g(min(same_loss))}.")
    if text and any(run.stand_in for run in runs):
        text.append("These samples come from a stand-in model with random weights: the numbers show what the "
                    "guidance does to the style distances, not what the real model would draw.")
    return text


def prompt_findings(runs: Sequence[Run]) -> list[str]:
    """Part 2 B: unguided samples whose prompt names the style, against the first prompt and against guidance
    (the guided samples against the unguided one are Part 2 A's, guidance_findings)."""
    text = []
    plain = [run for run in runs if run.record.settings.guidance_factor == 0]
    guided = [run for run in runs if run.record.settings.guidance_factor > 0]
    first = plain[0].record.settings.prompt if plain else None
    prompted = [run for run in plain if run.record.settings.prompt != first]
    for run in prompted:
        a, b = plain[0].record.style_distances, run.record.style_distances
        text.append(f"Naming the style in the prompt (\u201c{run.record.settings.prompt}\u201d) "
                    f"{_change_words(a['gram'], b['gram'])} the Gram distance and "
                    f"{_change_words(a['meanvar'], b['meanvar'])} the MeanVar distance against "
                    f"\u201c{first}\u201d.")
    for run in prompted[:1]:
        for loss in STYLE_LOSSES:
            values = [other.record.style_distances[loss] for other in guided
                      if other.record.settings.style_loss == loss]
            if not values:
                continue
            mine = run.record.style_distances[loss]
            closer = sum(value < mine for value in values)
            spread = g(values[0]) if len(values) == 1 else f"{g(min(values))} to {g(max(values))}"
            text.append(f"By the {STYLE_LOSS_NAMES[loss]} distance, {closer} of {len(values)} "
                        f"{STYLE_LOSS_NAMES[loss]}-guided sample{'s' if len(values) > 1 else ''} ({spread}) "
                        f"{'is' if closer == 1 else 'are'} closer to the style image than the sample with the style "
                        f"in the prompt ({g(mine)}).")
    if text and any(run.stand_in for run in runs):
        text.append("With the stand-in's random weights, the words of a prompt carry no meaning to the model: "
                    "what naming the style does here is chance, not what a trained model would do.")
    return text


# ------------------------------------------------------------------------ Part 3, beyond the assignment


def _mean_colour_gap(run: Run) -> float | None:
    """The largest per-channel gap (0..255) between the RGB means of the image and of the content image."""
    try:
        with Image.open(run.record.settings.content) as img:
            content = np.asarray(img.convert("RGB").resize(tuple(run.image().shape[1::-1])), dtype=float)
    except (OSError, TypeError):
        return None
    return float(np.abs(run.image().astype(float).mean((0, 1)) - content.mean((0, 1))).max())


def colour_findings(runs: Sequence[Run]) -> list[str]:
    """Per style loss: how far each mode's mean colour is from the content's, against the plain transfer."""
    text = []
    labels = [f"{run.loss_name} at style weight {format_number(run.record.settings.style_weight)}" for run in runs]
    for label in dict.fromkeys(labels):
        row = {run.record.settings.preserve_colors: run for run, mine in zip(runs, labels) if mine == label}
        gaps = {mode: _mean_colour_gap(run) for mode, run in row.items()}
        if gaps.get("none") is None or len(gaps) < 2:
            continue
        others = ", ".join(f"{mode} {gaps[mode]:.1f}" for mode in gaps if mode != "none" and gaps[mode] is not None)
        text.append(f"{label}: the image's mean colour is {gaps['none']:.1f} (of 255) from the content's in the "
                    f"plain transfer; {others} with colour preservation.")
    return text


def time_to_reach(run: Run, objective: float) -> float | None:
    """The run's clock (s) when its last scale's objective first reached `objective`; None if it never did."""
    history = run.record.history
    for t, total in zip(history["time_s"], history["total"]):
        if total <= objective:
            return float(t)
    return None


def scales_findings(runs: Sequence[Run]) -> list[str]:
    """Coarse to fine against one scale: time, final objective, and when it reached the single scale's."""
    single = [run for run in runs if len(run.record.settings.scales or [1]) == 1]
    multi = [run for run in runs if len(run.record.settings.scales or [1]) > 1]
    if not single or not multi:
        return []
    base = single[0]
    base_time, base_loss = float(base.record.timing.optimise_s), base.image_loss()
    text = []
    for run in multi:
        time, loss = float(run.record.timing.optimise_s), run.image_loss()
        reached = time_to_reach(run, base_loss)
        sizes = " > ".join(map(str, run.record.settings.scales))
        reach = (f"it reached the single scale's final objective after {reached:.1f} s ({reached / base_time:.2f}x "
                 f"its time)." if reached is not None else "it did not reach the single scale's final objective.")
        text.append(f"Coarse to fine ({sizes} px) took {time:.1f} s against {base_time:.1f} s at one scale "
                    f"({time / base_time:.2f}x) and ended at objective {loss:.3g} against {base_loss:.3g} "
                    f"({loss / base_loss:.2f}x); {reach}")
    return text


def blend_findings(runs: Sequence[Run]) -> list[str]:
    """Blended styles: the final objective of each blend against its own blended target."""
    if len(runs) < 2:
        return []
    parts = [f"{blend_shares(run.record.settings.style_blend or [1.0])}: {run.image_loss():.3g}" for run in runs]
    return [f"Final objective against each blended target (weights in the order of the style images): "
            f"{'; '.join(parts)}."]


# ------------------------------------------------------------------ sweeps

def sweep_value(run: Run, key: str) -> str:
    """A swept setting's value in a run's record, as the figures and tables show it ("layer": its layer)."""
    value = run.layer if key == "layer" else getattr(run.record.settings, key)
    return "+".join(map(format_number, value)) if isinstance(value, (list, tuple)) else format_number(value)


def sweep_metrics(runs: Sequence[Run]) -> list[dict]:
    """Per run, its final image's content loss and both style distances, its seconds per step, and (for
    generations) the RMS pixel change from the first run's image, the drift that guidance causes."""
    rows, first = [], None
    for run in runs:
        row = {**image_metrics(run)[-1], "s_per_step": float(run.record.timing.time_per_step_s), "change": None}
        if run.kind == "generation":
            image = run.image().astype(np.float64) / 255.0
            first = image if first is None else first
            row["change"] = float(np.sqrt(np.mean((image - first) ** 2))) if image.shape == first.shape else None
        rows.append(row)
    return rows


def _levels(values: Sequence[float]) -> str | None:
    """Where a falling series stops falling much: the first value after which less than a tenth of its whole
    fall is left, if it ends before the last value."""
    fall = values[0] - min(values)
    if fall <= 0:
        return None
    for i, value in enumerate(values):
        if value - min(values) <= 0.1 * fall:
            return i if i < len(values) - 1 else None
    return None


def sweep_findings(runs: Sequence[Run], vary: Sequence[str]) -> list[str]:
    """Along the first varied setting (for each value of the second): how the experiment's own measure and the
    content loss (or the drift) move, where the measure stops falling, and which point ends lowest."""
    metrics = sweep_metrics(runs)
    key, groups = vary[0], {}
    for run, row in zip(runs, metrics):
        other = f" ({vary[1]} = {sweep_value(run, vary[1])})" if len(vary) > 1 else ""
        groups.setdefault(other, []).append((sweep_value(run, key), run, row))
    text = []
    for other, points in groups.items():
        run = points[0][1]
        measure = "content" if run.kind == "inversion" else run.record.settings.style_loss
        name = "content loss" if measure == "content" else f"{STYLE_LOSS_NAMES[measure]} distance"
        values = [row[measure] for _, _, row in points]
        if len(points) < 2 or None in values:
            continue
        first, last = points[0][0], points[-1][0]
        line = (f"{key} from {first} to {last}{other}: the {name} was {_change_words(values[0], values[-1])} "
                f"({g(values[0])} to {g(values[-1])})")
        side = "change" if run.kind == "generation" else "content"
        drift = [row[side] for _, _, row in points]
        if measure != "content" and None not in drift:
            what = "the RMS pixel change from the first image" if side == "change" else "the content loss"
            line += f", {what} went from {g(drift[0])} to {g(drift[-1])}"
        text.append(line + ".")
        stop = _levels(values)
        if stop is not None:
            text.append(f"Beyond {key} = {points[stop][0]}{other} the {name} falls by less than a tenth of its whole "
                        f"fall ({g(values[stop])} there, {g(min(values))} at the lowest).")
        best = min(range(len(values)), key=values.__getitem__)
        text.append(f"Lowest {name}{other}: {key} = {points[best][0]} ({g(values[best])}).")
    return text
