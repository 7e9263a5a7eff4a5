"""Find a model in the local Hugging Face cache; never downloads.

Callers (:func:`mmlib.embed.resolve_encoder`, :func:`mmlib.vlm.resolve_model_path`) first take a local
folder holding ``config.json``, and otherwise look a Hub model id (``org/name``) up here, the offline
equivalent of ``snapshot_download(..., local_files_only=True)``: in the hub cache folders
(``$HF_HUB_CACHE``, ``$HUGGINGFACE_HUB_CACHE``, ``$TRANSFORMERS_CACHE``, ``$HF_HOME/hub`` or
``~/.cache/huggingface/hub``: ``models--{org}--{name}/snapshots/*``). Imports nothing of mmlib.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["looks_like_model_id", "find_in_hub_cache"]


def _hub_cache_dirs() -> list[Path]:
    """Hugging Face hub cache folders, read from the environment at call time."""
    dirs = []
    if os.environ.get("HF_HUB_CACHE"):
        dirs.append(Path(os.environ["HF_HUB_CACHE"]))
    for var in ("HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"):
        if os.environ.get(var):
            dirs.append(Path(os.environ[var]))
    hf_home = os.environ.get("HF_HOME")
    if hf_home:
        dirs.append(Path(hf_home) / "hub")
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg) / "huggingface" if xdg else Path.home() / ".cache" / "huggingface"
        dirs.append(base / "hub")
    out = []
    for d in dirs:
        d = d.expanduser()
        if d not in out:
            out.append(d)
    return out


def _cached_snapshot(repo_id: str, cache: Path) -> Path | None:
    """The snapshot of ``repo_id`` in one hub cache folder: the one ``refs/main`` points to if
    it has a config.json, else the most recently modified snapshot that has one."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snaps = repo / "snapshots"
    if not snaps.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file():
        cand = snaps / ref.read_text().strip()
        if (cand / "config.json").is_file():
            return cand
    found = [p for p in snaps.iterdir() if (p / "config.json").is_file()]
    if not found:
        return None
    return max(found, key=lambda p: (p / "config.json").stat().st_mtime)


def looks_like_model_id(text: str) -> bool:
    """Whether ``text`` has the shape of a Hugging Face model id (``org/name``) rather than a path."""
    return (text.count("/") == 1 and not text.startswith((".", "/", "~")) and not text.endswith("/")
            and "\\" not in text)


def find_in_hub_cache(model_id: str) -> tuple[Path | None, list[str]]:
    """The local snapshot of ``model_id`` in any Hugging Face hub cache (or ``None``), and where it looked."""
    searched = []
    for cache in _hub_cache_dirs():
        searched.append(str(cache / ("models--" + model_id.replace("/", "--")) / "snapshots"))
        snap = _cached_snapshot(model_id, cache)
        if snap is not None:
            return snap.resolve(), searched
    return None, searched
