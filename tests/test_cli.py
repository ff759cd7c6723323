"""The `stylelab` command as a user (and the workflow) calls it."""

import argparse
import subprocess
import sys

import pytest

from stylelab.cli import build_parser


def _commands(parser: argparse.ArgumentParser, words: tuple = ()):
    """Every command of the parser, nested ones included, as the words that name it: (), ("transfer",), ...,
    ("models", "fetch")."""
    yield words
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*words, name))


def test_every_command_has_help(run_cli, capsys):
    """`stylelab [COMMAND...] --help` prints that command's usage and exits 0, for every command there is (a
    help text that fails to format, e.g. a stray % in an option's help, fails here)."""
    commands = list(_commands(build_parser()))
    assert ("transfer",) in commands and ("models", "fetch") in commands
    for words in commands:
        with pytest.raises(SystemExit) as exc:
            run_cli(*words, "--help")
        assert exc.value.code == 0, words
        assert capsys.readouterr().out.startswith(" ".join(("usage: stylelab", *words))), words


def test_the_interruption_options_reach_the_checkpoint_policy(tmp_path):
    """--fresh starts the run over and --checkpoint-every sets the interval; without them a run resumes, saving
    at the default interval. (Resuming and --fresh themselves: tests/test_resume.py.)"""
    from stylelab.cli import _policy
    from stylelab.run.stopping import DEFAULT_EVERY, Interval

    base = ["transfer", "--content", "c.png", "--out", str(tmp_path)]
    default = _policy(build_parser().parse_args(base))
    given = _policy(build_parser().parse_args([*base, "--fresh", "--checkpoint-every", "5"]))
    assert default.resume and default.every == Interval.parse(DEFAULT_EVERY)
    assert not given.resume and given.every == Interval(steps=5)


def test_two_runs_with_one_seed_give_identical_files(run_cli, cat, picasso, tmp_path):
    outs = []
    for name in ("a", "b"):
        code, _, err = run_cli("transfer", "--content", cat, "--style", picasso, "--size", "32", "--steps", "4", "8",
                               "--init", "noise", "--seed", "3", "--device", "cpu", "--quiet", "--out", tmp_path / name)
        assert code == 0, err
        outs.append(tmp_path / name)
    import json
    for png in ("step_4.png", "step_8.png"):
        assert (outs[0] / png).read_bytes() == (outs[1] / png).read_bytes()
    ra, rb = (json.loads((o / "record.json").read_text()) for o in outs)
    assert ra["history"]["total"] == rb["history"]["total"] and ra["final_losses"] == rb["final_losses"]


def test_invert_and_texture_short_forms(run_cli, cat, picasso, tmp_path):
    code, _, err = run_cli("invert", "--content", cat, "--layer", "conv3_1", "--size", "32", "--steps", "3",
                           "--device", "cpu", "--quiet", "--out", tmp_path / "inv")
    assert code == 0, err
    assert (tmp_path / "inv" / "step_3.png").is_file() and (tmp_path / "inv" / "record.json").is_file()
    code, _, err = run_cli("texture", "--style", picasso, "--layer", "pool_8", "--size", "32", "--steps", "3",
                           "--device", "cpu", "--quiet", "--out", tmp_path / "tex")
    assert code == 0, err
    assert (tmp_path / "tex" / "step_3.png").is_file()


# Bad images, layers and numbers, each with its message: tests/test_bad_inputs.py.


def test_a_command_line_mistake_is_one_line_too(run_cli, capsys, cat, tmp_path):
    with pytest.raises(SystemExit) as exc:
        run_cli("invert", "--content", cat, "--layer", "conv_1", "--steps", "0", "--out", tmp_path / "o")
    assert exc.value.code == 2
    assert capsys.readouterr().err == ("stylelab: error: argument --steps: must be a whole number >= 1, got 0 "
                                       "(see `stylelab invert --help`)\n")


def test_a_control_character_in_a_value_cannot_split_the_message(run_cli, picasso, tmp_path):
    code, _, err = run_cli("transfer", "--content", tmp_path / "a\nb.png", "--style", picasso, "--out", tmp_path / "o")
    assert code == 2 and err.count("\n") == 1 and "a\\nb.png" in err


@pytest.mark.parametrize("where", ["before", "after"])
def test_the_pixel_limit_goes_before_or_after_the_command(run_cli, cat, tmp_path, where):
    limit = ["--max-pixels", "1e5"]
    args = ["invert", "--content", cat, "--layer", "conv_1", "--out", tmp_path / "o"]
    code, _, err = run_cli(*(limit + args if where == "before" else args + limit))
    assert code == 2 and "above the limit of 0.1 megapixels" in err


def test_console_script_is_installed():
    done = subprocess.run([sys.executable, "-m", "stylelab", "layers"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert len(lines) == 37 and lines[10].split() == ["conv_5", "conv3_1"]


def test_figure_choices_are_the_figures_module_draws(run_cli, tmp_path, cat):
    from stylelab.cli import parser
    from stylelab.report import figures
    assert set(parser.FIGURE_CHOICES) == set(figures.FIGURES) | set(figures.SWEEP_FIGURES)
    # The inputs figure from image files alone; --content/--style on another figure is one clear line.
    out = tmp_path / "inputs.png"
    assert run_cli("figure", "inputs", "--content", cat, "--out", out)[0] == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    code, _, err = run_cli("figure", "curves", "--content", cat, "--out", tmp_path / "c.png", tmp_path / "r.json")
    assert code == 2 and "inputs figure only" in err
    assert not (tmp_path / "c.png").exists()
