# The workflow: every experiment of config.yaml is a cached target with its record, then the
# figures, then the report. Rules only say what to compute and where it goes; each calls one `stylelab`
# command (the workflow by hand: docs/clusters.md).
#
#   snakemake report                                   (the default profile sets cores and gpu=1)
#   snakemake --cores 1 --resources gpu=1 -- report    (the `--` ends --resources' list of values)


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/part1.smk"
include: "workflow/rules/part2.smk"
include: "workflow/rules/part3.smk"
include: "workflow/rules/sweeps.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/batches.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/cache.smk"


rule all:
    default_target: True
    input:
        part1_targets(),
        part2_targets(),
        part3_targets(),
        sweep_targets(),
        FIGURE_FILES,
        SWEEP_FIGURE_FILES,
        REPORT_HTML,
