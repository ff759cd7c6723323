# Snakemake's between-workflow cache: with --cache and SNAKEMAKE_OUTPUT_CACHE (`make report CACHE=DIR`), every
# experiment job's outputs are kept under their provenance hash and taken from there when the same job comes
# again, in this clone, another one, or a colleague's on the same filesystem. The hash (Snakemake's
# caching/hash.py) holds the rule's shell command as written, every param (the run's spec and ENGINE: the
# digest of the code that computes results and the libraries' versions; `stylelab`'s own path and the pixel
# limit are not among them, see Command), the checksums of the input images, and the same of every job before
# it (a Part 2 transfer: its generation's, and the model fetch's). Another setting, other code or another
# input image misses the cache.
#
# Marked here, after the rules are made, for just the runs with --cache: Snakemake refuses a benchmark on a
# rule marked for the cache, and the experiments keep theirs otherwise.
from snakemake.caching.rule import CacheFlag, RuleCache

EXPERIMENT_RULES = (
    "inversion",
    "texture",
    "inversion_layers",
    "texture_layers",
    "transfer",
    "generate",
    "transfer_on_generated",
    "part3_transfer",
    *SWEEP_RULES.values(),
    *(b.rule for b in BATCHES),
)

if CACHING:
    for _rule in workflow.rules:
        if _rule.name in EXPERIMENT_RULES:
            _rule._benchmark = None
            _rule.cache = RuleCache(_rule, CacheFlag.output)
