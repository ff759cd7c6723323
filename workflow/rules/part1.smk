# Part 1 experiments: one job per run, each a single `stylelab` command that writes its images and its
# record. Every setting that changes a result is a param, so Snakemake reruns exactly the runs whose
# settings changed (its params rerun trigger); scheduling settings (threads, memory) are not.


rule inversion:
    input:
        content=config["images"]["content"],
    output:
        image=f"{PART1}/inversion/{{layer}}.png",
        record=f"{PART1}/inversion/{{layer}}.json",
    wildcard_constraints:
        layer=alternatives(config["inversion"]["layers"]),
    params:
        content_weight=config["inversion"]["content_weight"],
        init=config["inversion"]["init"],
        steps=config["inversion"]["steps"],
        seed=config["inversion"]["seed"],
        network=network_options(),
        out_dir=lambda wildcards, output: Path(output.record).parent,
    threads: JOB_THREADS
    resources:
        gpu=GPU_SLOTS,
        mem_mb=JOB_MEM_MB,
    log:
        f"{LOGS}/part1/inversion/{{layer}}.log",
    benchmark:
        f"{BENCHMARKS}/part1/inversion/{{layer}}.tsv"
    shell:
        "{STYLELAB} invert --content {input.content:q} --layer {wildcards.layer}"
        " --content-weight {params.content_weight} --init {params.init} --steps {params.steps}"
        " --seed {params.seed} {params.network}"
        " --out {params.out_dir} --image-name {wildcards.layer}.png --record-name {wildcards.layer}.json"
        " --quiet > {log:q} 2>&1"


rule texture:
    input:
        style=config["images"]["style"],
    output:
        image=f"{PART1}/texture/{{layer}}.png",
        record=f"{PART1}/texture/{{layer}}.json",
    wildcard_constraints:
        layer=alternatives(config["texture"]["layers"]),
    params:
        style_loss=config["texture"]["style_loss"],
        style_weight=config["texture"]["style_weight"],
        init=config["texture"]["init"],
        steps=config["texture"]["steps"],
        seed=config["texture"]["seed"],
        network=network_options(),
        out_dir=lambda wildcards, output: Path(output.record).parent,
    threads: JOB_THREADS
    resources:
        gpu=GPU_SLOTS,
        mem_mb=JOB_MEM_MB,
    log:
        f"{LOGS}/part1/texture/{{layer}}.log",
    benchmark:
        f"{BENCHMARKS}/part1/texture/{{layer}}.tsv"
    shell:
        "{STYLELAB} texture --style {input.style:q} --layer {wildcards.layer}"
        " --style-loss {params.style_loss} --style-weight {params.style_weight} --init {params.init}"
        " --steps {params.steps} --seed {params.seed} {params.network}"
        " --out {params.out_dir} --image-name {wildcards.layer}.png --record-name {wildcards.layer}.json"
        " --quiet > {log:q} 2>&1"


# One job per run writes the image of every listed step (300 and 1000 come from one 1000-step run).
rule transfer:
    input:
        content=config["images"]["content"],
        style=config["images"]["style"],
    output:
        images=expand(f"{PART1}/transfer/{{{{run}}}}_s{{step}}.png", step=TRANSFER_STEPS),
        record=f"{PART1}/transfer/{{run}}.json",
    wildcard_constraints:
        run=alternatives(TRANSFER_RUNS),
    params:
        style_loss=lambda wildcards: TRANSFER_RUNS[wildcards.run]["style_loss"],
        style_weight=lambda wildcards: TRANSFER_RUNS[wildcards.run]["style_weight"],
        content_weight=config["transfer"]["content_weight"],
        content_layers=config["transfer"]["content_layers"],
        style_layers=config["transfer"]["style_layers"],
        init=config["transfer"]["init"],
        steps=TRANSFER_STEPS,
        seed=config["transfer"]["seed"],
        network=network_options(),
        out_dir=lambda wildcards, output: Path(output.record).parent,
    threads: JOB_THREADS
    resources:
        gpu=GPU_SLOTS,
        mem_mb=JOB_MEM_MB,
    log:
        f"{LOGS}/part1/transfer/{{run}}.log",
    benchmark:
        f"{BENCHMARKS}/part1/transfer/{{run}}.tsv"
    shell:
        TRANSFER_SHELL
