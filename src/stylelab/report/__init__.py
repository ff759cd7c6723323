"""From records to what a reader sees: runs loaded from records, figures (each declared once), the analysis
the report states, and the HTML and PDF rendering with its template and style sheet (package data).

Imports only stylelab.spec, and never torch, diffusers or transformers (`.importlinter` checks it).
"""
