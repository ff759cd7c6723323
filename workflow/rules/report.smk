# The report: one HTML page of the figures and a table per experiment, from the figures and records.


rule report:
    input:
        figures=FIGURE_FILES + PART2_FIGURE_FILES,
        records=[record for group in GROUPS for record in group_records(group)]
        + [generation_record(name) for name in GENERATION_RUNS],
        template="report/templates/report.html.j2",
        css="report/style.css",
    output:
        REPORT_HTML,
    params:
        sections=report_sections(),
    log:
        f"{LOGS}/report.log",
    benchmark:
        f"{BENCHMARKS}/report.tsv"
    shell:
        "{STYLELAB} report --out {output:q} --template {input.template:q} --css {input.css:q}"
        " {params.sections} --records {input.records:q} > {log:q} 2>&1"
