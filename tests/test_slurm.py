"""The workflow on Slurm: the Slurm profile (workflow/profiles/slurm) against a real one-node Slurm cluster.

workflow/scripts/local-slurm.sh brings up slurmctld, slurmd and munged on this machine with one stand-in GPU.
The preview configuration then runs twice in temporary copies of the project: through Slurm, with the
command docs/clusters.md gives for it, and locally, with the README's local preview command and the same
configuration. Every job must have been a Slurm job, every experiment one with a GPU request that Slurm
granted, and the records and images must be the same as the local run's.

Bringing the cluster up needs root (it installs Debian's Slurm packages and writes /etc/slurm); where that
is impossible the cluster tests are skipped, with the reason in pytest's summary. The profile's dry run
needs no cluster and always runs. About 10 to 25 minutes in all on 2 cores (the preview twice, the
experiments one at a time on the one GPU), part of CI.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from test_workflow import PREVIEW, PREVIEW_ROOT, ROOT, SNAKEMAKE, copy_project, job_counts, snakemake

SCRIPT = ROOT / "workflow/scripts/local-slurm.sh"
CANNOT_RUN = 3  # local-slurm.sh's exit status where this machine cannot run a cluster
EXPERIMENT_RULES = {"inversion", "texture", "transfer", "generate", "transfer_on_generated", "part3_transfer"}


def is_experiment(rule: str) -> bool:
    """An experiment's rule, an experiment's runs in one job (<group>_layers, <experiment>_runs, sweep_<sweep>_runs,
    as the preview has them) too, and a sweep's point (sweep_<sweep>_<point>); figures (<name>_figure, <part>_figures,
    sweep_<sweep>_grid and _metrics) are none."""
    figure = rule.endswith(("_figure", "_figures", "_grid", "_metrics"))
    return rule in EXPERIMENT_RULES or rule.endswith(("_layers", "_runs")) or rule.startswith("sweep_") and not figure
# Each experiment asks for a GPU and the node has one, so they run one after another: 11 to 14 minutes for
# the preview on 2 cores shared with other work (7 to 11 locally). Past this, Snakemake is stopped: it can
# also wait forever, for instance on a status query that never sees a job finish.
SLURM_TIMEOUT_S = 1800
# Both the Slurm and the local preview take this overlay: Part 3 cut to one run per experiment.
PART3_SMALL = ("part3:\n  colour: {modes: [luminance], runs: [{style_loss: gram, style_weight: 1.0e+6}]}\n"
               "  scales: {runs: [{name: coarse_to_fine, scales: [32, 64], scale_steps: [10], steps: 10}]}\n"
               "  blend: {weights: [[0.5, 0.5]]}\n")
LOCAL_TIMEOUT_S = 1200


CLUSTERS_PAGE = ROOT / "docs" / "clusters.md"


def documented_slurm_commands() -> list[list[str]]:
    """The snakemake commands in docs/clusters.md's section "Running on a Slurm cluster", as argument lists."""
    page = CLUSTERS_PAGE.read_text()
    match = re.search(r"^## Running on a Slurm cluster\n(.*?)(?=^## |\Z)", page, flags=re.S | re.M)
    assert match, "docs/clusters.md has no section '## Running on a Slurm cluster'"
    lines = re.findall(r"^\.venv/bin/snakemake .*$", match.group(1), flags=re.M)
    return [shlex.split(line, comments=True) for line in lines]


def documented_command(*required: str) -> list[str]:
    """The one documented Slurm command with each of the `required` pieces of command line."""
    found = [args for args in documented_slurm_commands() if all(piece in " ".join(args) for piece in required)]
    assert len(found) == 1, f"docs/clusters.md: expected one Slurm command with {' '.join(required)!r}, found {found}"
    return [SNAKEMAKE, *found[0][1:]]


def slurm_preview_command() -> list[str]:
    """The documented command for the preview through Slurm, on a cluster without an accounting database."""
    return documented_command("--profile workflow/profiles/slurm", "--slurm-status-command squeue",
                          "--configfile", PREVIEW, "--config device=auto", "-- report")


# ------------------------------------------------------------------------------------- no cluster needed


def test_documented_commands_use_the_profile_and_run_report():
    commands = documented_slurm_commands()
    assert commands, "docs/clusters.md: no snakemake command in the Slurm section"
    for args in commands:
        assert args[1:5] == ["--profile", "workflow/profiles/slurm", "--workflow-profile", "none"], args
        assert args[-2:] == ["--", "report"], args
    # The plain command, with no test-only option, is there too.
    assert [".venv/bin/snakemake", "--profile", "workflow/profiles/slurm", "--workflow-profile", "none", "--",
            "report"] in commands


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("slurm-dry"))


def _job_resources(output: str) -> dict[str, list[dict[str, str]]]:
    """{rule: [resources of each of its jobs]} from a dry run's job listing."""
    jobs: dict[str, list[dict[str, str]]] = {}
    for rule, resources in re.findall(r"^rule (\w+):\n(?: {4}.*\n)*? {4}resources: (.*)$", output, flags=re.M):
        jobs.setdefault(rule, []).append(dict(item.split("=", 1) for item in resources.split(", ")))
    return jobs


def test_profile_gives_experiments_a_gpu_and_the_gpu_partition(project):
    run = snakemake(project, *slurm_preview_command()[1:-2], "-n", "--", "report")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "Using profile workflow/profiles/slurm for" in run.stderr  # and not the default profile as well
    jobs = _job_resources(run.stdout)
    assert set(jobs) == set(job_counts(run.stdout)), "every job of the dry run lists its resources"
    # The model fetch runs where Snakemake runs, not through sbatch (the real-Slurm test below): its gpu slot
    # only keeps a one-GPU machine from starting an experiment before the model is known.
    assert [resources.get("gpu") for resources in jobs.pop("models")] == ["1"]
    for rule, listed in jobs.items():
        for resources in listed:
            experiment = is_experiment(rule)
            assert resources.get("gpu") == ("1" if experiment else None), (rule, resources)
            assert resources["slurm_partition"] == ("gpu" if experiment else "cpu"), (rule, resources)
            assert resources["runtime"] == ("120" if experiment else "30"), (rule, resources)
            assert resources["cpus_per_task"] == "1", (rule, resources)  # the preview's jobs.threads
            assert int(resources["mem_mb"]) > 0

    # The preview as it is (device: cpu) asks for no GPU: nothing would use it.
    args = [arg for arg in slurm_preview_command()[1:-2] if arg not in ("--config", "device=auto")]
    run = snakemake(project, *args, "-n", "--", "report")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert all(resources.get("gpu") == "0" for rule, listed in _job_resources(run.stdout).items() if is_experiment(rule)
               for resources in listed)


# ---------------------------------------------------------------- against a real Slurm (about 10 to 25 min)


@pytest.fixture(scope="module")
def slurm_cluster():
    """A one-node Slurm cluster on this machine for this module's tests; always brought down afterwards."""
    try:
        start = time.time()
        up = subprocess.run([str(SCRIPT), "up"], capture_output=True, text=True, timeout=600)
        if up.returncode == CANNOT_RUN:
            pytest.skip(f"no local Slurm cluster, so the Slurm profile is not tested here: {up.stderr.strip()}")
        assert up.returncode == 0, f"local-slurm.sh up failed:\n{up.stdout}{up.stderr}"
        print(f"\nlocal Slurm up in {time.time() - start:.0f} s: {up.stdout.strip()}")
        yield
    finally:
        down = subprocess.run([str(SCRIPT), "down"], capture_output=True, text=True, timeout=120)
        assert down.returncode in (0, CANNOT_RUN), f"local-slurm.sh down failed:\n{down.stdout}{down.stderr}"


def run_bounded(args: list[str], workdir: Path, log: Path, timeout: int) -> tuple[int, float, str]:
    """Run a command with its output in `log`; past `timeout` seconds stop it and everything it started.

    SIGINT first, which Snakemake answers by cancelling its Slurm jobs (SIGTERM would let them finish), then
    SIGKILL for the whole process group. Returns (exit status, seconds, output).
    """
    start = time.time()
    with log.open("w") as out:
        process = subprocess.Popen(args, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for sig, grace in ((signal.SIGINT, 60), (signal.SIGKILL, None)):
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break  # the whole group has exited
                try:
                    process.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
            pytest.fail(f"{shlex.join(args)} still running after {timeout} s; stopped. Last output:\n"
                        f"{log.read_text()[-5000:]}")
    return process.returncode, time.time() - start, log.read_text()


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    """The preview through Slurm with the documented command (--verbose: the log then shows each sbatch call)."""
    workdir = copy_project(tmp_path_factory.mktemp("slurm-preview"))
    command = slurm_preview_command()
    command[-2:-2] = ["--verbose"]
    # Part 3 cut to one run per experiment: each experiment job queues for the one GPU, and Part 3's own runs
    # are tested locally (tests/test_workflow.py's preview).
    small = workdir / "part3-small.yaml"
    small.write_text(PART3_SMALL)
    command.insert(command.index(PREVIEW) + 1, str(small))
    code, seconds, output = run_bounded(command, workdir, workdir / "snakemake.log", SLURM_TIMEOUT_S)
    assert code == 0, output[-5000:]
    return workdir, seconds, output


@pytest.fixture(scope="module")
def local_run(slurm_run, tmp_path_factory):
    """The same configuration locally: the README's local preview command with the same --config.

    After the Slurm run (it asks for `slurm_run`), so the two never share the machine's cores.
    """
    workdir = copy_project(tmp_path_factory.mktemp("local-preview"))
    (workdir / "part3-small.yaml").write_text(PART3_SMALL)
    command = [SNAKEMAKE, "--configfile", PREVIEW, str(workdir / "part3-small.yaml"), "--config", "device=auto",
               "--", "report"]
    code, seconds, output = run_bounded(command, workdir, workdir / "snakemake.log", LOCAL_TIMEOUT_S)
    assert code == 0, output[-5000:]
    return workdir, seconds, output


def _slurm_jobs() -> dict[str, dict[str, str]]:
    """Every job slurmctld still knows (MinJobAge keeps finished ones an hour): {job id: its fields}."""
    shown = subprocess.run(["scontrol", "show", "job", "--oneliner"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    jobs = {}
    for line in shown.stdout.splitlines():
        fields = dict(re.findall(r"(\S+?)=(\S*)", line))
        if "JobId" in fields:
            jobs[fields["JobId"]] = fields
    return jobs


def _rule_of(comment: str) -> str:
    """The rule in the plugin's job comment: rule_<rule> or rule_<rule>_wildcards_<values>."""
    match = re.fullmatch(r"rule_(\w+?)(?:_wildcards_.*)?", comment)
    assert match, comment
    return match.group(1)


def test_every_job_is_a_slurm_job_and_every_experiment_had_a_gpu(slurm_run):
    workdir, _, output = slurm_run
    counts = job_counts(output)
    assert {"inversion_layers", "texture_layers", "transfer_runs", "generate_runs", "transfer_on_generated_runs",
            "part3_transfer_runs"} <= set(counts) and counts.get("report") == 1, counts
    # The model fetch runs where Snakemake runs (a login node has the network a compute node lacks): it is
    # no Slurm job. Every other job is one.
    assert counts.pop("models") == 1 and re.search(r"^localrule models:", output, flags=re.M), output[-3000:]
    run_id = re.search(r"^SLURM run ID: (\S+)$", output, flags=re.M).group(1)

    # Snakemake's side: one sbatch call per job, each answered with a Slurm job id; a GPU asked for exactly
    # by the experiments, in the GPU partition.
    submitted = re.findall(r"^Job \d+ has been submitted with SLURM jobid (\d+) ", output, flags=re.M)
    calls = re.findall(r"^sbatch call: (sbatch .*)$", output, flags=re.M)
    assert len(submitted) == len(set(submitted)) == len(calls) == sum(counts.values()), (counts, submitted)
    for call in calls:
        args = shlex.split(call.split(" --wrap=", 1)[0])
        rule = _rule_of(args[args.index("--comment") + 1])
        gpus = [arg for arg in args if arg.startswith("--gpus")]
        partition = args[args.index("-p") + 1]
        if is_experiment(rule):
            assert gpus == ["--gpus=1"] and partition == "gpu", call
        else:
            assert gpus == [] and partition == "cpu", call

    # Slurm's side: every one of those jobs ran and completed on the node, with the resources asked for.
    jobs = _slurm_jobs()
    ours = {job_id: jobs[job_id] for job_id in submitted}
    assert all(job["JobName"] == run_id for job in ours.values())
    by_rule: dict[str, int] = {}
    for job_id, job in ours.items():
        rule = _rule_of(job["Comment"])
        by_rule[rule] = by_rule.get(rule, 0) + 1
        assert (job["JobState"], job["ExitCode"], job["NodeList"]) == ("COMPLETED", "0:0", "stylelab-node"), job
        experiment = is_experiment(rule)
        assert job.get("TresPerJob") == ("gres:gpu:1" if experiment else None), (rule, job_id, job.get("TresPerJob"))
        assert job["Partition"] == ("gpu" if experiment else "cpu")
    assert by_rule == counts
    # One GPU on the node, so Slurm ran the experiments one after another: none started before another ended.
    spans = sorted((job["StartTime"], job["EndTime"]) for job in ours.values()
                   if is_experiment(_rule_of(job["Comment"])))
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), spans
    # The workflow's own logs were written by the jobs, as in a local run.
    assert next((workdir / f"{PREVIEW_ROOT}/logs/part1/inversion").glob("conv_1*.log")).stat().st_size > 0


def _experiment_files(workdir: Path, pattern: str) -> dict[str, Path]:
    """The experiments' files (not the figures'), by path within the project."""
    found = {}
    for folder in ("part1/inversion", "part1/texture", "part1/transfer", "part2/generated", "part2/transfer"):
        files = (workdir / PREVIEW_ROOT / folder).rglob(pattern)
        found.update({str(path.relative_to(workdir)): path for path in files})
    return found


def test_results_through_slurm_match_a_local_run(slurm_run, local_run, capsys):
    slurm_dir, slurm_seconds, _ = slurm_run
    local_dir, local_seconds, _ = local_run
    with capsys.disabled():
        print(f"\npreview through Slurm: {slurm_seconds:.0f} s; the same preview locally: {local_seconds:.0f} s")

    records, local_records = _experiment_files(slurm_dir, "*.json"), _experiment_files(local_dir, "*.json")
    assert records.keys() == local_records.keys() and len(records) >= 30
    for name, path in records.items():
        record, local = json.loads(path.read_text()), json.loads(local_records[name].read_text())
        assert record["settings"] == local["settings"], name
        # device=auto found no CUDA inside the Slurm job (the GPU there is a stand-in) and computed on the CPU.
        assert record["device"] == local["device"] == "cpu", name

    images, local_images = _experiment_files(slurm_dir, "*.png"), _experiment_files(local_dir, "*.png")
    assert images.keys() == local_images.keys() and len(images) >= 30
    different = [name for name, path in images.items() if path.read_bytes() != local_images[name].read_bytes()]
    assert not different, f"images that differ between the Slurm and the local run: {different}"
    assert (slurm_dir / f"{PREVIEW_ROOT}/report/report.html").stat().st_size > 0
