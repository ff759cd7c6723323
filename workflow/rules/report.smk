# The report: one HTML file and one PDF from the figures, the records, the jobs' benchmark files and the
# config. The template, the style sheet and the code that renders them are inputs too, so editing any of
# them renders the report again (and nothing else).

import importlib.util
import json

# The report code as installed (the editable install points at src/stylelab).
_PACKAGE = Path(importlib.util.find_spec("stylelab").submodule_search_locations[0])
REPORT_CODE = [str(_PACKAGE / name) for name in ("report.py", "analysis.py", "provenance.py")]
REPORT_PDF = "results/report/report.pdf"


def part1_benchmarks():
    return [f"{BENCHMARKS}/part1/{group}/{layer}.tsv" for group in LAYER_GROUPS for layer in config[group]["layers"]] \
        + [f"{BENCHMARKS}/part1/transfer/{run_id}.tsv" for run_id in TRANSFER_RUNS]


def part2_benchmarks():
    return [f"{BENCHMARKS}/part2/generated/{name}.tsv" for name in GENERATION_RUNS] \
        + [f"{BENCHMARKS}/part2/transfer/{run_id}.tsv" for run_id in PART2_TRANSFER_RUNS]


def figure_benchmarks():
    return [f"{BENCHMARKS}/figures/{Path(figure).stem}.tsv" for figure in FIGURE_FILES + PART2_FIGURE_FILES]


def report_manifest():
    """What the report shows, section by section, as JSON for `stylelab report --manifest`."""
    part2_transfers = [part2_transfer_record(run_id) for run_id in PART2_TRANSFER_RUNS]
    sections = [
        {"id": group, "figures": [f"{FIGURES}/{group}_grid.png", f"{FIGURES}/{group}_curves.png"],
         "records": group_records(group)} for group in GROUPS
    ] + [
        {"id": "guidance", "figures": [f"{PART2_FIGURES}/generation_grid.png", f"{PART2_FIGURES}/guidance_curves.png"],
         "records": [generation_record(name) for name in GENERATION_RUNS], "transfers": part2_transfers},
        {"id": "prompt", "figures": [f"{PART2_FIGURES}/comparison.png"],
         "records": [generation_record(name) for name in DIFFUSION["comparison"]]},
    ]
    benchmarks = {"Part 1": part1_benchmarks(), "Part 2": part2_benchmarks(), "Figures": figure_benchmarks()}
    # Scheduling settings (jobs:) change no result, so they neither appear nor rerun the report.
    effective = {key: value for key, value in config.items() if key != "jobs"}
    return json.dumps({"sections": sections, "benchmarks": benchmarks, "root": BENCHMARKS, "config": effective})


rule report:
    input:
        figures=FIGURE_FILES + PART2_FIGURE_FILES,
        records=[record for group in GROUPS for record in group_records(group)]
        + [generation_record(name) for name in GENERATION_RUNS]
        + [part2_transfer_record(run_id) for run_id in PART2_TRANSFER_RUNS],
        benchmarks=part1_benchmarks() + part2_benchmarks() + figure_benchmarks(),
        template="report/templates/report.html.j2",
        css="report/style.css",
        code=REPORT_CODE,
    output:
        html=report(REPORT_HTML, category="Report", labels={"file": "report.html"}),
        pdf=report(REPORT_PDF, category="Report", labels={"file": "report.pdf"}),
    params:
        manifest=report_manifest(),
    log:
        f"{LOGS}/report.log",
    benchmark:
        f"{BENCHMARKS}/report.tsv"
    shell:
        "{STYLELAB} report --manifest {params.manifest:q} --html {output.html:q} --pdf {output.pdf:q}"
        " --template {input.template:q} --css {input.css:q} > {log:q} 2>&1"
