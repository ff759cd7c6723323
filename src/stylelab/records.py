"""Records: the JSON file beside every output that says how it was made and what it measured."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .images import write_bytes_atomic

RECORD_NAME = "record.json"


def _clean(value: Any) -> Any:
    """JSON-safe copy: tuples become lists, paths strings, NaN/inf strings (JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def write_record(path: str | os.PathLike, record: dict) -> None:
    text = json.dumps(_clean(record), indent=1, sort_keys=False)
    write_bytes_atomic(path, (text + "\n").encode())


def read_record(path: str | os.PathLike) -> dict:
    with open(Path(path)) as fh:
        return json.load(fh)
