"""What a run is, without computing it: layer names, every setting (one definition), the workflow's config and
the specs it hands each job, records, files and image reading.

Imports nothing of stylelab's other packages, and never torch, diffusers or transformers (the Snakefile reads
it; `.importlinter` checks both).
"""
