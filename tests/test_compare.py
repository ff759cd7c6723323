"""`stylelab compare` and the results summary, on two tiny results folders made from real runs."""

import hashlib
import json
import re
import shutil

import pytest

from stylelab.engine.transfer import run_transfer, write_outputs
from stylelab.report import compare as comparing
from stylelab.report.summary import build_summary, run_summary, write_summary
from stylelab.spec.settings import feature_inversion, format_number

SMALL = dict(size=32, device="cpu", weights="caffe")
LAYERS = ("conv_1", "relu_1")


def _transfer(root, tiny_settings, loss, weight, name=None):
    settings = tiny_settings(style_loss=loss, style_weight=weight, steps=(2, 4), weights="caffe")
    name = name or f"{loss}_w{format_number(weight)}"
    write_outputs(run_transfer(settings, progress=False), root / "part1" / "transfer", name + "_s{step}.png",
                  name + ".json")


@pytest.fixture(scope="module")
def roots(tmp_path_factory, cat, tiny_settings):
    """(A, B): two results folders of two inversions and two transfers; in B, the MeanVar run named meanvar_w10
    ran at style weight 100."""
    a = tmp_path_factory.mktemp("results")
    for layer in LAYERS:
        settings = feature_inversion(str(cat), layer, steps=(3,), **SMALL)
        write_outputs(run_transfer(settings, progress=False), a / "part1" / "inversion", f"{layer}.png",
                      f"{layer}.json")
    for loss, weight in (("gram", 1e6), ("meanvar", 10.0)):
        _transfer(a, tiny_settings, loss, weight)
    b = tmp_path_factory.mktemp("other") / "results"
    shutil.copytree(a, b)
    _transfer(b, tiny_settings, "meanvar", 100.0, name="meanvar_w10")
    return a, b


def _records(root):
    return sorted(root.glob("part1/*/*.json"))


def _run(run_cli, a, b, out, *options):
    code, stdout, err = run_cli("compare", a, b, "--out", out, *options)
    assert code == 0, err
    return json.loads((out / "compare.json").read_text()), (out / "compare.html").read_text(), stdout


def test_a_changed_meanvar_weight_is_the_one_setting_that_differs(roots, run_cli, tmp_path):
    result, html, stdout = _run(run_cli, *roots, tmp_path)
    experiments = {e["experiment"]: e for e in result["experiments"]}
    assert list(experiments) == ["part1/inversion", "part1/transfer"]
    assert experiments["part1/transfer"]["settings_differ"] == {"style_weight": [10, 100]}
    assert experiments["part1/inversion"]["settings_differ"] == {}
    for e in experiments.values():
        assert len(e["pairs"]) == 2 and e["only_in_a"] == e["only_in_b"] == []
    gram, meanvar = experiments["part1/transfer"]["pairs"]
    assert gram["name"] == "gram_w1e6" and gram["images"]["same"] and set(gram["ratio"].values()) == {1.0}
    assert meanvar["settings_differ"] == {"style_weight": [10, 100]} and not meanvar["images"]["same"]
    assert meanvar["ratio"]["meanvar"] == pytest.approx(meanvar["b"]["meanvar"] / meanvar["a"]["meanvar"])
    assert experiments["part1/transfer"]["moved_most"]["run"] == "meanvar_w10"
    assert "meanvar_w10 moved most" in experiments["part1/transfer"]["finding"]
    # Each pair's two final images, and one difference picture: the other pairs are the same pixels.
    images = re.findall(r'<img src="data:image/(?:png|jpeg);base64,[^"]+" alt="([^"]*)"', html)
    assert len(images) == 2 * 4 + 1 and sum(alt.startswith("|A - B|") for alt in images) == 1
    assert "B: part1/transfer/meanvar_w10_s4.png" in images and html.count("identical pixels") >= 3
    assert "<th>style_weight</th><td>10</td><td>100</td>" in html
    line = next(line for line in stdout.splitlines() if line.startswith("part1/transfer"))
    assert line.split()[1:4] == ["2", "0", "0"] and "style_weight" in line and "of meanvar_w10 x" in line


def test_a_folder_against_itself_differs_in_nothing(roots, run_cli, tmp_path):
    a = roots[0]
    result, html, _ = _run(run_cli, a, a, tmp_path / "same")
    for e in result["experiments"]:
        assert e["settings_differ"] == {} and e["moved_most"] is None and "no result metric moved" in e["finding"]
        ratios = [r for pair in e["pairs"] for r in pair["ratio"].values()]
        assert ratios and {r for r in ratios if r is not None} == {1.0}
    assert "<img" in html and 'alt="|A - B|' not in html
    # --all lists every setting; a setting the runs differ in shows each run's value.
    result, _, _ = _run(run_cli, a, a, tmp_path / "all", "--all")
    transfer = result["experiments"][1]["settings_differ"]
    assert transfer["style_weight"] == [{"gram_w1e6": 1e6, "meanvar_w10": 10}] * 2
    assert transfer["steps"] == [[2, 4], [2, 4]] and "max_pixels" in transfer


def test_mistakes_are_one_line_and_write_nothing(roots, run_cli, tmp_path):
    a = roots[0]
    (tmp_path / "empty").mkdir()
    only_transfers, only_inversions = tmp_path / "t", tmp_path / "i"
    shutil.copytree(a / "part1" / "transfer", only_transfers / "part1" / "transfer")
    shutil.copytree(a / "part1" / "inversion", only_inversions / "part1" / "inversion")
    for b, message in ((tmp_path / "missing", "does not exist"), (tmp_path / "empty", "holds no run records"),
                       (only_inversions, "no run in common")):
        code, _, err = run_cli("compare", only_transfers, b, "--out", tmp_path / "out")
        assert code == 2 and err.count("\n") == 1 and err.startswith("stylelab: error:") and message in err, err
    broken = tmp_path / "broken"
    (broken / "report").mkdir(parents=True)
    (broken / "report" / "summary.json").write_text('{"summary_version": 1, "runs": [1]}')
    code, _, err = run_cli("compare", only_transfers, broken, "--out", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and "summary.json is not a summary" in err, err
    assert not (tmp_path / "out").exists()


def test_an_older_record_still_loads_and_pairs(roots, tmp_path):
    a, b = roots
    old = tmp_path / "old"
    shutil.copytree(b, old)
    for path in _records(old):
        record = json.loads(path.read_text())
        del record["schema_version"]
        path.write_text(json.dumps(record))
    run = run_summary(old / "part1" / "inversion" / "conv_1.json", old)
    assert (run["experiment"], run["name"], run["kind"]) == ("part1/inversion", "conv_1", "inversion")
    assert comparing.compare(b, old) == {**comparing.compare(b, b), "b": str(old)}


def test_a_summary_gives_the_same_pairs_as_the_records(roots, tmp_path):
    a, b = roots
    copy = tmp_path / "results"
    shutil.copytree(b, copy)
    scanned = comparing.compare(a, copy)
    write_summary(build_summary(_records(copy), copy), copy / "report" / "summary.json")
    for path in _records(copy):
        path.unlink()  # from now on only the summary says what the runs were
    assert comparing.compare(a, copy) == scanned


def test_scanning_skips_other_json_and_nested_results_folders(roots, tmp_path):
    a = roots[0]
    outer = tmp_path / "results"
    shutil.copytree(a, outer)
    shutil.copytree(a, outer / "preview")
    (outer / "part2" / "model").mkdir(parents=True)
    (outer / "part2" / "model" / "manifest.json").write_text('{"model": "x"}')
    (outer / "logs").mkdir()
    shutil.copy(_records(a)[0], outer / "logs" / "stray.json")
    assert comparing.load_side(outer).keys() == comparing.load_side(a).keys()


def test_what_records_say_is_escaped(roots, tmp_path):
    a = roots[0]
    hostile = tmp_path / "results"
    shutil.copytree(a, hostile)
    path = hostile / "part1" / "inversion" / "conv_1.json"
    record = json.loads(path.read_text())
    record["settings"]["content"] = "<script>alert(1)</script>.png"
    path.write_text(json.dumps(record))
    comparing.write_compare(a, hostile, tmp_path / "out")
    html = (tmp_path / "out" / "compare.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;.png" in html


def test_report_writes_a_summary_of_its_records(roots, run_cli, tmp_path):
    root = tmp_path / "results"
    shutil.copytree(roots[0], root)
    inversions, transfers = sorted(root.glob("part1/inversion/*.json")), sorted(root.glob("part1/transfer/*.json"))
    manifest = {"sections": [{"id": "inversion", "figures": [], "records": list(map(str, inversions))},
                             {"id": "transfer", "figures": [], "records": list(map(str, transfers))}]}
    summary = root / "report" / "summary.json"
    code, _, err = run_cli("report", "--manifest", json.dumps(manifest), "--html", root / "report" / "report.html",
                           "--summary", summary)
    assert code == 0, err
    runs = json.loads(summary.read_text())["runs"]
    assert [(run["experiment"], run["name"]) for run in runs] == [
        ("part1/inversion", "conv_1"), ("part1/inversion", "relu_1"),
        ("part1/transfer", "gram_w1e6"), ("part1/transfer", "meanvar_w10")]
    gram = runs[2]
    record = json.loads(transfers[0].read_text())
    assert gram["record"] == "part1/transfer/gram_w1e6.json" and gram["settings"]["style_weight"] == 1e6
    assert gram["metrics"]["final_objective"] == record["final_losses"]["total"]
    assert gram["metrics"]["gram"] == record["images"]["4"]["distances"]["gram"]
    assert gram["images"] == {f"part1/transfer/gram_w1e6_s{step}.png": hashlib.sha256(
        (root / f"part1/transfer/gram_w1e6_s{step}.png").read_bytes()).hexdigest() for step in (2, 4)}
    assert gram["final_image"] == "part1/transfer/gram_w1e6_s4.png" and gram["device"] == "cpu"


def test_a_run_renamed_by_its_changed_weight_still_pairs(roots, run_cli, tmp_path):
    """The workflow names a transfer by its weight, so a changed weight renames it (meanvar_w10 in A,
    meanvar_w100 in B): runs of one experiment whose settings differ in at most two keys pair all the same."""
    a, b = roots
    renamed = tmp_path / "renamed" / "results"
    shutil.copytree(b, renamed)
    for path in (renamed / "part1" / "transfer").glob("meanvar_w10*"):
        path.rename(path.with_name(path.name.replace("meanvar_w10", "meanvar_w100")))
    record = renamed / "part1" / "transfer" / "meanvar_w100.json"
    data = json.loads(record.read_text())
    data["images"] = {step: {**entry, "file": entry["file"].replace("w10_", "w100_")}
                      for step, entry in data["images"].items()}
    record.write_text(json.dumps(data))
    result, html, _ = _run(run_cli, a, renamed, tmp_path / "out")
    transfer = next(e for e in result["experiments"] if e["experiment"] == "part1/transfer")
    assert transfer["only_in_a"] == transfer["only_in_b"] == []
    assert transfer["settings_differ"] == {"style_weight": [10, 100]}
    pair = next(p for p in transfer["pairs"] if p["name"] == "meanvar_w100")
    assert pair["renamed_from"] == "meanvar_w10" and "meanvar_w100 (in A: meanvar_w10)" in html
