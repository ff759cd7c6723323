# Part 2 experiments: diffusion samples steered by the style loss, and Part 1 style transfer applied to a
# generated image. One `stylelab` command per job; every setting that changes a result is a param.


# The one job that may talk to a hub: it fetches the model's files (or checks them in the cache) where
# Snakemake runs, a cluster's login node included, since compute nodes often have no network. It holds
# the GPU slot and goes first, so that with `fallback: error` (the GPU profile) a model that cannot be
# had stops the run before any GPU job starts; a changed model, revision or precision runs it again.
rule models:
    output:
        MODEL_MANIFEST,
    log:
        log_file("part2/model"),
    priority: 100
    localrule: True
    conda:
        SOFTWARE
    resources:
        gpu=GPU_SLOTS,
    params:
        stylelab=STYLELAB,
        spec=MODEL_SPEC,
        fallback=MODEL_FALLBACK,
    shell:
        "{params.stylelab} models fetch --spec {params.spec:q} {params.fallback} --manifest {output:q}"
        " 2>&1 | tee {log:q}"


rule generate:
    input:
        style=config["images"]["style"],
        manifest=MODEL_MANIFEST,
    output:
        image=generation_image("{name}"),
        record=generation_record("{name}"),
    log:
        log_file(generation_job("{name}")),
    benchmark:
        benchmark_file(generation_job("{name}"))
    wildcard_constraints:
        name=alternatives(solo(GENERATION_RUNS)),
    conda:
        SOFTWARE
    threads: JOB_THREADS
    resources:
        **EXPERIMENT_RESOURCES,
    params:
        stylelab=STYLELAB,
        engine=ENGINE,
        line=lambda wildcards: generation_line(wildcards.name),
    shell:
        RUN_SHELL


# Part 1's transfer (its layers, content weight, init and seed) with a generated image as the content.
rule transfer_on_generated:
    input:
        content=generation_image(DIFFUSION["transfer"]["content"]),
        style=config["images"]["style"],
    output:
        **step_images(part2_transfer_image, "{run}", PART2_TRANSFER_STEPS),
        record=part2_transfer_record("{run}"),
    log:
        log_file(part2_transfer_job("{run}")),
    benchmark:
        benchmark_file(part2_transfer_job("{run}"))
    wildcard_constraints:
        run=alternatives(solo(PART2_TRANSFER_RUNS)),
    conda:
        SOFTWARE
    threads: JOB_THREADS
    resources:
        **EXPERIMENT_RESOURCES,
    params:
        stylelab=STYLELAB,
        engine=ENGINE,
        line=lambda wildcards: part2_transfer_line(wildcards.run),
    shell:
        RUN_SHELL
