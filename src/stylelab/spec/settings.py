"""Every setting of a run, defined once: its type, default, allowed values and help text (a `Rule`), from which
come the command line's options, the checks of `validate()`, the config schema and the reading of a run's spec.
Imports nothing heavy (no torch), so the Snakefile can read it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

from stylelab.spec.errors import StylelabError
from stylelab.spec.layers import (CANONICAL_NAMES, LAYER_NAMES, TUTORIAL_CONTENT_LAYERS, TUTORIAL_STYLE_LAYERS,
                                   tutorial_name)


def format_number(value) -> str:
    """A setting as people write it: 1, 10, 0.5, 1e6 (not 1000000.0 or 1e+06)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    mantissa, _, exponent = f"{value:g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


STYLE_LOSSES = ("gram", "meanvar")
OPTIMIZERS = ("lbfgs", "adam")
BOUNDS = ("project", "clamp")
INITS = ("content", "noise")
COLOR_MODES = ("none", "luminance", "match")
WEIGHTS_SOURCES = ("caffe", "torchvision", "random")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "fp16", "bf16")  # the dtypes of a diffusion model
DIFFUSION_PRECISIONS = ("auto", *PRECISIONS)
PART1_PRECISIONS = ("auto", "fp32", "bf16")  # of the VGG-19 network in Part 1
FALLBACKS = ("embedded", "error")


def fetch_precision(precision: str, device: str) -> str:
    """The precision of the files a model fetch selects: auto is fp16 on CUDA, else the full-precision files."""
    return "fp16" if precision == "auto" and str(device).startswith("cuda") else precision


DEFAULT_MAX_PIXELS = 40_000_000
SEED_LIMIT = 2**63  # torch's generators take a signed 64-bit seed
DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.02}


@dataclass(frozen=True)
class Rule:
    """What one setting may hold. `kind` is one of KINDS; the other fields narrow it."""

    kind: str
    help: str
    choices: tuple = ()
    minimum: float | None = None
    above: float | None = None  # exclusive minimum
    maximum: float | None = None
    nullable: bool = False  # None is allowed (and means "the default of something else")
    label: str | None = None  # the setting's name in messages (default: the field name in words)
    cli: bool = True  # an option of the commands
    decides: bool = True  # changes a run's result (a sweep may vary it); False: where or how it runs, or records
    metavar: str | None = None


def _real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


KINDS = ("count", "counts", "number", "numbers", "seed", "choice", "layers", "text", "path", "paths", "size", "init")


def setting(default, help: str, kind: str, **rule) -> Any:
    """A dataclass field that is a setting (lists get a copy per instance)."""
    if kind not in KINDS:
        raise ValueError(f"unknown setting kind {kind!r}")
    meta = {"rule": Rule(kind, help, **rule)}
    if isinstance(default, (list, tuple)) and kind in ("counts", "layers", "numbers", "paths"):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def rules_of(cls) -> dict[str, Rule]:
    return {f.name: f.metadata["rule"] for f in fields(cls) if "rule" in f.metadata}


def coerce(rule: Rule, value):
    """A whole number written as a float (YAML's 1.0e+3, JSON's 1000.0) as the int it is, as JSON Schema counts it."""
    def whole(v):
        return int(v) if isinstance(v, float) and math.isfinite(v) and v.is_integer() else v

    if rule.kind in ("count", "seed", "size"):
        return whole(value)
    if rule.kind == "number" and _real(value):
        return float(value)  # a weight of 1 (JSON, YAML) is the 1.0 the command line gives
    if rule.kind == "counts" and isinstance(value, (list, tuple)):
        return [whole(v) for v in value]
    if rule.kind == "numbers" and isinstance(value, (list, tuple)) and all(_real(v) for v in value):
        return [float(v) for v in value]
    if rule.kind == "paths" and isinstance(value, (list, tuple)) and len(value) == 1:
        return value[0]  # one image is the plain path it always was (records and identities unchanged)
    return value


def check_value(name: str, rule: Rule, value) -> str | None:
    """What is wrong with `value` for this setting (against its schema node), in one sentence, or None."""
    value = coerce(rule, value)
    label = rule.label or name.replace("_", " ")
    if value is None and rule.kind in ("path", "paths"):
        return None
    if rule.kind == "layers":  # a layer name that is not one raises the error that lists the valid names
        if not isinstance(value, (list, tuple)):
            return f"{label} must be a list of layer names, got {value!r}."
        for layer in value:
            tutorial_name(layer)
        return None
    node = node_of(rule)
    if allows(node, value):
        return None
    if "enum" in node and value is not None:
        return f"unknown {label} '{value}'; choose one of {', '.join(node['enum'])}."
    return f"{label} must be {describe(node)}" + ("." if value is None else f", got {value!r}.")


def _checked(name: str, rule: Rule, value, where: str = ""):
    """`value` coerced, or a StylelabError (prefixed by `where`) saying what is wrong with it."""
    problem = check_value(name, rule, value)
    if problem:
        raise StylelabError(where + problem)
    return coerce(rule, value)


def check_fields(settings) -> None:
    """Each field against its rule; the first mistake is the error."""
    for name, rule in rules_of(type(settings)).items():
        setattr(settings, name, _checked(name, rule, getattr(settings, name)))


@dataclass
class TransferSettings:
    """Everything that decides a Part 1 run's result. `kind` only names the experiment in records."""

    content: str | None = setting(None, "content image (PNG or JPEG)", "path", metavar="IMG")
    style: str | list[str] | None = setting(None, "style image, resized to the content image's size; several are "
                                            "blended (--style-blend)", "paths", nullable=True, metavar="IMG")
    steps: Sequence[int] = setting((300,), "optimiser iterations; an image is saved at each listed step", "counts",
                                   metavar="N")
    size: int | str = setting("auto", "short side of the image in pixels, or 'auto' (512 on a GPU, 128 on a CPU)",
                              "size", minimum=8)
    style_loss: str = setting("gram", "style loss: Gram matrices or per-channel mean and variance", "choice",
                              choices=STYLE_LOSSES)
    style_weight: float = setting(1e6, "weight of the style loss", "number", minimum=0)
    content_weight: float = setting(1.0, "weight of the content loss", "number", minimum=0)
    tv_weight: float = setting(0.0, "weight of the total-variation loss (smoothness)", "number", minimum=0,
                               label="tv weight")
    content_layers: Sequence[str] = setting(TUTORIAL_CONTENT_LAYERS, "layers of the content loss", "layers",
                                            metavar="LAYER")
    style_layers: Sequence[str] = setting(TUTORIAL_STYLE_LAYERS, "layers of the style loss", "layers", metavar="LAYER")
    init: str = setting("content", "start image: the content image, seeded torch.randn noise, or an image file",
                        "init", metavar="content|noise|IMG")
    seed: int = setting(0, "seed of every random draw", "seed")
    weights: str = setting("caffe", "VGG-19 weights: caffe (original, embedded), torchvision (ImageNet, from the "
                                    "torch hub cache), random (tests only)", "choice", choices=WEIGHTS_SOURCES,
                           label="weights source")
    device: str = setting("auto", "where to compute (auto: cuda, else Apple's mps, else cpu)", "choice",
                          choices=DEVICES, decides=False)
    precision: str = setting("auto", "arithmetic of the VGG-19 network: bf16 (bfloat16 autocast, channels-last; the "
                             "losses, the image and the optimiser stay fp32) or fp32; auto: bf16 where the hardware "
                             "computes it natively, else fp32", "choice", choices=PART1_PRECISIONS)
    optimizer: str = setting("lbfgs", "optimiser; one step is one iteration", "choice", choices=OPTIMIZERS)
    lr: float | None = setting(None, "learning rate (default: 1 for lbfgs, 0.02 for adam)", "number", above=0,
                               nullable=True, label="the learning rate")
    history_size: int = setting(100, "L-BFGS history length", "count", minimum=1, label="history_size", cli=False)
    bounds: str = setting("project", "pixels are clamped to [0, 1] before each evaluation; 'project' also zeroes the "
                          "gradient of pixels on a bound that point outward, which keeps L-BFGS stable; 'clamp' is the "
                          "tutorial's behaviour", "choice", choices=BOUNDS, label="bounds mode")
    record_every: int = setting(1, "keep the losses of every K-th step in the record", "count", minimum=1,
                                label="record_every", metavar="K", decides=False)
    style_blend: Sequence[float] | None = setting(
        None, "blend weights of the style images, one per style (their style statistics are mixed per layer in these "
        "proportions; default: equal)", "numbers", nullable=True, label="style blend weights", metavar="W")
    preserve_colors: str = setting("none", "keep the content's colours: luminance (transfer on luminance, the "
                                           "content's colours put back) or match (the style image given the "
                                           "content's colour mean and covariance first)", "choice",
                                   choices=COLOR_MODES, label="colour preservation mode")
    scales: Sequence[int] | None = setting(None, "coarse to fine: the short sides optimised in turn, each started from "
                                           "the one before resized; the last is the output size (default: one scale, "
                                           "--size)", "counts", minimum=8, nullable=True, metavar="PX")
    scale_steps: Sequence[int] | None = setting(None, "steps at each scale before the last, which takes --steps "
                                                      "(default: the last scale's step count at each)", "counts",
                                                nullable=True, label="scale steps", metavar="N")
    kind: str = "transfer"
    max_pixels: int | None = DEFAULT_MAX_PIXELS  # input images above this are refused (None: no limit)

    def validate(self) -> None:
        check_fields(self)
        if self.content_weight == 0 and self.style_weight == 0:
            raise StylelabError("content weight and style weight are both 0: there is nothing to optimise.")
        if self.init not in INITS and not Path(self.init).exists():
            raise StylelabError(f"init must be 'content', 'noise' or an image file; '{self.init}' is neither.")
        for image, weight, layers, flag in (("content", self.content_weight, self.content_layers, "--content IMG"),
                                            ("style", self.style_weight, self.style_layers, "--style IMG")):
            if weight > 0 and not getattr(self, image):
                raise StylelabError(f"a {image} image is needed when the {image} weight is above 0 ({flag}).")
            if weight > 0 and not layers:
                raise StylelabError(f"{image} weight above 0 but no {image} layers given.")
        if self.init == "content" and not self.content:
            raise StylelabError("init 'content' needs a content image; use --init noise.")
        self.content_layers = [tutorial_name(n) for n in self.content_layers]
        self.style_layers = [tutorial_name(n) for n in self.style_layers]
        # Part 3: blends, colour preservation and scales.
        styles = self.style_paths
        if self.style_blend is not None:
            if len(self.style_blend) != len(styles):
                raise StylelabError(f"{len(self.style_blend)} style blend weight(s) for {len(styles)} style "
                                    "image(s): give one weight per style image (--style A B --style-blend 0.7 0.3).")
            if not any(w > 0 for w in self.style_blend):
                raise StylelabError("the style blend weights are all 0: give at least one style image a weight "
                                    "above 0.")
        if len(styles) > 1 and self.style_weight == 0:
            raise StylelabError("several style images but a style weight of 0: there is nothing to blend.")
        if self.preserve_colors != "none" and not (self.content and styles and self.style_weight > 0):
            raise StylelabError(f"colour preservation '{self.preserve_colors}' needs a content image and a style "
                                "image with a style weight above 0 (a style transfer).")
        if self.scales is None:
            if self.scale_steps is not None:
                raise StylelabError("scale steps given without scales: list the scales too (--scales 128 181 256).")
            return
        scales = list(self.scales)
        if any(b <= a for a, b in zip(scales, scales[1:])):
            raise StylelabError(f"the scales must increase from coarse to fine, each larger than the one before; "
                                f"got {' '.join(map(str, scales))}.")
        if self.size != "auto" and self.size != scales[-1]:
            raise StylelabError(f"size {self.size} and the last scale {scales[-1]} differ: the last scale is the "
                                "output size, so give one of them (or make them equal).")
        if self.scale_steps is not None and len(self.scale_steps) != len(scales) - 1:
            raise StylelabError(f"{len(self.scale_steps)} scale step count(s) for {len(scales) - 1} scale(s) before "
                                "the last: give one per coarser scale (the last one takes --steps).")

    @property
    def style_paths(self) -> list[str]:
        if not self.style:
            return []
        return [self.style] if isinstance(self.style, str) else list(self.style)

    @property
    def blend_weights(self) -> list[float]:
        """Each style image's share of the blended statistics, summing to 1 (equal unless style_blend says)."""
        raw = list(self.style_blend) if self.style_blend is not None else [1.0] * len(self.style_paths)
        total = sum(raw)
        return [w / total for w in raw]

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]


# What feature inversion and texture synthesis change of TransferSettings' defaults.
ONE_LAYER_DEFAULTS = {"init": "noise", "steps": (1000,)}


def feature_inversion(content: str, layer: str, **options) -> TransferSettings:
    """Settings that reconstruct `content` from one layer's features, starting from noise."""
    options = {**ONE_LAYER_DEFAULTS, **options}
    return TransferSettings(content=content, style=None, content_layers=[layer], style_layers=[],
                            content_weight=options.pop("content_weight", 1.0), style_weight=0.0,
                            kind="inversion", **options)


def texture_synthesis(style: str, layer: str, **options) -> TransferSettings:
    """Settings that synthesise a texture matching one layer's style statistics, starting from noise."""
    options = {**ONE_LAYER_DEFAULTS, **options}
    return TransferSettings(content=None, style=style, content_layers=[], style_layers=[layer],
                            content_weight=0.0, style_weight=options.pop("style_weight", 1e6),
                            kind="texture", **options)


@dataclass
class GuidanceSettings:
    """Everything that decides a Part 2 sample, but the model (which `stylelab generate` names)."""

    prompt: str = setting("a cat", "text prompt (Stable Diffusion)", "text")
    negative_prompt: str = setting("", "unconditional prompt of classifier-free guidance", "text")
    steps: int = setting(100, "denoising steps", "count", minimum=1)
    seed: int = setting(0, "seed of the initial noise", "seed")
    size: int | None = setting(None, "image size in pixels, a multiple of 8 (default: the model's own)", "count",
                               minimum=8, nullable=True)
    cfg_scale: float = setting(7.5, "classifier-free guidance scale, Stable Diffusion only", "number", minimum=0)
    style: str | None = setting(None, "style image for guidance and for the record's distances", "path", metavar="IMG")
    style_loss: str = setting("gram", "style loss of the guidance", "choice", choices=STYLE_LOSSES)
    guidance_factor: float = setting(0.0, "s in eps - s * g * sqrt(1 - abar_t); 0 is unguided", "number", minimum=0)
    guidance_start: float = setting(0.0, "fraction of the schedule where guidance starts", "number", minimum=0,
                                    maximum=1)
    guidance_end: float = setting(1.0, "fraction of the schedule where guidance ends", "number", minimum=0, maximum=1)
    guidance_every: int = setting(1, "guide every K-th step inside the window", "count", minimum=1, metavar="K")
    style_layers: tuple[str, ...] = setting(TUTORIAL_STYLE_LAYERS, "layers of the style loss", "layers",
                                            metavar="LAYER", cli=False)
    weights: str = setting("caffe", "VGG-19 weights of the style loss", "choice", choices=WEIGHTS_SOURCES,
                           label="weights source")
    precision: str = setting("auto", "precision of the diffusion model (auto: fp16 on CUDA, bf16 on a CPU that "
                             "computes it natively, else fp32); the VGG-19 style loss follows Part 1's auto unless "
                             "fp32", "choice", choices=DIFFUSION_PRECISIONS)
    track_every: int = setting(1, "record the style loss of x0 every K-th unguided step", "count", minimum=1,
                               metavar="K", decides=False)
    max_pixels: int | None = DEFAULT_MAX_PIXELS  # a style image above this is refused (None: no limit)

    def validate(self) -> None:
        check_fields(self)
        if self.guidance_factor > 0 and not self.style:
            raise StylelabError("a style image is needed for guidance (--style IMG).")
        if not 0 <= self.guidance_start <= self.guidance_end <= 1:
            raise StylelabError("the guidance window needs 0 <= start <= end <= 1, got "
                                f"{self.guidance_start} .. {self.guidance_end}.")
        if self.size is not None and self.size % 8:
            raise StylelabError(f"size must be a multiple of 8 (at least 8), got {self.size}.")
        if self.size is not None and self.max_pixels is not None and self.size ** 2 > self.max_pixels:
            raise StylelabError(f"size {self.size} makes a {self.size} x {self.size} image "
                                f"({self.size ** 2 / 1e6:.3g} megapixels), above the limit of "
                                f"{self.max_pixels / 1e6:g} megapixels. Use a smaller --size, or raise the limit "
                                "(--max-pixels).")

    def guided_at(self, index: int) -> bool:
        """Whether step `index` (0-based) of `steps` is guided."""
        if self.guidance_factor == 0:
            return False
        fraction = index / self.steps
        inside = self.guidance_start <= fraction < self.guidance_end or (self.guidance_end == 1 and fraction >= 1)
        first = int(self.guidance_start * self.steps + 0.999999)
        return inside and (index - first) % self.guidance_every == 0


# The model a generation samples from: options of `stylelab generate` beside GuidanceSettings.
@dataclass
class ModelChoice:
    model: str = setting("CompVis/stable-diffusion-v1-4", "hub id, local folder in diffusers' layout, or a built-in "
                         "stand-in with random weights", "text", metavar="ID|PATH|embedded-sd|embedded-ddpm")
    revision: str = setting("main", "a hub model's branch, tag or commit (a commit pins the weights)", "text",
                            metavar="REV")
    fallback: str = setting("embedded", "when the model cannot be loaded: use the stand-in of the same kind and "
                            "say so, or stop", "choice", choices=FALLBACKS)
    device: str = setting("auto", "where to compute (auto: cuda, else Apple's mps, else cpu)", "choice",
                          choices=DEVICES)


def converter(rule: Rule) -> Callable[[str], Any] | None:
    """The argparse `type` of a setting: the text as its schema node's type (each item's), checked against it."""
    node = node_of(rule)
    node = next((o for o in node.get("anyOf", ()) if o.get("type") != "null"), node) if rule.nullable else node
    item = node.get("items", node) if node.get("type") == "array" else node
    types = {o.get("type") for o in item.get("anyOf", [item])}
    if not types & {"integer", "number"}:
        return None  # text, paths, layer names (checked by validate), choices (argparse's choices)

    def convert(text: str):
        try:
            value = "auto" if text == "auto" and "string" in types else (int(text) if "integer" in types
                                                                         else float(text))
        except ValueError:
            value = None
        if value is None or not allows(item, value):
            raise argparse.ArgumentTypeError(f"must be {describe(item)}, got {text}")
        return value
    return convert


def add_options(group, cls, names: Sequence[str] | None = None, defaults: dict | None = None,
                required: Sequence[str] = ()) -> None:
    """One option per setting of `cls` (or of `names`). Defaults are SUPPRESS: `resolve` fills them in."""
    rules = rules_of(cls)
    defaults = defaults or {}
    default_of = {f.name: f.default if f.default is not dataclasses.MISSING
                  else f.default_factory() for f in fields(cls)}  # type: ignore[misc]
    for name in names if names is not None else [n for n, r in rules.items() if r.cli]:
        rule = rules[name]
        shown = defaults.get(name, default_of[name])
        text = " ".join(map(str, shown)) if isinstance(shown, (list, tuple)) else format_number(shown)
        options = dict(dest=name, default=argparse.SUPPRESS, metavar=rule.metavar,
                       help=f"{rule.help} (default: {text})" if shown not in (None, "") else rule.help)
        if rule.kind == "choice":
            options.update(choices=rule.choices, metavar=None)
        elif rule.kind in ("counts", "layers", "numbers", "paths"):
            options.update(nargs="*" if rule.kind == "layers" else "+")
        if (convert := converter(rule)) is not None:
            options["type"] = convert
        if name in required:
            options["required"] = True
        group.add_argument("--" + name.replace("_", "-"), **options)


def resolve(cls, args: argparse.Namespace, spec: dict | None = None, defaults: dict | None = None) -> dict:
    """The values of `cls`'s settings: the command line's, else the spec's, else `defaults`, else the field's."""
    rules = rules_of(cls)
    values = dict(defaults or {})
    spec = spec or {}
    unknown = sorted(set(spec) - set(rules))
    if unknown:
        raise StylelabError(f"spec: unknown setting {', '.join(map(repr, unknown))}; the settings are: "
                            f"{', '.join(rules)}.")
    values.update({name: _checked(name, rules[name], value, "spec: ") for name, value in spec.items()})
    values.update({name: getattr(args, name) for name in rules if hasattr(args, name)})
    return values


# JSON Schema cannot say "finite": a number node's maximum is the largest float, which refuses infinity only.
FINITE = sys.float_info.max


def node_of(rule: Rule) -> dict:
    """The JSON Schema node of a setting's rule: the checks, converters and config schema all read it."""
    kind, low = rule.kind, rule.minimum
    whole = {"type": "integer", "minimum": int(low if low is not None else (1 if kind == "counts" else 0))}
    if kind == "seed":
        whole["maximum"] = SEED_LIMIT - 1
    real = {"type": "number", "minimum": low if low is not None else 0, "maximum": FINITE}
    if kind == "number":
        real = {"type": "number", **({"minimum": low} if low is not None else {}), "maximum": FINITE}
        if rule.above is not None:
            real["exclusiveMinimum"] = rule.above
        if rule.maximum is not None:
            real["maximum"] = rule.maximum
    text = {"type": "string"}
    node = {"choice": {"type": "string", "enum": list(rule.choices)}, "count": whole, "seed": whole,
            "counts": {"type": "array", "items": whole, "minItems": 1},
            "numbers": {"type": "array", "items": real, "minItems": 1}, "number": real,
            "paths": {"anyOf": [{**text, "minLength": 1}, {"type": "array", "items": {**text, "minLength": 1},
                                                            "minItems": 1}]},
            "size": {"anyOf": [{"type": "string", "const": "auto"}, {**whole, "minimum": int(low or 8)}]},
            "layers": {"$ref": "#/$defs/layers"}}.get(kind, text)
    return {"anyOf": [{"type": "null"}, node]} if rule.nullable else node


def schema_of(cls, name: str, **narrow) -> dict:
    """A setting's node, described, for the workflow's config, narrowed by `narrow` (e.g. exclusiveMinimum)."""
    rule = rules_of(cls)[name]
    node = node_of(rule)
    # The config's own reading: a list of step counts or sizes names each once, a text is not empty.
    narrow = {**({"uniqueItems": True} if rule.kind == "counts" else {}),
              **({"minLength": 1} if rule.kind in ("text", "path", "init") else {}), **narrow}
    if narrow:
        node = {"anyOf": [node["anyOf"][0], {**node["anyOf"][1], **narrow}]} if rule.nullable else {**node, **narrow}
    return {"description": rule.help, **node}


def allows(node: dict, value) -> bool:
    """Whether `value` is valid for `node`, a number also finite (what JSON Schema cannot say)."""
    import jsonschema

    if any(isinstance(v, float) and not math.isfinite(v) for v in (value if isinstance(value, list) else [value])):
        return False
    return jsonschema.Draft202012Validator(node).is_valid(value)


def describe(node: dict, plural: bool = False) -> str:
    """What a schema node allows, in words: "a whole number >= 1", "'auto' or a whole number >= 8"."""
    if "enum" in node:
        return "one of " + ", ".join(map(str, node["enum"]))
    if "const" in node:
        return repr(node["const"])
    if "anyOf" in node:
        return " or ".join(describe(option, plural) for option in node["anyOf"] if option.get("type") != "null")
    kind = node.get("type")
    if kind == "array":
        return describe(node.get("items", {}), plural=True) + (", without repeats" if node.get("uniqueItems") else "")
    if kind == "integer" and node.get("minimum") == 1 and plural:
        return "positive whole numbers"
    words = {"integer": ("a whole number", "whole numbers"), "number": ("a finite number", "finite numbers"),
             "string": ("text", "texts"), "object": ("a mapping", "mappings"), "null": ("null", "null")}
    text = [words.get(kind, ("a value", "values"))[plural]]
    for key, form in (("minimum", ">= {:g}"), ("exclusiveMinimum", "above {:g}")):
        if key in node:
            text.append(form.format(node[key]))
    if node.get("maximum") == SEED_LIMIT - 1:
        text.append("and below 2**63")
    elif node.get("maximum", FINITE) != FINITE:
        text.append(f"and <= {node['maximum']:g}")
    return " ".join(text)


LAYER_ENUM = list(LAYER_NAMES) + list(CANONICAL_NAMES)
