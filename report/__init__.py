"""The report's template (templates/report.html.j2) and style sheet (style.css).

Installed with stylelab as the package data `stylelab.report_files` (see [tool.setuptools] in pyproject.toml),
so `stylelab report` finds them from any working directory. This file makes the folder that package.
"""
