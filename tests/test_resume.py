"""Interrupted runs resume from their checkpoint and end bit for bit where an uninterrupted run ends.

In-process tests interrupt a run by raising from the checkpoint's schedule at a chosen step (the state on
disk is then what a kill at that moment leaves). One test kills a real `stylelab transfer` process with
SIGKILL, restarts it, stops it again with SIGTERM, and compares the final PNG with an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from stylelab.run import checkpoint, runtime
from stylelab.engine import transfer
from stylelab.run.checkpoint import Checkpoint, CheckpointPolicy
from stylelab.run.stopping import Interval
from stylelab.engine.transfer import run_transfer


class Interrupted(Exception):
    """Stands for a kill: raised in the middle of a run, after some checkpoints were saved."""


@pytest.fixture
def interrupt_at(monkeypatch):
    """interrupt_at(step): the next run dies when it reaches `step` (once); later runs go through."""
    original = Checkpoint.due
    target: dict = {}

    def due(self, step):
        if target.get("step") == step:
            target.clear()
            raise Interrupted
        return original(self, step)

    monkeypatch.setattr(Checkpoint, "due", due)
    return lambda step: target.update(step=step)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Every checkpoint of these tests goes to a temporary cache, never the project's."""
    root = tmp_path / "cache"
    monkeypatch.setenv(checkpoint.CACHE_ENV, str(root))
    return root


def _state_files(root: Path) -> list[Path]:
    return sorted(root.rglob(checkpoint.STATE_FILE))


@pytest.mark.parametrize("text, every", [
    ("50", Interval(steps=50)), ("90s", Interval(seconds=90)), ("5m", Interval(seconds=300)),
    ("1.5h", Interval(seconds=5400)), ("0", Interval()), ("0s", Interval()),
])
def test_checkpoint_interval_is_steps_or_time(text, every):
    assert Interval.parse(text) == every


@pytest.mark.parametrize("text", ["soon", "-5", "2.5", "5 min", ""])
def test_checkpoint_interval_refuses_anything_else(text):
    with pytest.raises(ValueError):
        Interval.parse(text)


def test_a_run_is_keyed_by_what_decides_its_result(tmp_path):
    policy = CheckpointPolicy(root=tmp_path, scope={"out": "/results/a"})
    base = {"kind": "transfer", "settings": {"seed": 0, "size": 32}, "inputs": {"content": "ab12"}}
    folder = policy.open(base).folder
    assert policy.open(json.loads(json.dumps(base))).folder == folder  # same run, same folder
    assert folder.parent == tmp_path / "checkpoints" and folder.name.startswith("transfer-")
    changed = [{**base, "settings": {"seed": 1, "size": 32}},  # a setting
               {**base, "inputs": {"content": "cd34"}}]  # the bytes of an input image
    for identity in changed:
        assert policy.open(identity).folder != folder
    assert CheckpointPolicy(root=tmp_path, scope={"out": "/results/b"}).open(base).folder != folder


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_interrupted_run_resumes_bit_for_bit(tiny_settings, cache, interrupt_at, optimizer):
    settings = tiny_settings(steps=(10, 24), init="noise", optimizer=optimizer)
    reference = run_transfer(settings, progress=False)
    policy = CheckpointPolicy(every=Interval(steps=4))
    interrupt_at(18)  # after the checkpoint of step 16, and after the 10-step image was kept
    with pytest.raises(Interrupted):
        run_transfer(settings, progress=False, checkpoints=policy)
    (state_file,) = _state_files(cache)
    state = torch.load(state_file, weights_only=True)
    assert state["step"] == 16 and 10 in state["task"]["snapshots"]
    if optimizer == "lbfgs":
        assert state["task"]["optimizer"]["state"][0]["count"] > 0  # the curvature history travels along

    resumed = run_transfer(settings, progress=False, checkpoints=policy)
    assert resumed.record.resumed_from == [16] and reference.record.resumed_from == []
    for step in (10, 24):
        assert torch.equal(resumed.images[step], reference.images[step]), step
    for key in reference.record.history:
        if key != "time_s":
            assert resumed.record.history[key] == reference.record.history[key], key
    assert resumed.record.final_losses == reference.record.final_losses
    assert _state_files(cache) == []  # a finished run removes its checkpoint


def test_fresh_ignores_an_old_checkpoint(tiny_settings, cache, interrupt_at):
    settings = tiny_settings(steps=(12,), init="noise", optimizer="adam")
    interrupt_at(9)
    with pytest.raises(Interrupted):
        run_transfer(settings, progress=False, checkpoints=CheckpointPolicy(every=Interval(steps=4)))
    assert len(_state_files(cache)) == 1
    fresh = run_transfer(settings, progress=False,
                         checkpoints=CheckpointPolicy(every=Interval(steps=4), resume=False))
    assert fresh.record.resumed_from == [] and _state_files(cache) == []


def test_an_unreadable_checkpoint_is_set_aside(tmp_path, caplog):
    store = CheckpointPolicy(root=tmp_path).open({"kind": "transfer"})
    store.folder.mkdir(parents=True)
    store.path.write_bytes(b"half a checkpoint")
    assert store.load() is None
    assert "cannot be read" in caplog.text and not store.folder.exists()


def test_an_unwritable_cache_is_a_warning_not_a_failure(tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    store = CheckpointPolicy(root=blocker).open({"kind": "transfer"})
    store.save(5, {"image": torch.zeros(3)})
    store.save(10, {"image": torch.zeros(3)})
    assert "goes on without checkpoints" in caplog.text and caplog.text.count("cannot write") == 1
    assert store.saved_step is None


# UniPC (Stable Diffusion) keeps its last predictions between steps and DDPM draws fresh noise at every
# step: a resume that lost either would not give the same image.
@pytest.mark.parametrize("name", ["embedded-sd", "embedded-ddpm"])
def test_interrupted_generation_resumes_bit_for_bit(stand_in, picasso, cache, interrupt_at, name):
    from stylelab.diffusion.guidance import sample
    from stylelab.spec.settings import GuidanceSettings

    model = stand_in(name)

    def run(policy=None):
        settings = GuidanceSettings(prompt="a cat", steps=6, seed=3, size=16, style=str(picasso),
                                    guidance_factor=0.6, guidance_end=0.5)
        return sample(model, settings, device="cpu", progress=False, checkpoints=policy)

    reference, ref_record = run()
    policy = CheckpointPolicy(every=Interval(steps=2))
    interrupt_at(5)
    with pytest.raises(Interrupted):
        run(policy)
    assert torch.load(_state_files(cache)[0], weights_only=True)["step"] == 4
    image, record = run(policy)
    assert record.resumed_from == [4]
    assert torch.equal(image, reference)
    assert record.history["style/gram"] == ref_record.history["style/gram"]
    assert record.history["guided"] == ref_record.history["guided"] == [True] * 3 + [False] * 3
    assert _state_files(cache) == []


def nan_after(n: int):
    """A replacement for Objective.__call__ whose loss turns NaN from the n-th optimiser evaluation on."""
    original, calls = transfer.Objective.__call__, []

    def call(objective, features, image=None):
        total, parts = original(objective, features, image)
        if torch.is_grad_enabled():  # the optimiser's evaluations, not the scoring of saved images
            calls.append(1)
            if len(calls) >= n:
                total = total * float("nan")
        return total, parts

    return call


def test_a_nan_loss_names_the_step_writes_nothing_and_keeps_the_last_good_checkpoint(
        run_cli, cat, picasso, cache, tmp_path, monkeypatch):
    monkeypatch.setattr(transfer.Objective, "__call__", nan_after(14))
    out = tmp_path / "out"
    code, _, err = run_cli("transfer", "--content", cat, "--style", picasso, "--size", "32", "--steps", "20",
                           "--device", "cpu", "--weights", "random", "--checkpoint-every", "5", "--quiet", "--out", out)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "the loss became nan at step 14" in err and "style weight (1e+06)" in err and "learning rate (1)" in err
    assert "last good checkpoint (step 10)" in err
    assert not out.exists()
    (state_file,) = _state_files(cache)
    assert torch.load(state_file, weights_only=True)["step"] == 10


def test_out_of_memory_is_one_message_with_the_size_and_the_memory(run_cli, cat, picasso, tmp_path, monkeypatch):
    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(transfer.Objective, "__call__", exhausted)
    code, _, err = run_cli("transfer", "--content", cat, "--style", picasso, "--size", "32", "--steps", "3",
                           "--device", "cpu", "--weights", "random", "--quiet", "--out", tmp_path / "out")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "out of CPU memory for a 48 x 32 image" in err and "GiB of memory in all" in err
    assert "Lower --size" in err and not (tmp_path / "out").exists()


def test_gpu_memory_report_names_the_card_and_its_memory(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (0.5 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 79 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100")
    report = runtime.memory_report(torch.device("cuda", 0))
    assert report == "NVIDIA H100: 80.0 GiB in all, 0.5 GiB free, 79.0 GiB held by PyTorch"


def test_record_states_the_determinism_settings(tiny_settings):
    record = run_transfer(tiny_settings(steps=(2,), init="noise"), progress=False).record
    assert record.determinism["threads"] == torch.get_num_threads()
    assert record.determinism["deterministic_algorithms"] is torch.are_deterministic_algorithms_enabled()


def test_cuda_determinism_settings_are_switched_on_and_recorded(monkeypatch):
    """The CUDA branch, run on any machine: it only sets flags, and this test puts them back."""
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")  # so that monkeypatch restores whatever was there
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        settings = runtime.configure_determinism(torch.device("cuda"))
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2:]
    assert settings["deterministic_algorithms"] and settings["deterministic_algorithms_warn_only"]
    assert settings["cudnn_deterministic"] and not settings["cudnn_benchmark"]
    assert settings["cublas_workspace_config"] == ":4096:8"
    assert {"tf32_matmul", "tf32_cudnn", "threads"} <= set(settings)


def test_two_generate_commands_give_identical_files(run_cli, picasso, tmp_path):
    outs = [tmp_path / name for name in ("a", "b")]
    for out in outs:
        code, _, err = run_cli("generate", "--model", "embedded-ddpm", "--steps", "4", "--size", "16", "--style",
                               picasso, "--guidance-factor", "0.6", "--seed", "5", "--device", "cpu", "--quiet",
                               "--out", out)
        assert code == 0, err
    assert (outs[0] / "image.png").read_bytes() == (outs[1] / "image.png").read_bytes()
    a, b = (json.loads((out / "record.json").read_text()) for out in outs)
    assert a["history"]["style/gram"] == b["history"]["style/gram"] and a["style_distances"] == b["style_distances"]


# ------------------------------------------------------------------------------ a real process, killed


def _wait_for(log: Path, text: str, process: subprocess.Popen, timeout: float = 120) -> str:
    """Wait until the process's log has a line containing `text`; return that line."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for line in log.read_text().splitlines():
            if text in line:
                return line
        if process.poll() is not None:
            raise AssertionError(f"the run ended (status {process.returncode}) before '{text}':\n{log.read_text()}")
        time.sleep(0.02)
    process.kill()
    raise AssertionError(f"no '{text}' within {timeout} s:\n{log.read_text()}")


@pytest.mark.slow
def test_a_killed_transfer_command_resumes_to_the_same_png(run_cli, cat, picasso, tmp_path, cache):
    args = ["transfer", "--content", str(cat), "--style", str(picasso), "--size", "32", "--steps", "20", "50",
            "--init", "noise", "--device", "cpu", "--checkpoint-every", "8", "--quiet"]
    code, _, err = run_cli(*args, "--out", tmp_path / "reference")
    assert code == 0, err

    out = tmp_path / "interrupted"
    command = [sys.executable, "-m", "stylelab", *args, "--out", str(out)]
    # The same number of threads as this process, whose run is the reference: on a CPU the bits depend on it.
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}

    def start(log: Path) -> subprocess.Popen:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=env)

    first = start(tmp_path / "first.log")
    _wait_for(tmp_path / "first.log", "checkpoint saved at step 16", first)
    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=60) == -signal.SIGKILL
    assert not out.exists()  # nothing half-written: outputs only come at the end

    # Started again, it resumes; stopped by SIGTERM (as a batch scheduler pre-empts), it saves and exits.
    second = start(tmp_path / "second.log")
    resumed = _wait_for(tmp_path / "second.log", "from its checkpoint at step", second)
    assert int(resumed.split("at step ")[1].split()[0]) >= 16
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=60) == 128 + signal.SIGTERM
    stopped = (tmp_path / "second.log").read_text()
    assert "stylelab: stopped by SIGTERM after step" in stopped and "Traceback" not in stopped
    stop_step = int(stopped.split("stopped by SIGTERM after step ")[1].split()[0])
    assert torch.load(_state_files(cache)[0], weights_only=True)["step"] == stop_step

    # The last start runs in this process (one process start less), with the same arguments.
    code, _, err = run_cli(*args, "--out", out)
    assert code == 0, err
    for png in ("step_20.png", "step_50.png"):
        assert (out / png).read_bytes() == (tmp_path / "reference" / png).read_bytes(), png
    record, reference = (json.loads((d / "record.json").read_text()) for d in (out, tmp_path / "reference"))
    assert record["history"]["total"] == reference["history"]["total"]
    assert len(record["resumed_from"]) == 2 and record["resumed_from"][1] == stop_step  # killed, then stopped
    assert _state_files(cache) == []
