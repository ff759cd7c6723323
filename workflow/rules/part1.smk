# Part 1 experiments: one job per run, each a single `stylelab` command that writes its images and its
# record. Every setting that changes a result is in the run's spec (one JSON param, stylelab.spec.config), so
# Snakemake reruns exactly the runs whose settings changed (its params rerun trigger); scheduling
# settings (threads, resources) are not.
# Paths, the command, the software environment and what a job asks of the scheduler come from
# common.smk, the same for every experiment.


rule inversion:
    input:
        content=config["images"]["content"],
    output:
        image=layer_image("inversion", "{layer}"),
        record=layer_record("inversion", "{layer}"),
    log:
        log_file(part1_job("inversion", "{layer}")),
    benchmark:
        benchmark_file(part1_job("inversion", "{layer}"))
    wildcard_constraints:
        layer=alternatives(solo_layers("inversion")),
    conda:
        SOFTWARE
    threads: JOB_THREADS
    resources:
        **EXPERIMENT_RESOURCES,
    params:
        stylelab=STYLELAB,
        engine=ENGINE,
        spec=part1_run_spec("inversion"),
        out_dir=lambda wildcards, output: str(Path(output.record).parent),
    shell:
        "{params.stylelab} invert --spec {params.spec:q} --content {input.content:q} --layer {wildcards.layer}"
        " --out {params.out_dir} --image-name {wildcards.layer}.png --record-name {wildcards.layer}.json"
        " --quiet > {log:q} 2>&1"


rule texture:
    input:
        style=config["images"]["style"],
    output:
        image=layer_image("texture", "{layer}"),
        record=layer_record("texture", "{layer}"),
    log:
        log_file(part1_job("texture", "{layer}")),
    benchmark:
        benchmark_file(part1_job("texture", "{layer}"))
    wildcard_constraints:
        layer=alternatives(solo_layers("texture")),
    conda:
        SOFTWARE
    threads: JOB_THREADS
    resources:
        **EXPERIMENT_RESOURCES,
    params:
        stylelab=STYLELAB,
        engine=ENGINE,
        spec=part1_run_spec("texture"),
        out_dir=lambda wildcards, output: str(Path(output.record).parent),
    shell:
        "{params.stylelab} texture --spec {params.spec:q} --style {input.style:q} --layer {wildcards.layer}"
        " --out {params.out_dir} --image-name {wildcards.layer}.png --record-name {wildcards.layer}.json"
        " --quiet > {log:q} 2>&1"


# With jobs.runs_in_one_job, one job per experiment runs its layers one after another in one process: its
# outputs are each layer's image and record, so deleting one and asking for it reruns the experiment's job.
for _group, _command, _image in (
    ("inversion", "invert", "content"),
    ("texture", "texture", "style"),
):
    for _layers in grouped_layers(_group):

        rule:
            name:
                f"{_group}_layers"
            input:
                image=config["images"][_image],
            output:
                **layer_outputs(_group, _layers),
            log:
                log_file(part1_job(_group, "+".join(_layers))),
            benchmark:
                benchmark_file(part1_job(_group, "+".join(_layers)))
            # The longest jobs of a preview start first, so that the short ones fill the other cores.
            priority: 2
            conda:
                SOFTWARE
            threads: JOB_THREADS
            resources:
                **EXPERIMENT_RESOURCES,
            params:
                stylelab=STYLELAB,
                engine=ENGINE,
                command=_command,
                image_option=f"--{_image}",
                spec=part1_run_spec(_group),
                layers=" ".join(_layers),
                out_dir=str(Path(layer_record(_group, _layers[0])).parent),
            shell:
                "{params.stylelab} {params.command} --spec {params.spec:q} {params.image_option} {input.image:q}"
                " --layer {params.layers}"
                " --out {params.out_dir} --image-name '{{layer}}.png' --record-name '{{layer}}.json'"
                " --quiet > {log:q} 2>&1"


# One job per run writes the image of every listed step (300 and 1000 come from one 1000-step run).
rule transfer:
    input:
        content=config["images"]["content"],
        style=config["images"]["style"],
    output:
        **step_images(transfer_image, "{run}", TRANSFER_STEPS),
        record=transfer_record("{run}"),
    log:
        log_file(part1_job("transfer", "{run}")),
    benchmark:
        benchmark_file(part1_job("transfer", "{run}"))
    wildcard_constraints:
        run=alternatives(solo(TRANSFER_RUNS)),
    conda:
        SOFTWARE
    threads: JOB_THREADS
    resources:
        **EXPERIMENT_RESOURCES,
    params:
        stylelab=STYLELAB,
        engine=ENGINE,
        line=lambda wildcards: transfer_line(wildcards.run),
    shell:
        RUN_SHELL
