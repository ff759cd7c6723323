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
        run=alternatives(name for _, name in solo(PART3_NAMES)),
    conda:
        SOFTWARE
    threads: JOB_THREADS
    resources:
        **EXPERIMENT_RESOURCES,
    params:
        stylelab=STYLELAB,
        engine=ENGINE,
        line=lambda wildcards: part3_line(wildcards.experiment, wildcards.run),
    shell:
        RUN_SHELL
