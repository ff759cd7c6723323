# Part 2 experiments: diffusion samples steered by the style loss, and Part 1 style transfer applied to a
# generated image. One `stylelab` command per job; every setting that changes a result is a param.


rule generate:
    input:
        style=config["images"]["style"],
    output:
        image=f"{PART2}/generated/{{name}}/image.png",
        record=f"{PART2}/generated/{{name}}/record.json",
    wildcard_constraints:
        name=alternatives(GENERATION_RUNS),
    params:
        options=lambda wildcards: generation_options(wildcards.name),
        out_dir=lambda wildcards, output: Path(output.record).parent,
    threads: JOB_THREADS
    resources:
        gpu=GPU_SLOTS,
        mem_mb=JOB_MEM_MB,
    log:
        f"{LOGS}/part2/generated/{{name}}.log",
    benchmark:
        f"{BENCHMARKS}/part2/generated/{{name}}.tsv"
    shell:
        "{STYLELAB} generate {params.options} --style {input.style:q} --out {params.out_dir:q} --quiet"
        " > {log:q} 2>&1"


# Part 1's transfer (its layers, content weight, init and seed) with a generated image as the content.
rule transfer_on_generated:
    input:
        content=generation_image(DIFFUSION["transfer"]["content"]),
        style=config["images"]["style"],
    output:
        images=expand(f"{PART2}/transfer/{{{{run}}}}_s{{step}}.png", step=PART2_TRANSFER_STEPS),
        record=f"{PART2}/transfer/{{run}}.json",
    wildcard_constraints:
        run=alternatives(PART2_TRANSFER_RUNS),
    params:
        style_loss=lambda wildcards: PART2_TRANSFER_RUNS[wildcards.run]["style_loss"],
        style_weight=lambda wildcards: PART2_TRANSFER_RUNS[wildcards.run]["style_weight"],
        content_weight=config["transfer"]["content_weight"],
        content_layers=config["transfer"]["content_layers"],
        style_layers=config["transfer"]["style_layers"],
        init=config["transfer"]["init"],
        steps=PART2_TRANSFER_STEPS,
        seed=config["transfer"]["seed"],
        network=network_options(),
        out_dir=lambda wildcards, output: Path(output.record).parent,
    threads: JOB_THREADS
    resources:
        gpu=GPU_SLOTS,
        mem_mb=JOB_MEM_MB,
    log:
        f"{LOGS}/part2/transfer/{{run}}.log",
    benchmark:
        f"{BENCHMARKS}/part2/transfer/{{run}}.tsv"
    shell:
        TRANSFER_SHELL


rule generation_grid:
    input:
        records=[generation_record(name) for name in GENERATION_RUNS],
        images=[generation_image(name) for name in GENERATION_RUNS],
    output:
        report(f"{PART2_FIGURES}/generation_grid.png", category="Part 2", labels={"figure": "guided and unguided"}),
    log:
        f"{LOGS}/figures/generation_grid.log",
    benchmark:
        f"{BENCHMARKS}/figures/generation_grid.tsv"
    shell:
        "{STYLELAB} figure gallery --out {output:q} {input.records:q} > {log:q} 2>&1"


rule guidance_curves:
    input:
        records=[generation_record(name) for name in GENERATION_RUNS],
    output:
        report(f"{PART2_FIGURES}/guidance_curves.png", category="Part 2", labels={"figure": "style loss of x0"}),
    log:
        f"{LOGS}/figures/guidance_curves.log",
    benchmark:
        f"{BENCHMARKS}/figures/guidance_curves.tsv"
    shell:
        "{STYLELAB} figure guidance-curves --out {output:q} {input.records:q} > {log:q} 2>&1"


rule comparison:
    input:
        records=[generation_record(name) for name in DIFFUSION["comparison"]]
        + [part2_transfer_record(run_id) for run_id in PART2_TRANSFER_RUNS],
        images=[generation_image(name) for name in DIFFUSION["comparison"]]
        + [image for run_id in PART2_TRANSFER_RUNS for image in part2_transfer_images(run_id)],
    output:
        report(f"{PART2_FIGURES}/comparison.png", category="Part 2", labels={"figure": "guidance, prompt, transfer"}),
    log:
        f"{LOGS}/figures/comparison.log",
    benchmark:
        f"{BENCHMARKS}/figures/comparison.tsv"
    shell:
        "{STYLELAB} figure gallery --out {output:q} {input.records:q} > {log:q} 2>&1"
