"""Figures drawn from the runs' images and records only (never by re-running one), torch-free: each drawing in
FIGURES makes a matplotlib Figure from runs (stylelab.report.runs); write_figure saves one as a PNG.
"""

from __future__ import annotations

import io
import os
import textwrap
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only, never a window; set before anything imports pyplot

import numpy as np
from matplotlib.figure import Figure

from PIL import Image

from stylelab.spec.errors import StylelabError
from stylelab.spec.files import write_bytes_atomic
from stylelab.spec.settings import COLOR_MODES, STYLE_LOSSES, format_number
from stylelab.report.analysis import sweep_metrics, sweep_value
from stylelab.report.runs import KIND_TITLES, STYLE_LOSS_NAMES, Run, blend_shares, load_runs
from stylelab.spec.layers import resolve_layer

LAYER_TYPES = ("conv", "relu", "pool")
CELL_INCHES = 2.4
DPI = 150


def _one_kind(runs: Sequence[Run], allowed: Sequence[str]) -> str:
    kinds = sorted({run.kind for run in runs})
    if len(kinds) != 1 or kinds[0] not in allowed:
        raise StylelabError(f"this figure needs records of one kind out of {', '.join(allowed)}; "
                            f"got {', '.join(kinds)}.")
    return kinds[0]


def _subtitle(run: Run) -> str:
    h, w = run.record.image_size
    return f"{w}x{h} px, {run.record.weights} weights, {run.record.device}"


def _save(fig: Figure, out: str | os.PathLike) -> Path:
    buffer = io.BytesIO()
    # No Software tag: the same inputs give the same bytes, whatever matplotlib's version.
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    write_bytes_atomic(out, buffer.getvalue())
    return Path(out)


def _blank(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _log_panel(ax, xlabel: str, title: str, fontsize: float) -> None:
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=fontsize)
    ax.grid(True, which="major", alpha=0.3)


def input_image(path: str, what: str, size: Sequence[int] | None = None) -> np.ndarray:
    """An input image a record names, as RGB; with `size` (h, w), resized as the runs resized it (bilinear)."""
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except OSError as exc:
        raise StylelabError(f"cannot read the {what} image {path} that the records name: {exc}. Run from the "
                            "folder the experiments ran in, or put the image back.") from None
    if size is not None and (size[1], size[0]) != rgb.size:
        rgb = rgb.resize((int(size[1]), int(size[0])), Image.BILINEAR)
    return np.asarray(rgb)


def inputs_figure(runs: Sequence[Run]) -> Figure:
    """The content and style images the records name, each once, side by side as given."""
    named = {}
    for what in ("content", "style"):
        paths = (getattr(run.record.settings, what) for run in runs)
        named[what] = list(dict.fromkeys(p for item in paths if item
                                         for p in ([item] if isinstance(item, str) else item) if p))
    return images_figure(named)


def images_figure(images: dict[str, Sequence[str]]) -> Figure:
    """The images of `images` ({"content": [path], "style": [path, ...]}), each once, side by side as given
    (the inputs figure as the workflow draws it, from the config's images)."""
    cells = []
    for what in ("content", "style"):
        for path in dict.fromkeys(images.get(what, ())):
            image = input_image(path, what)
            # three lines: a long file name beside the size would run past the figure's edge
            cells.append((f"{what} image\n{Path(path).name}\n{image.shape[1]}x{image.shape[0]} px", image))
    if not cells:
        raise StylelabError("no content or style image to show: name records that use one, or give --content/"
                            "--style.")
    heights = [CELL_INCHES * image.shape[0] / image.shape[1] for _, image in cells]
    fig = Figure(figsize=(CELL_INCHES * len(cells) + 0.4, max(heights) + 0.9), layout="constrained")
    axes = fig.subplots(1, len(cells), squeeze=False)[0]
    for ax, (title, image) in zip(axes, cells):
        _blank(ax)
        ax.imshow(image, interpolation="antialiased")
        ax.set_title(title, fontsize=11)
    return fig


def layer_grid_figure(runs: Sequence[Run]) -> Figure:
    """Final images of one-layer runs: a column per layer type, a row per depth in the order of the runs, after
    a first column with what they imitate (the content image, or a texture's style image)."""
    kind = _one_kind(runs, ("inversion", "texture"))
    columns = {t: [r for r in runs if resolve_layer(r.layer).kind == t] for t in LAYER_TYPES}
    columns = {t: rs for t, rs in columns.items() if rs}
    settings = runs[0].record.settings
    path, what = (settings.content, "content") if kind == "inversion" else (settings.style, "style")
    h, w = runs[0].record.image_size
    target = None
    if path and kind == "inversion":
        target = f"content image\n(the target), {w}x{h} px", input_image(path, what, (h, w))
    elif path:  # the style image as the runs sized it: its short side at theirs, the aspect kept
        ih, iw = input_image(path, what).shape[:2]
        short = min(h, w)
        size = (round(short * ih / iw), short) if iw <= ih else (short, round(short * iw / ih))
        target = f"style image\n{size[1]}x{size[0]} px", input_image(path, what, size)
    n_rows, n_cols = max(len(rs) for rs in columns.values()), len(columns) + (target is not None)
    fig = Figure(figsize=(CELL_INCHES * n_cols + 0.6, CELL_INCHES * h / w * n_rows + 1.2), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    if target is not None:
        title, image = target
        for ax in axes[:, 0]:
            _blank(ax)
        axes[0, 0].imshow(image, interpolation="antialiased")
        axes[0, 0].set_title(title, fontsize=10, fontweight="bold")
        axes = axes[:, 1:]
    for col, (layer_type, column_runs) in enumerate(columns.items()):
        axes[0, col].set_title(layer_type, fontsize=13, fontweight="bold", pad=18)
        for row in range(n_rows):
            ax = axes[row, col]
            _blank(ax)
            if col == 0:
                ax.set_ylabel(f"depth {row + 1}", fontsize=11)
            if row >= len(column_runs):
                continue
            run = column_runs[row]
            ax.imshow(run.image(), interpolation="antialiased")
            ax.text(0.5, 1.02, run.label, transform=ax.transAxes, ha="center", va="bottom", fontsize=9)
            ax.set_xlabel(f"loss {run.image_loss():.3g}", fontsize=8)
    steps = runs[0].steps[-1]
    fig.suptitle(f"{KIND_TITLES[kind]}: one layer per image, {steps} steps ({_subtitle(runs[0])})", fontsize=12)
    return fig


def step_grid_figure(runs: Sequence[Run]) -> Figure:
    """Images of several runs at each saved step: a row per run, a column per step."""
    kind = _one_kind(runs, ("transfer", "inversion", "texture"))
    steps = sorted({step for run in runs for step in run.steps})
    h, w = runs[0].record.image_size
    fig = Figure(figsize=(CELL_INCHES * len(steps) + 1.0, CELL_INCHES * h / w * len(runs) + 1.0),
                 layout="constrained")
    axes = fig.subplots(len(runs), len(steps), squeeze=False)
    for row, run in enumerate(runs):
        for col, step in enumerate(steps):
            ax = axes[row, col]
            _blank(ax)
            if row == 0:
                ax.set_title(f"{step} step{'s' if step != 1 else ''}", fontsize=12, fontweight="bold")
            if col == 0:
                ax.set_ylabel(run.label.replace(", ", "\n"), fontsize=10)
            if step not in run.steps:
                continue
            ax.imshow(run.image(step), interpolation="antialiased")
            ax.set_xlabel(f"loss {run.image_loss(step):.3g}", fontsize=8)
    fig.suptitle(f"{KIND_TITLES[kind]} ({_subtitle(runs[0])})", fontsize=12)
    return fig


def _summed(history: dict, prefix: str) -> np.ndarray | None:
    keys = [k for k in history if k.startswith(prefix)]
    return np.sum([np.asarray(history[k], dtype=float) for k in keys], axis=0) if keys else None


def loss_curves_figure(runs: Sequence[Run]) -> Figure:
    """Loss against step for every run of one experiment, log scale: for one-layer runs the loss, also relative
    to the start (scales differ by orders of magnitude between layers); for transfers the weighted total and the
    unweighted content and style terms (the style weights differ between runs)."""
    kind = _one_kind(runs, ("inversion", "texture", "transfer"))
    if kind == "transfer":
        panels = [("weighted total loss", lambda h: np.asarray(h["total"], dtype=float)),
                  ("content loss (unweighted)", lambda h: _summed(h, "content/")),
                  ("style loss (unweighted, sum over layers)", lambda h: _summed(h, "style/"))]
    else:
        panels = [("loss", lambda h: np.asarray(h["total"], dtype=float)),
                  ("loss / loss at step 1", lambda h: np.asarray(h["total"], dtype=float) / float(h["total"][0]))]
    fig = Figure(figsize=(4.6 * len(panels) + 2.0, 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colours = (matplotlib.colormaps["tab10"].colors if len(runs) <= 10
               else matplotlib.colormaps["viridis"](np.linspace(0, 0.9, len(runs))))
    for ax, (title, values_of) in zip(axes, panels):
        for run, colour in zip(runs, colours):
            values = values_of(run.record.history)
            if values is None:
                continue
            # A loss of exactly 0 has no place on a log axis; leave those points out.
            values = np.where(values > 0, values, np.nan)
            ax.plot(run.record.history["step"], values, color=colour, label=run.label, linewidth=1.3)
        _log_panel(ax, "step", title, 11)
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=9, loc="outside right upper", frameon=False)
    fig.suptitle(f"{KIND_TITLES[kind]}: loss per step ({_subtitle(runs[0])})", fontsize=12)
    return fig


def _stand_in_note(fig: Figure, runs: Sequence[Run]) -> None:
    """The banner every figure made from an embedded stand-in model carries."""
    reasons = sorted({run.stand_in for run in runs if run.kind == "generation" and run.stand_in})
    if reasons:
        # Wrapped to the figure's width: a load error can be longer than one line of the figure.
        # A character of this 8-point sans-serif font is at most about 0.62 of 8 points wide.
        width = max(40, int(fig.get_figwidth() * 72 / (8 * 0.62)))
        text = "Stand-in model with random weights, not the real model: " + "; ".join(reasons)
        fig.supxlabel(textwrap.fill(text, width), fontsize=8, color="#b00000")


def gallery_figure(runs: Sequence[Run]) -> Figure:
    """The final image of each run (generations, and transfers at their last step) after the style image."""
    odd = sorted({run.kind for run in runs} - {"generation", "transfer"})
    if odd:
        raise StylelabError(f"a gallery shows generations and transfers, not {', '.join(odd)} runs.")
    style_path = runs[0].record.settings.style
    cells = [("style image", None, input_image(style_path, "style"))] if style_path else []
    # The images the transfers were made from, marked where the gallery shows them, added where it does not.
    contents = list(dict.fromkeys(Path(run.record.settings.content).resolve() for run in runs
                                  if run.kind == "transfer" and run.record.settings.content))
    for run in runs:
        if run.kind == "generation":
            title = run.label + "\n\"" + run.record.settings.prompt + "\""
            if run.image_path().resolve() in contents:
                contents.remove(run.image_path().resolve())
                title = "content of the Part 1 transfers:\n" + title
        else:
            title = f"Part 1 transfer, {run.steps[-1]} steps\n{run.label}"
        distances = "   ".join(f"{STYLE_LOSS_NAMES[k]} {v:.3g}" for k, v in run.distances().items())
        cells.append((title, distances, run.image()))
    for path in contents:  # a content image the gallery has no run of
        at = next(i for i, cell in enumerate(cells) if cell[0].startswith("Part 1 transfer"))
        cells.insert(at, (f"content of the Part 1 transfers\n{path.parent.name}/{path.name}", None,
                          input_image(str(path), "content")))
    n_cols = min(4, len(cells))
    n_rows = -(-len(cells) // n_cols)
    fig = Figure(figsize=(CELL_INCHES * 1.25 * n_cols, CELL_INCHES * 1.45 * n_rows + 1.0), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for ax in axes.flat:
        _blank(ax)
    for ax, (title, xlabel, image) in zip(axes.flat, cells):
        ax.imshow(image, interpolation="antialiased")
        ax.set_title(title, fontsize=8.5)
        if xlabel:
            ax.set_xlabel("distance to style: " + xlabel, fontsize=7.5)
    model = next((run.record.model.source for run in runs if run.kind == "generation"), "")
    fig.suptitle(f"Style-guided diffusion{' (' + model + ')' if model else ''}, one seed for all", fontsize=12)
    _stand_in_note(fig, runs)
    return fig


def guidance_curves_figure(runs: Sequence[Run]) -> Figure:
    """Gram and MeanVar style loss of the clean estimate x0 along the schedule, one line per run."""
    _one_kind(runs, ("generation",))
    fig = Figure(figsize=(11.5, 4.4), layout="constrained")
    axes = fig.subplots(1, 2, squeeze=False)[0]
    colours = matplotlib.colormaps["tab10"].colors
    several_prompts = len({run.record.settings.prompt for run in runs}) > 1
    for ax, loss in zip(axes, STYLE_LOSSES):
        for run, colour in zip(runs, colours):
            history = run.record.history
            prompt = run.record.settings.prompt
            label = run.label + (f',\n"{textwrap.shorten(prompt, 60, placeholder=" ...")}"' if several_prompts else "")
            values = np.array([np.nan if v is None or v <= 0 else v for v in history[f"style/{loss}"]], dtype=float)
            fraction = np.asarray(history["step"], dtype=float) / len(history["step"])
            ax.plot(fraction, values, color=colour, linewidth=1.3, label=label)
        _log_panel(ax, "fraction of the denoising schedule", f"{STYLE_LOSS_NAMES[loss]} style loss of x0", 11)
    # Centred beside the plots: at the top it ran into the title, and below them into the stand-in banner.
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=8.5, loc="outside right center", frameon=False)
    fig.suptitle("Style loss of the clean-image estimate at each step", fontsize=12)
    _stand_in_note(fig, runs)
    return fig


# ------------------------------------------------------------------ Part 3, beyond the assignment

COLOUR_MODE_TITLES = {"none": "plain transfer", "luminance": "luminance only", "match": "colours matched"}


def _loss_label(run: Run) -> str:
    return f"{run.loss_name}, w {format_number(run.record.settings.style_weight)}"


def colour_figure(runs: Sequence[Run]) -> Figure:
    """Colour preservation: a row per style loss and weight, the content and style images, then a column per mode."""
    _one_kind(runs, ("transfer",))
    order = list(COLOR_MODES)  # plain first, whatever order the records come in
    modes = sorted(dict.fromkeys(run.record.settings.preserve_colors for run in runs),
                   key=lambda m: order.index(m) if m in order else len(order))
    rows = list(dict.fromkeys(_loss_label(run) for run in runs))
    by_cell = {(_loss_label(run), run.record.settings.preserve_colors): run for run in runs}
    first = runs[0].record.settings
    inputs = [("content", input_image(first.content, "content")), ("style", input_image(first.style, "style"))]
    h, w = runs[0].record.image_size
    n_cols = len(inputs) + len(modes)
    fig = Figure(figsize=(CELL_INCHES * n_cols, CELL_INCHES * h / w * len(rows) + 1.3), layout="constrained")
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            _blank(ax)
            if c < len(inputs):
                title, image = inputs[c]
                ax.imshow(image, interpolation="antialiased")
                if r == 0:
                    ax.set_title(f"{title} image", fontsize=11)
                if c == 0:
                    ax.set_ylabel(row, fontsize=10)
                continue
            mode = modes[c - len(inputs)]
            if r == 0:
                ax.set_title(COLOUR_MODE_TITLES.get(mode, mode), fontsize=11, fontweight="bold")
            run = by_cell.get((row, mode))
            if run is not None:
                ax.imshow(run.image(), interpolation="antialiased")
                ax.set_xlabel(f"loss {run.image_loss():.3g}", fontsize=8)
    fig.suptitle(f"Colour preservation, {runs[0].steps[-1]} steps ({_subtitle(runs[0])})", fontsize=12)
    return fig


def scales_figure(runs: Sequence[Run]) -> Figure:
    """Coarse to fine against one scale: each run's final image, and the objective against time per scale."""
    _one_kind(runs, ("transfer",))
    h, w = runs[0].record.image_size
    fig = Figure(figsize=(CELL_INCHES * 1.3 * len(runs) + 5.2, CELL_INCHES * 1.3 * h / w + 1.4), layout="constrained")
    grid = fig.add_gridspec(1, len(runs) + 2)
    colours = matplotlib.colormaps["tab10"].colors
    plot = fig.add_subplot(grid[0, len(runs):])
    for i, (run, colour) in enumerate(zip(runs, colours)):
        # Each scale of the run, coarse to fine, on the run's one clock: (size, its history).
        scales = [(entry["size"], entry["history"]) for entry in run.record.scale_history]
        scales.append((run.record.settings.size, run.record.history))
        name = Path(run.path).stem.replace("_", " ")
        ax = fig.add_subplot(grid[0, i])
        _blank(ax)
        ax.imshow(run.image(), interpolation="antialiased")
        ax.set_title(f"{name}\n{' > '.join(str(size) for size, _ in scales)} px", fontsize=9.5)
        ax.set_xlabel(f"{run.record.timing.optimise_s:.1f} s, final objective {run.image_loss():.3g}", fontsize=8)
        for k, (size, history) in enumerate(scales):
            last = k == len(scales) - 1
            totals = np.asarray(history["total"], dtype=float)
            plot.plot(np.asarray(history["time_s"], dtype=float), np.where(totals > 0, totals, np.nan), color=colour,
                      linewidth=1.4 if last else 1.0, alpha=1.0 if last else 0.55, linestyle="-" if last else "--",
                      label=f"{name}, {size} px")
    _log_panel(plot, "time (s, optimisation only)", "objective at each scale", 10)
    plot.legend(fontsize=7.5, frameon=False)
    fig.suptitle(f"Coarse to fine against one scale ({_subtitle(runs[0])})", fontsize=12)
    return fig


def blend_figure(runs: Sequence[Run]) -> Figure:
    """Blended styles: the style images at either end, each blend's image between them, by weight."""
    _one_kind(runs, ("transfer",))
    styles = runs[0].record.settings.style
    styles = [styles] if isinstance(styles, str) else list(styles)
    cells = [(f"style: {Path(styles[0]).stem}", input_image(styles[0], "style"), None)]
    cells += [(blend_shares(run.record.settings.style_blend or [1.0]), run.image(), f"loss {run.image_loss():.3g}")
              for run in sorted(runs, key=lambda run: [-w for w in run.record.settings.style_blend or [1.0]])]
    cells += [(f"style: {Path(path).stem}", input_image(path, "style"), None) for path in styles[1:]]
    h, w = runs[0].record.image_size
    fig = Figure(figsize=(CELL_INCHES * len(cells), CELL_INCHES * h / w + 1.3), layout="constrained")
    axes = fig.subplots(1, len(cells), squeeze=False)[0]
    for ax, (title, image, xlabel) in zip(axes, cells):
        _blank(ax)
        ax.imshow(image, interpolation="antialiased")
        ax.set_title(title, fontsize=10)
        if xlabel:
            ax.set_xlabel(xlabel, fontsize=8)
    fig.suptitle(f"Blended styles, weights {' / '.join(Path(p).stem for p in styles)}, {runs[0].steps[-1]} steps "
                 f"({_loss_label(runs[0])}; {_subtitle(runs[0])})", fontsize=11)
    return fig


def loss_time_figure(runs: Sequence[Run]) -> Figure:
    """Each run's weighted total loss against its optimisation time, log scale: which gets low first."""
    kind = _one_kind(runs, ("inversion", "texture", "transfer"))
    fig = Figure(figsize=(7.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for run in runs:
        total = np.asarray(run.record.history["total"], dtype=float)
        ax.plot(run.record.history["time_s"], np.where(total > 0, total, np.nan), label=run.label, linewidth=1.3)
    _log_panel(ax, "time (s, optimisation only)", "weighted total loss", 11)
    ax.legend(fontsize=9, frameon=False)
    fig.suptitle(f"{KIND_TITLES[kind]}: loss against time ({_subtitle(runs[0])})", fontsize=12)
    return fig


# ------------------------------------------------------------------ sweeps

def _sweep_cells(runs: Sequence[Run], vary: Sequence[str]) -> tuple[list[list[str]], dict[tuple, Run]]:
    """The values of each varied setting in order of appearance, and the run at each combination."""
    if not vary or len(vary) > 2:
        raise StylelabError("a sweep figure needs one or two varied settings (--vary KEY [KEY]).")
    cells = {tuple(sweep_value(run, key) for key in vary): run for run in runs}
    return [list(dict.fromkeys(combo[i] for combo in cells)) for i in range(len(vary))], cells


def sweep_grid_figure(runs: Sequence[Run], vary: Sequence[str]) -> Figure:
    """A sweep's final images: a column per value of the first setting, a row per value of the second, after the
    image they are measured against (the content image for inversions, else the style image)."""
    axes_values, cells = _sweep_cells(runs, vary)
    columns, rows = axes_values[0], axes_values[1] if len(vary) > 1 else [None]
    kind = runs[0].kind
    reference = runs[0].record.settings.content if kind == "inversion" else runs[0].record.settings.style
    if isinstance(reference, (list, tuple)):
        reference = reference[0]
    h, w = runs[0].record.image_size
    fig = Figure(figsize=(CELL_INCHES * (len(columns) + 1) + 0.6, CELL_INCHES * h / w * len(rows) + 1.4),
                 layout="constrained")
    grid = fig.subplots(len(rows), len(columns) + 1, squeeze=False)
    for ax in grid.flat:
        _blank(ax)
    if reference:
        grid[0, 0].imshow(input_image(reference, "reference"), interpolation="antialiased")
        grid[0, 0].set_title("content image" if kind == "inversion" else "style image", fontsize=10)
    for r, row in enumerate(rows):
        for c, column in enumerate(columns):
            ax = grid[r, c + 1]
            if r == 0:
                ax.set_title(f"{vary[0]} = {column}", fontsize=10, fontweight="bold")
            if c == 0 and row is not None:
                ax.set_ylabel(f"{vary[1]} = {row}", fontsize=10)
            run = cells.get((column,) if row is None else (column, row))
            if run is None:
                continue
            ax.imshow(run.image(), interpolation="antialiased")
            own = "content" if kind == "inversion" else run.record.settings.style_loss
            value = sweep_metrics([run])[0][own]
            ax.set_xlabel(f"{'content loss' if own == 'content' else STYLE_LOSS_NAMES[own]} {value:.3g}"
                          if value is not None else "", fontsize=8)
    title = KIND_TITLES.get(kind, "Style-guided diffusion")
    fig.suptitle(f"{title} over {' and '.join(vary)} ({_subtitle(runs[0])})", fontsize=12)
    _stand_in_note(fig, runs)
    return fig


def sweep_metrics_figure(runs: Sequence[Run], vary: Sequence[str]) -> Figure:
    """A sweep's measures against the first varied setting, a line per value of the second: content loss and
    both style distances (Part 1); both style distances, seconds per step and the drift from the first image
    (generations)."""
    axes_values, cells = _sweep_cells(runs, vary)
    columns = axes_values[0]
    rows = axes_values[1] if len(vary) > 1 else [None]
    panels = (("gram", "Gram distance"), ("meanvar", "MeanVar distance"), ("s_per_step", "seconds per step"),
              ("change", "RMS pixel change from the first image")) if runs[0].kind == "generation" else \
        (("content", "content loss"), ("gram", "Gram distance"), ("meanvar", "MeanVar distance"))
    metrics = {key: sweep_metrics([run])[0] for key, run in cells.items()}
    if runs[0].kind == "generation":  # the drift is measured against the sweep's first image
        for key, row in zip(cells, sweep_metrics(list(cells.values()))):
            metrics[key]["change"] = row["change"]
    panels = [(k, t) for k, t in panels if any(m[k] is not None for m in metrics.values())]
    try:
        xs = [float(v) for v in columns]
    except ValueError:
        xs = list(range(len(columns)))
    fig = Figure(figsize=(4.2 * len(panels) + 1.8, 3.9), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, title) in zip(axes, panels):
        for row in rows:
            ys = [metrics.get((c,) if row is None else (c, row), {}).get(key) for c in columns]
            ys = [np.nan if y is None else y for y in ys]
            ax.plot(xs, ys, marker="o", linewidth=1.3, label=None if row is None else f"{vary[1]} = {row}")
        positive = all(x > 0 for x in xs) and max(xs) / min(xs) >= 20
        ax.set_xscale("log" if positive else "linear")
        if key != "change":
            ax.set_yscale("log")
        ax.set_xticks(xs, columns, fontsize=8)
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel(vary[0], fontsize=10)
        ax.set_title(title, fontsize=11)
        ax.grid(True, alpha=0.3)
    if len(rows) > 1:
        fig.legend(*axes[0].get_legend_handles_labels(), fontsize=9, loc="outside right upper", frameon=False)
    fig.suptitle(f"Final measures against {vary[0]} ({_subtitle(runs[0])})", fontsize=12)
    _stand_in_note(fig, runs)
    return fig


SWEEP_FIGURES = {"sweep-grid": sweep_grid_figure, "sweep-metrics": sweep_metrics_figure}
FIGURES = {"inputs": inputs_figure, "layer-grid": layer_grid_figure, "step-grid": step_grid_figure,
           "curves": loss_curves_figure, "gallery": gallery_figure, "guidance-curves": guidance_curves_figure,
           "colour": colour_figure, "scales": scales_figure, "blend": blend_figure, "loss-time": loss_time_figure}


def write_figure(name: str, record_paths: Sequence[str | os.PathLike], out: str | os.PathLike,
                 images: dict[str, Sequence[str]] | None = None, vary: Sequence[str] | None = None) -> Path:
    """Draw figure `name` (a key of FIGURES or SWEEP_FIGURES: those take the varied settings) from the records,
    or the inputs figure from `images`, as a PNG."""
    if name == "inputs" and images is not None:
        return _save(images_figure(images), out)
    if name in SWEEP_FIGURES:
        return _save(SWEEP_FIGURES[name](load_runs(record_paths), vary or []), out)
    return _save(FIGURES[name](load_runs(record_paths)), out)
