"""What a run is, without computing it: layers, settings, the workflow's config and specs, records and files.

Imports no other stylelab package, and never torch, diffusers or transformers (the Snakefile reads it).
"""
