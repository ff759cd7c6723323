# Figures, made from the experiments' images and records only (never by re-running an experiment).
# Each is its own target: delete one and ask for it, and only that one is made again.


# The config's content and style images (images:, what every Part 1 run starts from), side by side.
rule inputs_figure:
    input:
        # the images every Part 1 run starts from (not the records, so that a run's settings do not redraw it)
        content=config["images"]["content"],
        style=config["images"]["style"],
    output:
        report(
            INPUTS_FIGURE,
            category="Part 1",
            labels={"experiment": "inputs", "figure": "content and style images"},
        ),
    log:
        log_file(figure_job(INPUTS_FIGURE)),
    benchmark:
        benchmark_file(figure_job(INPUTS_FIGURE))
    conda:
        SOFTWARE
    params:
        stylelab=STYLELAB,
    shell:
        "{params.stylelab} figure inputs --content {input.content:q} --style {input.style:q} --out {output:q} > {log:q} 2>&1"


rule layer_grid:
    input:
        records=lambda wildcards: group_records(wildcards.group),
        images=lambda wildcards: group_images(wildcards.group),
        # what the runs imitate, shown in the grid's first column
        target=lambda wildcards: config["images"][
            "content" if wildcards.group == "inversion" else "style"
        ],
    output:
        report(
            figure_file("{group}", "grid"),
            category="Part 1",
            labels={"experiment": "{group}", "figure": "grid"},
        ),
    log:
        log_file(figure_job(figure_file("{group}", "grid"))),
    benchmark:
        benchmark_file(figure_job(figure_file("{group}", "grid")))
    wildcard_constraints:
        group=alternatives(LAYER_GROUPS),
    conda:
        SOFTWARE
    params:
        stylelab=STYLELAB,
    shell:
        "{params.stylelab} figure layer-grid --out {output:q} {input.records:q} > {log:q} 2>&1"


rule transfer_grid:
    input:
        records=group_records("transfer"),
        images=group_images("transfer"),
    output:
        report(
            figure_file("transfer", "grid"),
            category="Part 1",
            labels={"experiment": "transfer", "figure": "grid"},
        ),
    log:
        log_file(figure_job(figure_file("transfer", "grid"))),
    benchmark:
        benchmark_file(figure_job(figure_file("transfer", "grid")))
    conda:
        SOFTWARE
    params:
        stylelab=STYLELAB,
    shell:
        "{params.stylelab} figure step-grid --out {output:q} {input.records:q} > {log:q} 2>&1"


rule loss_curves:
    input:
        records=lambda wildcards: group_records(wildcards.group),
    output:
        report(
            figure_file("{group}", "curves"),
            category="Part 1",
            labels={"experiment": "{group}", "figure": "loss curves"},
        ),
    log:
        log_file(figure_job(figure_file("{group}", "curves"))),
    benchmark:
        benchmark_file(figure_job(figure_file("{group}", "curves")))
    wildcard_constraints:
        group=alternatives(GROUPS),
    conda:
        SOFTWARE
    params:
        stylelab=STYLELAB,
    shell:
        "{params.stylelab} figure curves --out {output:q} {input.records:q} > {log:q} 2>&1"


# Part 3: one figure per experiment (colour, scales, blend), the figure command of the same name.
rule part3_figure:
    input:
        records=lambda wildcards: part3_records(wildcards.experiment),
        images=lambda wildcards: [
            part3_image(wildcards.experiment, name)
            for name in PART3_RUNS[wildcards.experiment]
        ],
    output:
        report(
            part3_figure("{experiment}"),
            category="Part 3",
            labels={"experiment": "{experiment}", "figure": "{experiment}"},
        ),
    log:
        log_file(figure_job(part3_figure("{experiment}"))),
    benchmark:
        benchmark_file(figure_job(part3_figure("{experiment}")))
    wildcard_constraints:
        experiment=alternatives(PART3_EXPERIMENTS),
    conda:
        SOFTWARE
    params:
        stylelab=STYLELAB,
    shell:
        "{params.stylelab} figure {wildcards.experiment} --out {output:q} {input.records:q} > {log:q} 2>&1"
