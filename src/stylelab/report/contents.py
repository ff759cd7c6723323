"""What the report contains, each declared once: its sections (part, title, the runs they show, their words)
and its figures (drawing, the runs it reads, section, caption). The workflow makes one rule per figure from
them, the command line offers their drawings, the report takes captions and words from here and the tests count
from here: adding a figure is a drawing in stylelab.report.figures and a line below.

A figure reads *record sets*, named by what they hold; the workflow knows where each one's files are:
inversion, texture, transfer (Part 1), generated (every Part 2 generation), compared (the generations of
diffusion.comparison), part2_transfer (Part 1 transfers on a generated image), colour, scales, blend (Part 3).
"""

from __future__ import annotations

from dataclasses import dataclass

from stylelab.spec.errors import StylelabError
from stylelab.spec.settings import format_number

PARTS = {"Part 1": "Optimisation-based style transfer (VGG-19)", "Part 2": "Style-loss guidance of a diffusion model",
         "Part 3": "Beyond the assignment", "Sweeps": "Experiments over the values of their settings"}


@dataclass(frozen=True)
class Section:
    id: str
    part: str
    letter: str
    title: str
    kind: str  # the kind of record it shows: inversion, texture, transfer or generation
    records: str  # the record set of its runs
    about: str  # what the experiment does: the section's opening paragraph
    transfers: str | None = None  # a record set of Part 1 transfers shown beside its runs


@dataclass(frozen=True)
class Figure:
    name: str  # its file, <results>/part<N>/figures/<name>.png, and its rule, <name>_figure
    part: str
    section: str | None  # None: it opens its part
    draw: str  # the drawing (`stylelab figure DRAW`), a key of stylelab.report.figures.FIGURES
    reads: tuple[str, ...]  # record sets, in the order shown; none: it shows the config's images
    label: str  # its label in Snakemake's report
    caption: str
    photo: bool = False  # embedded as a photograph (JPEG at the column's width), else as a plot (PNG)
    images: tuple[str, ...] = ()  # the config's images (images.content, images.style) it shows

    @property
    def folder(self) -> str:
        """Where it goes under the results root (part1/figures for Part 1)."""
        return f"part{self.part.split()[-1]}/figures"


# The report's sections, in the assignment's order.
SECTIONS = (
    Section("inversion", "Part 1", "A", "Feature inversion", kind="inversion", records="inversion",
            about=("Each image starts as noise and is optimised until its activations at a single VGG-19 layer "
                   "match those of the content image (content loss only, no style term). What survives shows what "
                   "that layer keeps: early layers hold colours and edges exactly, deeper ones keep the arrangement"
                   " of parts and lose the pixel detail.")),
    Section("texture", "Part 1", "B", "Texture synthesis", kind="texture", records="texture",
            about=("Each image starts as noise and is optimised until the Gram matrix (channel correlations) of its"
                   " activations at one layer matches the style image's. A Gram matrix forgets where things are, so"
                   " the result is a texture: brush marks and colours from shallow layers, larger motifs from "
                   "deeper ones.")),
    Section("transfer", "Part 1", "C", "Gram versus MeanVar style transfer", kind="transfer", records="transfer",
            about=("The content image is optimised to keep its activations at the content layer while matching the "
                   "style image's statistics at the style layers. Gram compares channel correlations; MeanVar "
                   "compares only each channel's mean and variance, a weaker constraint with far smaller values, "
                   "which is why it is run at much smaller style weights. Each run saves its image at every listed "
                   "step, so the early and late images come from the same optimisation.")),
    Section("guidance", "Part 2", "A", "Style-guided diffusion and Part 1 transfer", kind="generation",
            records="generated", transfers="part2_transfer",
            about=("A pretrained diffusion model draws the same seed several times. In guided runs, at each "
                   "denoising step the clean-image estimate x0 is decoded, scored by the Gram or MeanVar style loss"
                   " against the style image, and the noise prediction is pushed along the loss's gradient "
                   "(classifier guidance with a style loss in place of a classifier). The unguided sample of the "
                   "same seed is the baseline; Part 1 style transfer applied to that sample is the "
                   "optimisation-based alternative.")),
    Section("prompt", "Part 2", "B", "Style guidance versus the style named in the prompt", kind="generation",
            records="compared",
            about=("The text-only alternative: the same model and seed, with the style described in the prompt "
                   "instead of imposed through the loss. All three are measured with the same two style distances "
                   "to the style image.")),
    Section("colour", "Part 3", "A", "Keeping the content's colours", kind="transfer", records="colour",
            about=("Style transfer takes the style image's colours along with its brush marks. Two remedies of "
                   "Gatys et al. (2016) keep the content's instead: transfer the luminance alone, from the "
                   "content's luminance to the style's (its mean and spread first matched to the content's), and "
                   "put the content's colour channels (I and Q of YIQ) back afterwards; or give the style image the"
                   " content's colour mean and covariance before an ordinary transfer. The losses of the luminance "
                   "runs are those of the grey image that was optimised.")),
    Section("scales", "Part 3", "B", "Coarse to fine", kind="transfer", records="scales",
            about=("Optimising small first and growing the image (each scale started from the previous result, "
                   "resized) spends most steps where they are cheap, and lets the coarse layout settle before the "
                   "detail. Against one scale at the same final size, with the same loss and weights: the images, "
                   "the time and the final objective, measured on the same machine in the same run of the workflow.")),
    Section("blend", "Part 3", "C", "Blended styles", kind="transfer", records="blend",
            about=("The style statistics of two style images (Gram matrices here) are mixed per layer in the given "
                   "proportions, and the transfer matches the mixture. The ends are each style alone.")),
)

# Every figure, in the report's order.
FIGURES = (
    Figure("inputs", "Part 1", None, "inputs", reads=(), label="content and style images", photo=True,
           images=("content", "style"),
           caption=("The images every Part 1 run starts from: the content image (the target of the inversions and "
                    "transfers) and the style image (of the textures and transfers), as given; the runs see them at"
                    " the size their figures say.")),
    Figure("inversion_grid", "Part 1", "inversion", "layer-grid", reads=("inversion",), label="grid", photo=True,
           images=("content",),
           caption=("Images reconstructed from noise by matching the content image's features at one layer; columns"
                    " are layer types, rows go deeper down the network. The first column is the target: the content"
                    " image at the runs' size.")),
    Figure("inversion_curves", "Part 1", "inversion", "curves", reads=("inversion",), label="loss curves",
           caption=("Content loss of each inversion along the optimisation (log scale).")),
    Figure("texture_grid", "Part 1", "texture", "layer-grid", reads=("texture",), label="grid", photo=True,
           images=("style",),
           caption=("Textures synthesised from noise by matching the style image's Gram matrix at one layer; "
                    "columns are layer types, rows go deeper. The first column is the style image they imitate.")),
    Figure("texture_curves", "Part 1", "texture", "curves", reads=("texture",), label="loss curves",
           caption=("Gram loss of each texture run along the optimisation (log scale).")),
    Figure("transfer_grid", "Part 1", "transfer", "step-grid", reads=("transfer",), label="grid", photo=True,
           caption=("Style transfer from the content image: one row per style loss and weight, one column per saved"
                    " step.")),
    Figure("transfer_curves", "Part 1", "transfer", "curves", reads=("transfer",), label="loss curves",
           caption=("Total, content and style losses of each transfer run along the optimisation (log scale).")),
    Figure("transfer_time", "Part 1", "transfer", "loss-time", reads=("transfer",), label="loss against time",
           caption="The weighted total loss of each transfer run against its optimisation time (log scale), on the "
                   "machine that ran it: which loss and weight gets low first, in seconds rather than steps."),
    Figure("generation_grid", "Part 2", "guidance", "gallery", reads=("generated",), label="guided and unguided",
           photo=True,
           caption=("The style image, then each diffusion sample of the same seed, guided or not.")),
    Figure("guidance_curves", "Part 2", "guidance", "guidance-curves", reads=("generated",), label="style loss of x0",
           caption=("Gram and MeanVar distance of the clean-image estimate x0 at each denoising step.")),
    Figure("comparison", "Part 2", "prompt", "gallery", reads=("compared", "part2_transfer"),
           label="guidance, prompt, transfer", photo=True,
           caption=("Side by side: the unguided sample, style guidance, the style named in the prompt, and Part 1 "
                    "style transfer applied to a generated sample (the one marked as their content).")),
    Figure("colour", "Part 3", "colour", "colour", reads=("colour",), label="colour", photo=True,
           caption=("Colour preservation: the content and style images, then for each style loss the plain "
                    "transfer, the transfer of luminance alone with the content's colours put back, and the "
                    "transfer to a style image first given the content's colour statistics.")),
    Figure("scales", "Part 3", "scales", "scales", reads=("scales",), label="scales", photo=True,
           caption=("Coarse to fine against a single scale at the same final size: each run's final image, its "
                    "optimisation time and final objective, and the objective against time, each coarser scale "
                    "dashed.")),
    Figure("blend", "Part 3", "blend", "blend", reads=("blend",), label="blend", photo=True,
           caption=("Two style images and transfers to blends of their style statistics, from all of the first to "
                    "all of the second.")),
)

DRAWINGS = tuple(dict.fromkeys(figure.draw for figure in FIGURES))  # the choices of `stylelab figure`
_SECTIONS = {section.id: section for section in SECTIONS}
_FIGURES = {figure.name: figure for figure in FIGURES}


def section(section_id: str) -> Section:
    if section_id not in _SECTIONS:
        raise StylelabError(f"unknown report section '{section_id}'; choose from {', '.join(_SECTIONS)}.")
    return _SECTIONS[section_id]


def figure(name: str) -> Figure | None:
    """The declared figure of this file name (without .png), or None for one made by hand."""
    return _FIGURES.get(name)


# Sweeps (config `sweeps:`): each is a section of part "Sweeps" after Part 3, with these two figures.
SWEEP_EXPERIMENTS = {"inversion": "feature inversion", "texture": "texture synthesis", "transfer": "style transfer",
                     "generate": "style-guided generation"}
SWEEP_FIGURES = {
    "grid": ("sweep-grid", True, "The final image of every point of the sweep: a column per value of the first "
                                 "varied setting, a row per value of the second, after the image they are measured "
                                 "against; under each, the experiment's own measure."),
    "metrics": ("sweep-metrics", False, "The final measures against the first varied setting (a line per value of "
                                        "the second): losses and distances unweighted, log scale."),
}
SWEEP_DRAWINGS = tuple(draw for draw, _, _ in SWEEP_FIGURES.values())


def sweep_about(experiment: str, settings: dict, vary: dict, shared: list[str]) -> str:
    """The opening paragraph of a sweep's section: what was run over what."""
    def shown(value):
        return "+".join(map(format_number, value)) if isinstance(value, (list, tuple)) else format_number(value)

    fixed = "; ".join(f"{k} {shown(v)}" for k, v in settings.items())
    axes = " and of ".join(f"{k} ({', '.join(map(shown, v))})" for k, v in vary.items())
    text = (f"The {SWEEP_EXPERIMENTS[experiment]} experiment{' with ' + fixed if fixed else ''}, run once for every "
            f"value of {axes}, everything else as in its own section.")
    if shared:
        text += f" The points {', '.join(shared)} are runs the workflow makes anyway, taken from them, not run twice."
    return text

