"""Fetch a diffusion model: exactly the files a run loads, at a pinned commit, verified, into the Hugging Face cache.

`fetch(ModelSource)` (`stylelab models fetch`, the `models` rule) is the one step that may talk to a hub: it
resolves the revision to its commit, picks the files the pipeline loads for the precision (`select_files`),
downloads just those (resuming) and checks their checksums; offline, `from_cache` checks the cached ones. A model
found neither way is "not available" (the stand-in, or with `fallback: error` a stop). The result is a manifest
that generate loads from, never the network.

Imports neither torch nor diffusers: the fetch runs where Snakemake runs (a cluster's login node).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stylelab.spec.errors import StylelabError
from stylelab.spec.files import write_bytes_atomic
from stylelab.spec.settings import DIFFUSION_PRECISIONS, ModelChoice, check_fields

log = logging.getLogger("stylelab.models")

MANIFEST_FORMAT = 1
STAND_INS = ("embedded-sd", "embedded-ddpm")
FETCH_COMMAND = "make models"

# A pipeline's kind by the class its model_index.json names: ours, or the standard diffusers ones.
KIND_OF_CLASS = {"StyleGuidedStableDiffusionPipeline": "sd", "StableDiffusionPipeline": "sd",
                 "StyleGuidedDDPMPipeline": "ddpm", "DDPMPipeline": "ddpm"}
# The components each kind of pipeline loads (the arguments of its __init__; a test checks they agree).
COMPONENTS = {"sd": ("scheduler", "text_encoder", "tokenizer", "unet", "vae"), "ddpm": ("scheduler", "unet")}
# Weights as diffusers and transformers name them: name[-00001-of-00003][.variant].safetensors (or .bin, a
# pickle, taken only where a model has no safetensors), and the index of a sharded checkpoint.
WEIGHTS = re.compile(r"^(?P<name>[^.]+?)(?:-\d{5}-of-\d{5})?(?:\.(?P<variant>[A-Za-z0-9_]+))?"
                     r"\.(?P<format>safetensors|bin)(?P<index>\.index\.json)?$")
CONFIG_SUFFIXES = (".json", ".txt")
# The old single-model layout of some hub repositories (google/ddpm-celebahq-256): the UNet's config and
# weights and scheduler_config.json at the top, beside model_index.json.
ROOT_FILES = {"scheduler": ("scheduler_config.json",)}
# Top-level files of the single-model layout that belong to no model.
_ROOT_OTHERS = {"model_index.json", *(name for names in ROOT_FILES.values() for name in names)}
COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class ModelSource:
    """What to fetch: a ModelChoice's model, revision and fallback, and the precision the runs compute in."""

    model: str
    revision: str = "main"
    precision: str = "fp32"
    fallback: str = "embedded"

    @classmethod
    def of(cls, choice: ModelChoice, precision: str) -> "ModelSource":
        return cls(choice.model, choice.revision, precision, choice.fallback)

    def validate(self) -> None:
        check_fields(ModelChoice(model=self.model, revision=self.revision, fallback=self.fallback))
        if self.precision not in DIFFUSION_PRECISIONS:
            raise StylelabError(f"precision must be one of {', '.join(DIFFUSION_PRECISIONS)}, got {self.precision!r}.")


def variant_of(precision: str) -> str | None:
    """fp16 files for fp16; the full-precision ones, which load in any precision, for fp32, bf16 and auto."""
    return "fp16" if precision == "fp16" else None


def model_kind(index: dict) -> str:
    """"sd" or "ddpm", from a model_index.json: the pipeline class it names, else the components it has."""
    kind = KIND_OF_CLASS.get(index.get("_class_name"))
    if kind is not None:
        return kind
    components = {name for name, value in index.items()
                  if not name.startswith("_") and isinstance(value, list) and value and value[0] is not None}
    if {"unet", "vae", "text_encoder", "tokenizer"} <= components:
        return "sd"
    if "unet" in components and "vae" not in components:
        return "ddpm"
    raise StylelabError(f"model_index.json names {index.get('_class_name')!r} with the components "
                        f"{', '.join(sorted(components)) or 'none'}: neither a Stable Diffusion nor a DDPM pipeline.")


def select_files(paths, index: dict, precision: str) -> tuple[list[str], list[str]]:
    """The files a pipeline loads, of a repository's `paths`: (sorted paths, notes on what was chosen).

    Per model: its configs and its safetensors weights of the variant asked for, else the full-precision ones
    (as diffusers does); .bin weights, with a note, only where there are no safetensors.
    """
    paths = set(paths)
    chosen, notes = {"model_index.json"}, []
    kind = model_kind(index)
    top = single_model_layout(paths)
    for component in COMPONENTS[kind]:
        entry = index.get(component)
        if not (isinstance(entry, list) and entry and entry[0] is not None):
            raise StylelabError(f"model_index.json has no {component}, which the pipeline needs.")
        if top and component in ROOT_FILES:
            chosen.update(name for name in ROOT_FILES[component] if name in paths)
            continue
        prefix = "" if top else component + "/"
        inside = sorted(p[len(prefix):] for p in paths if p.startswith(prefix) and "/" not in p[len(prefix):])
        weights = {}
        for name in inside:
            match = WEIGHTS.match(name)
            if match:
                weights.setdefault((match["format"], match["variant"]), []).append(name)
            elif name.endswith(CONFIG_SUFFIXES) and not (prefix == "" and name in _ROOT_OTHERS):
                chosen.add(prefix + name)
        if component in ("scheduler", "tokenizer"):
            continue
        wanted = variant_of(precision)
        found = [(fmt, variant) for fmt in ("safetensors", "bin") for variant in dict.fromkeys((wanted, None))
                 if (fmt, variant) in weights]
        if not found:
            others = ", ".join(name for name in inside if not name.endswith(CONFIG_SUFFIXES)) or "none"
            raise StylelabError(f"{component} has no weights stylelab can load (safetensors or .bin; it has: "
                                f"{others}).")
        chosen.update(prefix + name for name in weights[found[0]])
        fmt, variant = found[0]
        if variant != wanted:
            notes.append(f"{component} has no {wanted} weights: its full-precision ones are used")
        if fmt == "bin":
            notes.append(f"{component} has no safetensors weights: its .bin file is used (a pickle, "
                         "loaded with torch.load(weights_only=True))")
    return sorted(chosen), notes


def single_model_layout(paths) -> bool:
    """A repository in the single-model layout (a DDPM's unet at the top), not diffusers' folder per component."""
    return "config.json" in paths and not any(p.startswith("unet/") for p in paths)


def file_hashes(path: Path) -> tuple[str, str]:
    """(SHA-256, git blob id) of a file: the hub names a large file by the first, a small one by the second."""
    sha256, size = hashlib.sha256(), path.stat().st_size
    git = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            sha256.update(chunk)
            git.update(chunk)
    return sha256.hexdigest(), git.hexdigest()


@dataclass
class Manifest:
    """What `stylelab models fetch` found: where the model's files are, or why it is not available."""

    model: str
    revision: str | None
    precision: str
    available: bool
    source: str  # hub | cache (found there without a request) | folder | embedded | none
    kind: str | None = None
    commit: str | None = None  # what the revision resolved to
    pinned: bool = False  # the revision asked was this commit (not a branch or tag)
    variant: str | None = None
    folder: str | None = None  # the snapshot (or local) folder the files are in
    cache: str | None = None
    files: list[dict] = field(default_factory=list)  # path, size, sha256
    total_bytes: int = 0
    notes: list[str] = field(default_factory=list)
    reason: str | None = None  # why the model is not available
    format: int = MANIFEST_FORMAT

    def summary(self) -> str:
        """One line: what the manifest says."""
        if self.source == "embedded":
            return f"{self.model}: the built-in stand-in (random weights), nothing to fetch"
        if not self.available:
            return f"{self.model}: not available, so Part 2 will use the stand-in (why: the warning above)"
        where = {"hub": "fetched or found up to date", "cache": "found in the cache, checked without network",
                 "folder": "a local folder"}[self.source]
        at = f" at {self.commit}" + ("" if self.pinned else f" (revision {self.revision}, not pinned)") \
            if self.commit else ""
        return (f"{self.model}{at}: {len(self.files)} files, {self.total_bytes / 1e9:.2f} GB, {where}, "
                f"in {self.folder}")

    def write(self, path: str | os.PathLike) -> None:
        write_bytes_atomic(path, (json.dumps(asdict(self), indent=2) + "\n").encode())


def read_manifest(path: str | os.PathLike) -> Manifest:
    try:
        data = json.loads(Path(path).read_text())
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, not {MANIFEST_FORMAT}")
        return Manifest(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise StylelabError(f"cannot read the model manifest {path} ({exc}); write it again with "
                            f"`{FETCH_COMMAND}` (or `stylelab models fetch --manifest {path}`).") from None


def hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def unavailable_message(source: ModelSource, reason: str) -> str:
    """The one line for a model that cannot be used: the model, why, the cache folder and the fetch command."""
    at = f" at revision {source.revision}" if source.revision else ""
    return (f"diffusion model '{source.model}'{at} is not available: {reason}. It is looked for in the Hugging "
            f"Face cache {hub_cache()} (set HF_HOME or HF_HUB_CACHE to use another); fetch it with "
            f"`{FETCH_COMMAND}` where there is network (then copy that folder to a machine without), or set "
            "diffusion.fallback: embedded to use the small stand-in.")


def _listed(folder: Path, paths, expected: dict[str, str | None]) -> tuple[list[dict], list[str]]:
    """Each file's entry (path, size, sha256), and the paths whose checksum (SHA-256 or git id) is not `expected`."""
    entries, bad = [], []
    for path in paths:
        sha256, git = file_hashes(folder / path)
        entries.append({"path": path, "size": (folder / path).stat().st_size, "sha256": sha256})
        want = expected.get(path)
        if want is not None and want not in (sha256, git):
            log.warning("%s: its checksum is %s, not %s", path, sha256 if len(want) == 64 else git, want)
            bad.append(path)
    return entries, bad


def _manifest(source: ModelSource, how: str, folder: Path, files: list[dict], **extra) -> Manifest:
    return Manifest(model=source.model, revision=source.revision, precision=source.precision, available=True,
                    source=how, folder=str(folder), files=files, total_bytes=sum(f["size"] for f in files),
                    variant=variant_of(source.precision), **extra)


def fetch(source: ModelSource) -> Manifest:
    """The manifest of `source`'s model, fetching what is missing where the hub can be reached. Raises
    StylelabError for a corrupted file that cannot be fetched again, and, with `fallback: error`, a missing model."""
    source.validate()
    if source.model in STAND_INS:
        return Manifest(model=source.model, revision=None, precision=source.precision, available=True,
                        source="embedded", kind=source.model.removeprefix("embedded-"))
    local = Path(source.model).expanduser()
    if local.is_dir():  # a model in a local folder: its files as they are, nothing fetched
        index = read_index(local)
        paths = [str(p.relative_to(local)) for p in local.rglob("*") if p.is_file()]
        chosen, notes = select_files(paths, index, source.precision)
        files, _ = _listed(local, chosen, {})
        return _manifest(source, "folder", local.resolve(), files, kind=model_kind(index), notes=notes)
    try:
        manifest = _from_hub(source)
    except _Offline as offline:
        manifest = from_cache(source, str(offline))
    if not manifest.available:
        if source.fallback == "error":
            raise StylelabError(unavailable_message(source, manifest.reason))
        log.warning("%s", unavailable_message(source, manifest.reason))
    return manifest


class _Offline(Exception):
    """The hub cannot be asked (its one argument says why): the cache is all there is."""


def read_index(folder: Path) -> dict:
    """A model folder's model_index.json (never a download)."""
    try:
        return json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError) as exc:
        raise StylelabError(f"{folder} holds no readable model_index.json ({exc}): not a model in diffusers' "
                            "layout.") from None


def _from_hub(source: ModelSource) -> Manifest:
    """Ask the hub for the file list, fetch the files the pipeline loads, and check them."""
    import httpx2
    from huggingface_hub import HfApi, constants, errors, hf_hub_download, snapshot_download

    if constants.HF_HUB_OFFLINE:
        raise _Offline("HF_HUB_OFFLINE is set")
    try:
        info = HfApi().model_info(source.model, revision=source.revision, files_metadata=True)
    except errors.GatedRepoError:  # before RepositoryNotFoundError, its base class
        return _not_available(source, "the hub asks for a token for this model: accept its licence on the hub and "
                                      "set HF_TOKEN")
    except errors.RevisionNotFoundError:
        return _not_available(source, f"the hub has no revision {source.revision} of this model: set "
                                      "diffusion.revision to one of its commits, or main")
    except errors.RepositoryNotFoundError:
        return _not_available(source, "the hub has no such model (or it is private: set HF_TOKEN)")
    except (httpx2.TransportError, errors.OfflineModeIsEnabled, OSError) as exc:
        # No network, or the hub does not answer: what the cache holds is all there is.
        raise _Offline(f"the hub {constants.ENDPOINT} cannot be reached ({_first_line(exc)})") from None
    commit = info.sha
    expected = {s.rfilename: (s.lfs.sha256 if s.lfs else s.blob_id) for s in info.siblings}
    sizes = {s.rfilename: (s.lfs.sha256, s.lfs.size) for s in info.siblings if s.lfs}
    log.info("%s at %s is commit %s (%d files in the repository)", source.model, source.revision, commit,
             len(expected))
    if "model_index.json" not in expected:
        return _not_available(source, "its repository has no model_index.json: it is not a diffusers pipeline")
    try:
        index = json.loads(Path(hf_hub_download(source.model, "model_index.json", revision=commit)).read_text())
        chosen, notes = select_files(expected, index, source.precision)
        log.info("fetching %d files: %s", len(chosen), ", ".join(chosen))
        for path in chosen:  # the large files, resumably; snapshot_download then finds them in place
            lfs = sizes.get(path)
            if lfs is not None:
                download_blob(source.model, path, commit, *lfs)
        folder = Path(snapshot_download(source.model, revision=commit, allow_patterns=chosen))
        if source.revision != commit:  # the branch's commit, for a later fetch without network
            write_bytes_atomic(repo_cache(source.model) / "refs" / source.revision, commit.encode())
        files, bad = _listed(folder, chosen, expected)
        for path in bad:  # a cached file that is not what the hub has: fetched again, once
            log.warning("%s differs from the hub's file: fetching it again", path)
            _forget(folder / path)
            hf_hub_download(source.model, path, revision=commit, force_download=True)
        if bad:
            files, bad = _listed(folder, chosen, expected)
            if bad:
                raise StylelabError(f"{source.model}: {', '.join(bad)} still differ from the hub's checksums after "
                                    "fetching them again; check the disk and the network, then run the fetch again.")
    except (httpx2.TransportError, OSError) as exc:
        raise StylelabError(f"fetching {source.model} stopped ({_first_line(exc)}); run `{FETCH_COMMAND}` again: "
                            "it resumes where it stopped.") from None
    return _manifest(source, "hub", folder, files, kind=model_kind(index), commit=commit,
                     pinned=source.revision == commit, cache=hub_cache(), notes=notes)


def repo_cache(model: str) -> Path:
    """The model's folder in the Hugging Face cache (blobs/, snapshots/<commit>/, refs/)."""
    from huggingface_hub.file_download import repo_folder_name

    return Path(hub_cache()) / repo_folder_name(repo_id=model, repo_type="model")


def download_blob(model: str, path: str, commit: str, sha256: str, size: int) -> None:
    """A large file into the cache's blobs/ under its SHA-256, as huggingface_hub names it, resuming.

    huggingface_hub (2.4) starts an interrupted file over from its first byte; here the bytes go to
    blobs/<sha256>.partial and a stopped fetch asks for the rest with a Range request. A lock keeps two apart.
    """
    import fcntl

    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status
    from tqdm import tqdm

    blobs = repo_cache(model) / "blobs"
    blob, partial = blobs / sha256, blobs / f"{sha256}.partial"
    if blob.exists():
        return
    blobs.mkdir(parents=True, exist_ok=True)
    with open(blobs / f"{sha256}.partial.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if blob.exists():
            return
        have = partial.stat().st_size if partial.exists() else 0
        headers = build_hf_headers()
        if 0 < have < size:
            headers["Range"] = f"bytes={have}-"
            log.info("%s: resuming at byte %d of %d", path, have, size)
        url = hf_hub_url(model, path, revision=commit)
        if have < size:
            with get_session().stream("GET", url, headers=headers, follow_redirects=True) as response:
                hf_raise_for_status(response)
                have = have if response.status_code == 206 else 0  # 200: the whole file, from the start
                with open(partial, "ab" if have else "wb") as out, \
                        tqdm(total=size, initial=have, unit="B", unit_scale=True, desc=path, mininterval=2) as bar:
                    for chunk in response.iter_bytes(1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
        sha, _ = file_hashes(partial)
        if sha != sha256:
            partial.unlink()
            raise StylelabError(f"{model}: the downloaded {path} has the checksum {sha}, not the hub's {sha256}; "
                                f"it was removed: run `{FETCH_COMMAND}` again.")
        os.replace(partial, blob)


def _forget(path: Path) -> None:
    """Remove a cached file: its blob, and the snapshot's link to it."""
    if path.is_symlink():
        blob = path.resolve()
        if blob.exists():
            blob.unlink()
    path.unlink(missing_ok=True)


def _not_available(source: ModelSource, reason: str) -> Manifest:
    return Manifest(model=source.model, revision=source.revision, precision=source.precision, available=False,
                    source="none", reason=reason, cache=hub_cache())


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def from_cache(source: ModelSource, offline: str) -> Manifest:
    """Without a hub: the revision's snapshot in the cache, checked against the checksums its blobs are named by."""
    repo, revision = repo_cache(source.model), source.revision or "main"
    try:
        commit = revision if COMMIT.match(revision) else (repo / "refs" / revision).read_text().strip()
    except OSError:
        commit = ""
    folder = repo / "snapshots" / commit
    if not COMMIT.match(commit) or not folder.is_dir():
        return _not_available(source, f"{offline}, and the cache holds no snapshot of it")
    try:
        index = read_index(folder)
        paths = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()]
        chosen, notes = select_files(paths, index, source.precision)
    except StylelabError as exc:
        return _not_available(source, f"{offline}, and its snapshot in the cache is incomplete ({exc})")
    expected = {}
    for path in chosen:  # a cached file links to its blob, which is named by its checksum (sha256 or git id)
        blob = Path(os.readlink(folder / path)).name if (folder / path).is_symlink() else ""
        expected[path] = blob if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", blob) else None
    unchecked = [path for path, value in expected.items() if value is None]
    files, bad = _listed(folder, chosen, expected)
    if bad:
        raise StylelabError(f"the cached {', '.join(bad)} of {source.model} (in {folder}) differ from the checksums "
                            f"the cache holds them under: the files are corrupted, and {offline}. Fetch the model "
                            f"again where there is network (`{FETCH_COMMAND}`).")
    if unchecked:
        notes.append(f"not links to checksummed blobs, so taken as they are: {', '.join(unchecked)}")
    log.info("%s: %s; using the cached snapshot %s (%d files checked)", source.model, offline, commit, len(files))
    return _manifest(source, "cache", folder, files, kind=model_kind(index), commit=commit,
                     pinned=source.revision == commit, cache=hub_cache(), notes=notes + [offline])
