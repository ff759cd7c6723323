# The report: one HTML file and one PDF from the figures, the records, the jobs' benchmark files and the
# config, and summary.json, its runs in one machine-readable file (what `stylelab compare` reads). The
# template, the style sheet and the code that renders them are inputs too, so editing any of them renders
# the report again (and nothing else).


rule report:
    input:
        figures=FIGURE_FILES + SWEEP_FIGURE_FILES,
        records=report_records(),
        benchmarks=part1_benchmarks()
        + part2_benchmarks()
        + part3_benchmarks()
        + sweep_benchmarks()
        + figure_benchmarks(),
        template=REPORT_TEMPLATE,
        css=REPORT_CSS,
        code=REPORT_CODE,
    output:
        html=report(REPORT_HTML, category="Report", labels={"file": "report.html"}),
        pdf=report(REPORT_PDF, category="Report", labels={"file": "report.pdf"}),
        summary=REPORT_SUMMARY,
    log:
        log_file("report"),
    benchmark:
        benchmark_file("report")
    conda:
        SOFTWARE
    params:
        stylelab=STYLELAB,
        manifest=report_manifest(),
    shell:
        "{params.stylelab} report --manifest {params.manifest:q} --html {output.html:q} --pdf {output.pdf:q}"
        " --template {input.template:q} --css {input.css:q} --summary {output.summary:q} > {log:q} 2>&1"
