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


STALE_SECONDS = 120.0


def _alive(pid: str) -> bool:
    """Whether process ``pid`` (text) is running on this machine (not a number: treated as running)."""
    if not pid.isdigit():
        return True
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(path: Path | str, max_age: float = STALE_SECONDS) -> list[Path]:
    """Delete the leftovers next to ``path``: folders it replaced (``.<name>.old-*``) older than ``max_age``
    seconds, and temporary folders (``.<name>.tmp-<pid>-*``) of runs whose process is gone and that are older
    than ``max_age``. Returns what it removed."""
    import shutil
    import time

    path = Path(path)
    removed = []
    if not path.parent.exists():
        return removed
    now = time.time()
    for p in path.parent.glob(f".{path.name}.*"):
        if (".old-" in p.name or ".tmp-" in p.name) and p.is_dir():
            if ".tmp-" in p.name and _alive(p.name.split(".tmp-")[1].split("-")[0]):
                continue
            try:
                if now - p.stat().st_mtime > max_age:
                    shutil.rmtree(p, ignore_errors=True)
                    removed.append(p)
            except FileNotFoundError:
                pass
    return removed


def publish_dir(tmp: Path | str, path: Path | str, *, keep_existing=None, attempts: int = 20) -> bool:
    """Move the finished folder ``tmp`` to ``path`` by renames only, safe when several processes publish the
    same ``path`` at once: a reader sees the old complete folder, no folder for an instant, or the new
    complete folder -- never a folder being deleted or filled (a replaced folder is moved aside and deleted
    by :func:`remove_stale` once it is :data:`STALE_SECONDS` old). If ``path`` exists and ``keep_existing(path)``
    is true (e.g. another run of the same key finished first), ``tmp`` is discarded and the existing folder
    kept. Returns whether ``tmp`` was published."""
    import shutil
    import uuid

    tmp, path = Path(tmp), Path(path)
    remove_stale(path)
    for _ in range(attempts):
        if path.exists() and keep_existing is not None and keep_existing(path):
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        try:
            os.rename(tmp, path)  # atomic; fails while path exists (a non-empty folder)
            return True
        except OSError:
            if not path.exists():
                continue
        trash = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(path, trash)  # atomic; another process may have moved it first: then try again
        except OSError:
            continue
        # the replaced folder is not deleted now: a reader may be in the middle of it. remove_stale
        # deletes it once it is older than STALE_SECONDS (at a later publish, or a build's clean-up)
    raise RuntimeError(f"{path}: could not publish {tmp} after {attempts} attempts (another process keeps "
                       "replacing it)")


@contextmanager
def atomic_dir(path: Path | str):
    """Yield a temporary folder next to ``path``; it replaces ``path`` if the block succeeds (by renames only,
    :func:`publish_dir`), and is removed (leaving any earlier ``path`` untouched) if it fails."""
    import shutil
    import uuid

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        publish_dir(tmp, path)
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
