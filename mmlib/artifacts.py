"""Atomic writes for the artifacts chapters exchange.

Every artifact is written to a temporary file in the destination folder and renamed into place, so a
failed or interrupted run never leaves a half-written file behind.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pandas as pd


@contextmanager
def atomic_path(path: Path | str):
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def atomic_dir(path: Path | str):
    """Yield a temporary folder next to ``path``; it replaces ``path`` if the block succeeds, and is
    removed (leaving any earlier ``path`` untouched) if it fails."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_frame(df: pd.DataFrame, path: Path | str) -> Path:
    """Write a DataFrame as parquet, atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp)
    return Path(path)


def write_json(obj, path: Path | str) -> Path:
    """Write JSON (sorted keys, indented), atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    return Path(path)
