"""The `stylelab` command as a user (and the workflow) calls it."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("sub", ["transfer", "invert", "texture", "layers"])
def test_help_of_each_command(run_cli, sub):
    with pytest.raises(SystemExit) as exc:
        run_cli(sub, "--help")
    assert exc.value.code == 0


def test_transfer_help_lists_every_option(capsys):
    from stylelab.cli import main

    with pytest.raises(SystemExit):
        main(["transfer", "--help"])
    text = capsys.readouterr().out
    for flag in ("--content", "--style", "--out", "--size", "--steps", "--style-loss", "--style-weight",
                 "--content-weight", "--content-layers", "--style-layers", "--init", "--seed", "--weights",
                 "--device", "--optimizer"):
        assert flag in text, flag


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


def test_unreadable_image_one_clear_error_and_no_output(run_cli, picasso, tmp_path):
    bad = tmp_path / "cat.png"
    bad.write_text("not a picture")
    out = tmp_path / "out"
    code, stdout, err = run_cli("transfer", "--content", bad, "--style", picasso, "--size", "32", "--steps", "2",
                                "--device", "cpu", "--out", out)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("stylelab: error:") and str(bad) in lines[0]
    assert "Traceback" not in err
    assert not out.exists()


def test_unknown_layer_on_the_command_line(run_cli, cat, tmp_path):
    code, _, err = run_cli("invert", "--content", cat, "--layer", "pool_1", "--out", tmp_path / "o")
    assert code == 2 and "pool_2, pool_4, pool_8, pool_12, pool_16" in err
    assert not (tmp_path / "o").exists()


def test_bad_number_is_an_argparse_error(run_cli, cat, tmp_path):
    with pytest.raises(SystemExit) as exc:
        run_cli("invert", "--content", cat, "--layer", "conv_1", "--steps", "0", "--out", tmp_path / "o")
    assert exc.value.code == 2


def test_console_script_is_installed():
    done = subprocess.run([sys.executable, "-m", "stylelab", "layers"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert len(lines) == 37 and lines[10].split() == ["conv_5", "conv3_1"]
