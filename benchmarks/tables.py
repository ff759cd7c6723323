"""What both benchmark scripts share: the machine's name and a Markdown table of their rows."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from stylelab.run import runtime


def machine(device: torch.device) -> str:
    """The card, or the CPU model and the threads torch uses."""
    name = runtime.device_name(device)
    return name if device.type == "cuda" else f"{name}, {torch.get_num_threads()} threads"


def markdown(title: str, columns: Sequence[tuple[str, str, Callable[[dict], str]]], rows: Sequence[dict]) -> str:
    """A Markdown table under a heading; `columns` are (header, alignment rule, cell of a row)."""
    lines = [f"### {title}", "", "| " + " | ".join(header for header, _, _ in columns) + " |",
             "|" + "|".join(rule for _, rule, _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row) for _, _, cell in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"
