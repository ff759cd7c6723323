# Figures, made from the experiments' images and records only (never by re-running an experiment).
# Each is its own target: delete one and ask for it, and only that one is made again.


rule layer_grid:
    input:
        records=lambda wildcards: group_records(wildcards.group),
        images=lambda wildcards: group_images(wildcards.group),
    output:
        report(f"{FIGURES}/{{group}}_grid.png", category="Part 1", labels={"experiment": "{group}", "figure": "grid"}),
    wildcard_constraints:
        group=alternatives(LAYER_GROUPS),
    log:
        f"{LOGS}/figures/{{group}}_grid.log",
    benchmark:
        f"{BENCHMARKS}/figures/{{group}}_grid.tsv"
    shell:
        "{STYLELAB} figure layer-grid --out {output:q} {input.records:q} > {log:q} 2>&1"


rule transfer_grid:
    input:
        records=group_records("transfer"),
        images=group_images("transfer"),
    output:
        report(f"{FIGURES}/transfer_grid.png", category="Part 1", labels={"experiment": "transfer", "figure": "grid"}),
    log:
        f"{LOGS}/figures/transfer_grid.log",
    benchmark:
        f"{BENCHMARKS}/figures/transfer_grid.tsv"
    shell:
        "{STYLELAB} figure step-grid --out {output:q} {input.records:q} > {log:q} 2>&1"


rule loss_curves:
    input:
        records=lambda wildcards: group_records(wildcards.group),
    output:
        report(f"{FIGURES}/{{group}}_curves.png", category="Part 1", labels={"experiment": "{group}", "figure": "loss curves"}),
    wildcard_constraints:
        group=alternatives(GROUPS),
    log:
        f"{LOGS}/figures/{{group}}_curves.log",
    benchmark:
        f"{BENCHMARKS}/figures/{{group}}_curves.tsv"
    shell:
        "{STYLELAB} figure curves --out {output:q} {input.records:q} > {log:q} 2>&1"
