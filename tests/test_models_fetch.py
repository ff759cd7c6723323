"""`stylelab models fetch` against a local fake Hub (tests/hubserver.py, 127.0.0.1 only): what is transferred,
the cache layout, loading and generating from the manifest, a second fetch, resuming, corruption, no network.

Every fetch and generate runs as the `stylelab` command in a subprocess, since huggingface_hub reads
HF_ENDPOINT and HF_HUB_OFFLINE when it is imported.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hubserver import COUNT_WAITS, FakeHub, client_env
from stylelab.diffusion import fetch, guidance, models
from stylelab.spec.settings import GuidanceSettings

STYLELAB = str(Path(sys.executable).parent / "stylelab")
SD = "fake-org/stable-diffusion"
DDPM = "fake-org/ddpm-faces"
# What a fetch must never transfer: another format, another variant, a component the pipeline has no use for.
DECOYS = ["v1-4.ckpt", "unet/diffusion_flax_model.msgpack", "unet/diffusion_pytorch_model.bin",
          "unet/diffusion_pytorch_model.non_ema.safetensors", "vae_decoder/model.onnx",
          "safety_checker/config.json", "safety_checker/model.safetensors",
          "feature_extractor/preprocessor_config.json"]
HUB_INDEX = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
             "feature_extractor": ["transformers", "CLIPImageProcessor"],
             "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
             "scheduler": ["diffusers", "UniPCMultistepScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"]}
GEN = ["--steps", "3", "--size", "32", "--guidance-factor", "0.6", "--device", "cpu", "--seed", "0"]


def _decoy(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))


@pytest.fixture(scope="module")
def repos(tmp_path_factory, stand_in) -> dict[str, Path]:
    """A Stable Diffusion repository saved from the stand-in (fp32 and fp16 files, the hub's model_index.json,
    decoys), and a DDPM in the single-model layout with .bin weights (as google/ddpm-celebahq-256)."""
    root = tmp_path_factory.mktemp("hub")
    sd = root / "sd"
    pipe = stand_in("embedded-sd", image_size=32)
    # fp16 first, so that the configs say float32, as the hub's do (the last save writes them).
    stand_in("embedded-sd", image_size=32).to(torch.float16).save_pretrained(sd, variant="fp16")
    pipe.save_pretrained(sd)
    (sd / "model_index.json").write_text(json.dumps(HUB_INDEX, indent=2))
    for i, decoy in enumerate(DECOYS):
        _decoy(sd / decoy, 200_000 + i)
    ddpm = root / "ddpm"
    small = stand_in("embedded-ddpm", image_size=32)
    small.unet.save_pretrained(ddpm, safe_serialization=False)
    small.scheduler.save_pretrained(ddpm)
    (ddpm / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline", "scheduler": [
        "diffusers", "DDPMScheduler"], "unet": ["diffusers", "UNet2DModel"]}))
    return {SD: sd, DDPM: ddpm}


@pytest.fixture
def hub(repos):
    with FakeHub(repos, lifetime_s=300) as server:
        yield server


def run(args, env, timeout=240) -> subprocess.CompletedProcess:
    # Not in the project folder, whose config.yaml would give the defaults.
    cwd = Path(env["HF_HOME"]).parent if "HF_HOME" in env else None
    return subprocess.run([STYLELAB, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def run_counting_waits(args, env, waits: Path) -> subprocess.CompletedProcess:
    """`run`, in a process that writes its waits (hubserver.COUNT_WAITS: seconds slept, connections opened) to
    `waits` as it exits."""
    code = COUNT_WAITS + f"""
import atexit, json, sys
atexit.register(lambda: open({str(waits)!r}, "w").write(json.dumps(WAITS)))
from stylelab.cli import main
sys.exit(main(sys.argv[1:]))
"""
    cwd = Path(env["HF_HOME"]).parent
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=240,
                          cwd=cwd)


def fetch_cmd(model, manifest, *extra):
    return ["models", "fetch", "--model", model, "--manifest", str(manifest), *extra]


def weights(names) -> set[str]:
    return {n for n in names if n.endswith((".safetensors", ".bin", ".ckpt", ".msgpack", ".onnx"))}


def sent(hub, repo) -> dict[str, int]:
    return {key[len(repo) + 1:]: n for key, n in hub.bytes_sent.items() if key.startswith(repo + "/") and n}


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_a_fetch_transfers_only_what_the_pipeline_loads_into_the_cache_layout(hub, repos, tmp_path, precision):
    env = client_env(hub.url, tmp_path / "hf")
    manifest_file = tmp_path / "manifest.json"
    done = run(fetch_cmd(SD, manifest_file, "--revision", "main", "--precision", precision), env)
    assert done.returncode == 0, done.stderr
    manifest = fetch.read_manifest(manifest_file)
    listed = {f["path"] for f in manifest.files}
    suffix = ".fp16.safetensors" if precision == "fp16" else ".safetensors"
    assert weights(listed) == {"text_encoder/model" + suffix, "unet/diffusion_pytorch_model" + suffix,
                               "vae/diffusion_pytorch_model" + suffix}
    assert set(sent(hub, SD)) == listed  # every byte served belongs to a listed file, each once
    assert all(sent(hub, SD)[f["path"]] == f["size"] for f in manifest.files)
    commit = hub.commits[SD]
    assert (manifest.commit, manifest.pinned, manifest.available, manifest.source) == (commit, False, True, "hub")
    repo = tmp_path / "hf" / "hub" / "models--fake-org--stable-diffusion"
    assert (repo / "refs" / "main").read_text() == commit
    assert Path(manifest.folder) == repo / "snapshots" / commit
    for entry in manifest.files:
        cached = repo / "snapshots" / commit / entry["path"]
        assert cached.is_symlink() and cached.read_bytes() == (repos[SD] / entry["path"]).read_bytes()
        assert entry["sha256"] == fetch.file_hashes(repos[SD] / entry["path"])[0]
    assert "(revision main, not pinned)" in done.stdout

    # A second fetch asks for the file list only: no file is transferred again.
    hub.reset_counts()
    again = run(fetch_cmd(SD, tmp_path / "again.json", "--revision", "main", "--precision", precision), env)
    assert again.returncode == 0, again.stderr
    assert sent(hub, SD) == {} and json.loads((tmp_path / "again.json").read_text())["files"] == manifest.files


def _reference_image(tmp_path, pipe, picasso) -> np.ndarray:
    """The image the same weights give when built in memory, through the same sampler."""
    settings = GuidanceSettings(style=str(picasso), steps=3, size=32, guidance_factor=0.6, seed=0)
    image, _ = guidance.sample(pipe, settings, device="cpu", progress=False)
    from stylelab.engine.images import png_bytes

    (tmp_path / "reference.png").write_bytes(png_bytes(image))
    return png(tmp_path / "reference.png")


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_the_fetched_model_generates_bit_for_bit_what_its_weights_give_in_memory(hub, tmp_path, picasso, stand_in,
                                                                                  precision):
    env = client_env(hub.url, tmp_path / "hf")
    manifest_file = tmp_path / "manifest.json"
    assert run(fetch_cmd(SD, manifest_file, "--precision", precision), env).returncode == 0
    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}  # generate never asks
    out = tmp_path / "out"
    # fp16 weights on a CPU: the fp16 files, computed in fp32 (fp16 itself needs a GPU).
    done = run(["generate", "--model", SD, "--manifest", str(manifest_file), "--style", str(picasso), "--out", str(out),
                "--quiet", *GEN], offline)
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "record.json").read_text())
    assert record["model"]["commit"] == hub.commits[SD] and not record["model"]["embedded"]
    assert record["model"]["files"] == fetch.read_manifest(manifest_file).files
    pipe = stand_in("embedded-sd", image_size=32)
    if precision == "fp16":
        pipe = pipe.to(torch.float16).to(torch.float32)  # the weights as the fp16 files hold them
    assert np.array_equal(png(out / "image.png"), _reference_image(tmp_path, pipe, picasso))


@pytest.mark.slow
@pytest.mark.parametrize("revision", ["commit", "main"])
def test_a_hub_id_given_by_hand_loads_offline_what_the_fetch_selected(hub, tmp_path, picasso, revision):
    """After a fetch, `generate --model ID --revision REV` on a machine without network (HF_HUB_OFFLINE=1, as a
    compute node with the cache copied to it) loads the files the fetch selected from the cache: the image the
    manifest path makes, bit for bit, though the cache lacks the repository's other files (safety checker,
    feature extractor, other formats), and no deprecation warning of huggingface_hub's on the way."""
    env = client_env(hub.url, tmp_path / "hf")
    manifest_file = tmp_path / "manifest.json"
    assert run(fetch_cmd(SD, manifest_file), env).returncode == 0
    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    made = {}
    for how, model in (("manifest", ["--manifest", str(manifest_file)]),
                       ("hub id", ["--revision", hub.commits[SD] if revision == "commit" else revision])):
        out = tmp_path / how.replace(" ", "_")
        done = run(["generate", "--model", SD, *model, "--fallback", "error", "--style", str(picasso), "--out",
                    str(out), "--quiet", *GEN], offline)
        assert done.returncode == 0, done.stderr
        assert "local_dir_use_symlinks" not in done.stderr and "Warning" not in done.stderr, done.stderr
        made[how] = (out / "image.png").read_bytes()
        record = json.loads((out / "record.json").read_text())
        assert record["model"]["commit"] == hub.commits[SD] and not record["model"]["embedded"]
        assert record["model"]["files"] == fetch.read_manifest(manifest_file).files
    assert made["hub id"] == made["manifest"]


@pytest.mark.slow
def test_the_pixel_ddpm_in_its_single_model_layout_goes_the_same_way(hub, tmp_path, picasso, stand_in):
    env = client_env(hub.url, tmp_path / "hf")
    manifest_file = tmp_path / "manifest.json"
    done = run(fetch_cmd(DDPM, manifest_file), env)
    assert done.returncode == 0, done.stderr
    manifest = fetch.read_manifest(manifest_file)
    assert manifest.kind == "ddpm" and {f["path"] for f in manifest.files} == {
        "model_index.json", "config.json", "scheduler_config.json", "diffusion_pytorch_model.bin"}
    assert any("no safetensors" in note for note in manifest.notes)
    out = tmp_path / "out"
    done = run(["generate", "--model", DDPM, "--manifest", str(manifest_file), "--style", str(picasso), "--out",
                str(out), "--quiet", *GEN], {**env, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    reference = _reference_image(tmp_path, stand_in("embedded-ddpm", image_size=32), picasso)
    assert np.array_equal(png(out / "image.png"), reference)


def test_a_pinned_revision_is_recorded_as_pinned(hub, tmp_path):
    env = client_env(hub.url, tmp_path / "hf")
    commit = hub.commits[SD]
    done = run(fetch_cmd(SD, tmp_path / "m.json", "--revision", commit), env)
    assert done.returncode == 0, done.stderr
    manifest = fetch.read_manifest(tmp_path / "m.json")
    assert (manifest.commit, manifest.pinned) == (commit, True) and "not pinned" not in done.stdout


@pytest.mark.slow
def test_a_fetch_killed_midway_resumes_where_it_stopped(hub, repos, tmp_path):
    env = client_env(hub.url, tmp_path / "hf")
    big = "unet/diffusion_pytorch_model.safetensors"
    size = (repos[SD] / big).stat().st_size
    hub.throttle = {"path_suffix": big, "bytes_per_s": size / 8}
    proc = subprocess.Popen([STYLELAB, *fetch_cmd(SD, tmp_path / "m.json")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while hub.bytes_sent.get(f"{SD}/{big}", 0) < size / 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    hub.wait_idle()
    first = hub.bytes_sent[f"{SD}/{big}"]
    assert size / 3 <= first < size
    blobs = tmp_path / "hf" / "hub" / "models--fake-org--stable-diffusion" / "blobs"
    assert [p.name for p in blobs.glob("*.partial")] and not (tmp_path / "m.json").exists()

    hub.throttle, before = None, dict(hub.bytes_sent)
    done = run(fetch_cmd(SD, tmp_path / "m.json"), env)
    assert done.returncode == 0, done.stderr
    again = hub.bytes_sent[f"{SD}/{big}"] - before[f"{SD}/{big}"]
    ranges = [headers.get("Range") for method, path, headers in hub.requests if path.endswith(big) and method == "GET"]
    assert ranges[-1] and ranges[-1].startswith("bytes=") and int(ranges[-1][6:].rstrip("-")) > 0
    assert again < size and again + int(ranges[-1][6:].rstrip("-")) == size
    entry = next(f for f in fetch.read_manifest(tmp_path / "m.json").files if f["path"] == big)
    assert entry["sha256"] == fetch.file_hashes(repos[SD] / big)[0] and not list(blobs.glob("*.partial"))


def test_a_corrupted_cached_file_is_fetched_again_online_and_an_error_offline(hub, repos, tmp_path):
    env = client_env(hub.url, tmp_path / "hf")
    assert run(fetch_cmd(SD, tmp_path / "m.json"), env).returncode == 0
    vae = "vae/diffusion_pytorch_model.safetensors"
    cached = Path(fetch.read_manifest(tmp_path / "m.json").folder) / vae

    def corrupt():
        blob = cached.resolve()
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))

    corrupt()
    hub.reset_counts()
    done = run(fetch_cmd(SD, tmp_path / "m2.json"), env)
    assert done.returncode == 0, done.stderr
    assert sent(hub, SD) == {vae: (repos[SD] / vae).stat().st_size} and "fetching it again" in done.stderr
    assert cached.read_bytes() == (repos[SD] / vae).read_bytes()

    corrupt()
    offline = run(fetch_cmd(SD, tmp_path / "m3.json"), {**env, "HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 2 and not (tmp_path / "m3.json").exists()
    error = [line for line in offline.stderr.splitlines() if line.startswith("stylelab: error:")]
    assert len(error) == 1 and vae in error[0] and "corrupted" in error[0] and "make models" in error[0]


def test_offline_the_cached_files_are_checked_with_no_request(hub, tmp_path):
    env = client_env(hub.url, tmp_path / "hf")
    assert run(fetch_cmd(SD, tmp_path / "online.json"), env).returncode == 0
    hub.reset_counts()
    for extra in ({"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}):
        done = run(fetch_cmd(SD, tmp_path / "offline.json"), {**env, **extra})
        assert done.returncode == 0, done.stderr
        offline, online = (fetch.read_manifest(tmp_path / name) for name in ("offline.json", "online.json"))
        assert offline.source == "cache" and offline.files == online.files and offline.commit == online.commit
    assert hub.requests == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_an_unreachable_hub_gives_one_line_and_the_stand_in_or_stops(tmp_path, picasso):
    env = client_env(f"http://127.0.0.1:{_closed_port()}", tmp_path / "hf")
    done = run_counting_waits(fetch_cmd(SD, tmp_path / "m.json"), env, tmp_path / "waits.json")
    assert done.returncode == 0, done.stderr
    # It gives up at once: one try, no back-off (counted, not timed).
    assert json.loads((tmp_path / "waits.json").read_text()) == {"slept_s": 0, "connects": 1}
    warnings = [line for line in done.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and SD in warnings[0] and "cannot be reached" in warnings[0], done.stderr
    manifest = fetch.read_manifest(tmp_path / "m.json")
    assert not manifest.available and "cannot be reached" in manifest.reason
    out = tmp_path / "out"
    done = run(["generate", "--model", SD, "--manifest", str(tmp_path / "m.json"), "--style", str(picasso), "--out",
                str(out), "--quiet", *GEN], env)
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "record.json").read_text())["model"]
    assert record["embedded"] and "cannot be reached" in record["fallback_reason"]

    stopped = run(fetch_cmd(SD, tmp_path / "e.json", "--fallback", "error"), env)
    assert stopped.returncode == 2 and not (tmp_path / "e.json").exists()
    line = stopped.stderr.strip().splitlines()[-1]
    assert line.startswith("stylelab: error:") and SD in line and str(tmp_path / "hf" / "hub") in line
    assert "make models" in line


def test_an_unknown_revision_is_not_available_and_says_which(hub, tmp_path):
    done = run(fetch_cmd(SD, tmp_path / "m.json", "--revision", "no-such-branch"), client_env(hub.url, tmp_path / "hf"))
    assert done.returncode == 0, done.stderr
    manifest = fetch.read_manifest(tmp_path / "m.json")
    assert not manifest.available and "no revision no-such-branch" in manifest.reason


def test_the_defaults_come_from_the_config_files(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("diffusion: {model: embedded-ddpm, revision: main, precision: fp32}\n")
    done = run(["models", "fetch", "--configfile", str(config), "--manifest", str(tmp_path / "m.json")],
               {**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    manifest = fetch.read_manifest(tmp_path / "m.json")
    assert (manifest.model, manifest.source, manifest.kind) == ("embedded-ddpm", "embedded", "ddpm")


@pytest.mark.slow
def test_full_size_stable_diffusion_v1_in_fp16_is_fetched_loaded_and_guided_at_256_px(tmp_path, picasso):
    """SD v1's published architecture (860 M + 84 M + 123 M parameters, random weights), saved as the hub holds
    it in fp16 (with fp32 decoys beside it), fetched from the fake hub, loaded from the cache by its manifest,
    two guided steps at 256 px on the CPU: nothing in the code path is specific to the small stand-ins.
    About two minutes on 2 CPU cores (4.3 GB of disk under the test's folder)."""
    repo = tmp_path / "repo"
    pipe = models.build_sd_v1_architecture(seed=0)
    pipe.to(torch.float16).save_pretrained(repo, variant="fp16")
    del pipe
    (repo / "model_index.json").write_text(json.dumps(HUB_INDEX))
    for name in ("unet/diffusion_pytorch_model.safetensors", "v1-4.ckpt"):  # what an fp16 fetch must leave
        _decoy(repo / name, 5_000_000)
    with FakeHub({SD: repo}, lifetime_s=900) as hub:
        env = client_env(hub.url, tmp_path / "hf")
        started = time.monotonic()
        done = run(fetch_cmd(SD, tmp_path / "m.json", "--precision", "fp16"), env, timeout=900)
        fetched_s = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        manifest = fetch.read_manifest(tmp_path / "m.json")
        assert set(sent(hub, SD)) == {f["path"] for f in manifest.files} and manifest.total_bytes > 2.0e9
    out = tmp_path / "out"
    started = time.monotonic()
    done = run(["generate", "--model", SD, "--manifest", str(tmp_path / "m.json"), "--style", str(picasso), "--out",
                str(out), "--steps", "2", "--size", "256", "--guidance-factor", "0.6", "--device", "cpu",
                "--precision", "fp32", "--quiet"], {**env, "HF_HUB_OFFLINE": "1"}, timeout=1800)
    generated_s = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "record.json").read_text())
    assert record["image_size"] == [256, 256] and record["timing"]["guided_steps"] == 2
    assert not record["model"]["embedded"] and record["model"]["commit"] == manifest.commit
    assert all(v is not None for v in record["history"]["style/gram"])
    print(f"fetch {manifest.total_bytes / 1e9:.2f} GB in {fetched_s:.0f} s; load + 2 guided steps at 256 px in "
          f"{generated_s:.0f} s")


@pytest.mark.slow
def test_the_workflow_fetches_the_model_once_and_every_figure_is_of_the_real_model(hub, tmp_path):
    """`snakemake report` where the hub can be reached: the models job fetches the pinned commit, every
    generate job loads exactly its files, and the report names the model, the commit and each checksum."""
    from test_workflow import SNAKEMAKE, _tiny, copy_project

    workdir = copy_project(tmp_path / "project")
    commit = hub.commits[SD]
    overlay = tmp_path / "real-model.yaml"
    overlay.write_text(_tiny(steps=2).replace("model: embedded-sd", f"model: {SD}\n  revision: {commit}"))
    env = client_env(hub.url, tmp_path / "hf")
    run = subprocess.run([SNAKEMAKE, "--cores", "2", "--configfile", str(overlay), "--", "report"], cwd=workdir,
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    results = workdir / "results"
    manifest = fetch.read_manifest(results / "part2/model/manifest.json")
    assert (manifest.source, manifest.commit, manifest.pinned) == ("hub", commit, True)
    for record_file in (results / "part2/generated").glob("*/record.json"):
        model = json.loads(record_file.read_text())["model"]
        assert not model["embedded"] and model["commit"] == commit and model["files"] == manifest.files
    html = (results / "report/report.html").read_text()
    assert f"commit <code>{commit}</code> (pinned)" in html and "not pinned" not in html
    assert all(f["sha256"] in html for f in manifest.files)
    assert "Stand-in model" not in html
