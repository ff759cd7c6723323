# Part 3, beyond the assignment: colour preservation, coarse-to-fine scales and blended styles. Each run is
# one `stylelab transfer` job with its record, named and set up from the config's part3 section
# (stylelab.spec.config.part3_runs, part3_spec).


rule part3_transfer:
    input:
        content=config["images"]["content"],
        style=lambda wildcards: part3_styles(config, wildcards.experiment),
    output:
        image=part3_image("{experiment}", "{run}"),
        record=part3_record("{experiment}", "{run}"),
    log:
        log_file(part3_job("{experiment}", "{run}")),
    benchmark:
        benchmark_file(part3_job("{experiment}", "{run}"))
    wildcard_constraints:
        experiment=alternatives(PART3_EXPERIMENTS),
        run=alternatives([name for runs in PART3_RUNS.values() for name in runs]),
    conda:
        SOFTWARE
    threads: JOB_THREADS
    resources:
        **EXPERIMENT_RESOURCES,
    params:
        stylelab=STYLELAB,
        engine=ENGINE,
        spec=lambda wildcards: part3_run_spec(wildcards.experiment, wildcards.run),
        out_dir=lambda wildcards, output: str(Path(output.record).parent),
    shell:
        "{params.stylelab} transfer --spec {params.spec:q} --content {input.content:q} --style {input.style:q}"
        " --out {params.out_dir} --image-name {wildcards.run}.png --record-name {wildcards.run}.json --quiet"
        " > {log:q} 2>&1"
