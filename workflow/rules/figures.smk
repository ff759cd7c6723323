# Figures, made from the experiments' images and records only (never by re-running an experiment): one rule
# per figure declared in stylelab.report.contents, named <figure>_figure. Each is its own target: delete
# one and ask for it, and only that one is made again.


for _figure in SOLO_FIGURES:

    rule:
        name:
            f"{_figure.name}_figure"
        input:
            **figure_inputs(_figure),
        output:
            report(
                figure_file(_figure),
                category=_figure.part,
                labels={
                    "experiment": _figure.section or "inputs",
                    "figure": _figure.label,
                },
            ),
        log:
            log_file(figure_job(_figure)),
        benchmark:
            benchmark_file(figure_job(_figure))
        conda:
            SOFTWARE
        params:
            stylelab=STYLELAB,
            line=figure_line(_figure),
        shell:
            RUN_SHELL
