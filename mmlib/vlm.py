r"""GPU-path transcription backends: chest X-rays and ECGs turned into text by local VLMs.

The Multimodal Paradox protocol turns every modality into text before a clinical BERT embeds
it: chest X-rays are transcribed by a general vision-language model (Qwen2.5-VL), ECGs by an
ECG-specialised one (PULSE-7B) reading a rendered 12-lead print. This module holds the real
loading and generation code for both. It never downloads anything: weights must already be
on local disk (a folder, or the local Hugging Face cache), and everything is loaded with
``local_files_only=True``. On a CPU-only machine the code runs (float32), but a 7B model is far
too slow there for a cohort: these readers are the GPU path. The tests run them end to end on
tiny, randomly initialised checkpoints built in code (tests/tiny_models.py).

Public API
----------
- :func:`resolve_model_path` -- a local folder or a model id found in the local HF cache.
- :class:`QwenVLReader` -- ``.transcribe(images, shard_dir=None)`` -> one report per image.
- :func:`render_ecg_image` -- a (T, 12) mV signal as a standard 12-lead ECG print.
- :class:`PulseECGReader` -- ``.interpret(signals, fs=100, shard_dir=None)`` -> one
  interpretation per ECG.
- :func:`run_sharded` -- the shared batching / sharding / data-parallel helper behind both.

Getting the weights (on a machine with internet)
------------------------------------------------
Qwen2.5-VL is released in the transformers format::

    huggingface-cli download Qwen/Qwen2.5-VL-7B-Instruct --local-dir /models/qwen2.5-vl-7b
    # then: QwenVLReader(model_path="/models/qwen2.5-vl-7b")
    # (or leave the default model id: a copy in the HF cache, HF_HOME, is found offline)

PULSE-7B (``PULSE-ECG/PULSE-7B``) is released as an *original* LLaVA checkpoint (the
haotian-liu/LLaVA code base: ``"model_type": "llava_llama"``, architecture
``LlavaLlamaForCausalLM``, the vision tower named by ``mm_vision_tower`` and no
``vision_config``), not in transformers' HF-LLaVA format, so transformers cannot load it as
is. :class:`PulseECGReader` detects such a folder and raises :class:`CheckpointFormatError`.
Convert it once, on a machine with internet, with the script that transformers ships in its
source tree (not in the pip wheel). Use the script of the *installed* transformers release (it
loads the weights strictly into that release's classes)::

    TV=$(python -c "import transformers; print(transformers.__version__)")
    git clone --depth 1 --branch v$TV https://github.com/huggingface/transformers
    python transformers/src/transformers/models/llava/convert_llava_weights_to_hf.py \
        --text_model_id lmsys/vicuna-7b-v1.5 \
        --vision_model_id openai/clip-vit-large-patch14-336 \
        --old_state_dict_id PULSE-ECG/PULSE-7B \
        --output_hub_path <your-hf-user>/PULSE-7B-hf
    huggingface-cli download <your-hf-user>/PULSE-7B-hf --local-dir /models/pulse-7b-hf
    # copy /models/pulse-7b-hf to the GPU machine, then:
    # PulseECGReader(model_path="/models/pulse-7b-hf")

The converted folder (``config.json`` with ``"model_type": "llava"`` and a ``vision_config``,
the safetensors, tokenizer and ``LlavaProcessor`` files) is what ``model_path`` must point to.
Notes on that script: it reads its inputs from the Hub and ends with ``push_to_hub`` (hence the
upload / download round trip; replacing its two ``push_to_hub`` calls by
``save_pretrained("/models/pulse-7b-hf")`` writes a local folder instead, and a private repo
works too); its strict ``load_state_dict`` needs the vision tower weights in the original
checkpoint (older releases of the script read only a ``model_state_dict.bin``, which its
``--help`` epilog shows how to write with the LLaVA code base); it adds ``<image>`` (id 32000)
and ``<pad>`` (id 32001) to the vocabulary. Its ``LlavaProcessor`` lacks ``patch_size`` and the
feature-selection settings; the reader fills them from the model config. Weight names written
by a 4.x conversion (``language_model.model.*``) load in transformers 5, which still writes them.

PULSE-7B was fine-tuned from ``llava-v1.6-vicuna-7b`` (LLaVA-NeXT, "anyres" tiling). The
LLaVA-1.5 converter above keeps the weights but not the tiling (one 336 px view; the
``image_newline`` parameter is dropped), so PULSE sees the print at a lower resolution than it
was trained on. A tiling-faithful conversion targets ``LlavaNextForConditionalGeneration`` with
``src/transformers/models/llava_next/convert_llava_next_weights_to_hf.py``; that script is
written for the two liuhaotian 1.6 checkpoints (``--model_id`` choices, text model id chosen
from it, a logits / generated-text check against those exact weights, a hard-coded CUDA
device), so for PULSE edit ``model_id`` to PULSE-ECG/PULSE-7B with text model
lmsys/vicuna-7b-v1.5, delete the verification block and pass ``--pytorch_dump_folder_path``.
:class:`PulseECGReader` loads either result: ``"model_type": "llava"`` with
``LlavaForConditionalGeneration`` (the print is padded to a square first, as LLaVA's
``image_aspect_ratio="pad"`` does, so CLIP's centre crop does not cut off the outer lead
columns) or ``"llava_next"`` with ``LlavaNextForConditionalGeneration``.

Data-parallel runs (several GPUs, one model copy each)
------------------------------------------------------
Both readers use ``accelerate.PartialState``: under ``accelerate launch`` each process loads the
model on its own GPU, takes its slice of the pending shards (``split_between_processes``) and
the results are gathered (``gather_object``) so every process, the main one included, returns
the full list. Put the call in a script, e.g. ``transcribe_cxr.py``::

    import json, sys
    from accelerate import PartialState
    from mmlib.vlm import QwenVLReader

    state = PartialState()
    paths = [line.strip() for line in open(sys.argv[1])]
    reports = QwenVLReader("/models/qwen2.5-vl-7b", batch_size=8).transcribe(
        paths, shard_dir="/scratch/cxr_shards")
    if state.is_main_process:
        json.dump(reports, open("cxr_reports.json", "w"))
    state.destroy_process_group()

and launch it with, on one node with 4 GPUs::

    accelerate launch --multi_gpu --num_processes 4 transcribe_cxr.py cxr_paths.txt

(``python transcribe_cxr.py cxr_paths.txt`` runs the same code on one device; ``torchrun
--nproc_per_node 4 transcribe_cxr.py cxr_paths.txt`` works too.) Give a ``shard_dir`` on a
file system that every process sees: shards are written atomically as
``shard_{k:05d}.json`` (``batch_size * shard_batches`` items each) next to a ``manifest.json``
that pins the shard size and the settings (reader, model, prompt, max_new_tokens, number of
items), and a re-run -- with any number of processes -- skips finished shards, so an
interrupted job resumes where it stopped. A shard whose recorded input digest does not match
the inputs, or a manifest with other settings, raises ``ValueError`` instead of mixing runs.

Failures are data, not crashes: an unreadable image gives ``None`` (the caller counts them as
missing transcriptions); so does a flat-line ECG (every sample NaN or ``|x| < 1e-3`` mV), which
is never sent to the model.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .hub import find_in_hub_cache, looks_like_model_id
from .schema import FS, LEADS

__all__ = [
    "DEFAULT_CXR_PROMPT",
    "DEFAULT_ECG_PROMPT",
    "LLAVA_V1_SYSTEM",
    "ECG_IMAGE_SIZE",
    "CheckpointFormatError",
    "resolve_model_path",
    "run_sharded",
    "render_ecg_image",
    "is_flat_ecg",
    "QwenVLReader",
    "PulseECGReader",
]

log = logging.getLogger(__name__)

DEFAULT_CXR_PROMPT = (
    "You are an expert radiologist. Read this chest X-ray and write the radiology report "
    "with exactly two sections. FINDINGS: describe the lungs, pleura, heart size, mediastinum, "
    "bones and any lines or devices. IMPRESSION: a concise summary of the main diagnoses. "
    "Write only the report."
)

DEFAULT_ECG_PROMPT = (
    "Interpret this 12-lead ECG. Describe the rhythm, heart rate, axis, PR, QRS and QT "
    "intervals, conduction abnormalities and ST-T changes, then give the final diagnosis."
)

#: The system line of LLaVA's ``conv_vicuna_v1`` / ``llava_v1`` conversation template.
LLAVA_V1_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)

#: Width and height in pixels of :func:`render_ecg_image` (11 x 8.5 in at 100 dpi).
ECG_IMAGE_SIZE = (1100, 850)

QWEN_DEFAULT_ID = "Qwen/Qwen2.5-VL-7B-Instruct"
PULSE_DEFAULT_ID = "PULSE-ECG/PULSE-7B"


class CheckpointFormatError(ValueError):
    """A checkpoint folder exists but is not in the format transformers can load."""


# --------------------------------------------------------------------------------------------
# Model paths
# --------------------------------------------------------------------------------------------

_HOWTO = {
    "qwen": (
        "download {example} on a machine with internet: "
        "`huggingface-cli download {example} --local-dir /models/qwen2.5-vl-7b`, copy the folder "
        "here, then pass model_path=/models/qwen2.5-vl-7b (or put it in the Hugging Face cache, "
        "HF_HOME, and pass the model id)"
    ),
    "pulse": (
        "download {example} on a machine with internet "
        "(`huggingface-cli download {example} --local-dir /models/pulse-7b`), convert it to the "
        "transformers LLaVA format with transformers' "
        "src/transformers/models/llava/convert_llava_weights_to_hf.py (see the mmlib.vlm module "
        "docstring for the command), copy the converted folder here, then pass "
        "model_path=/models/pulse-7b-hf"
    ),
}
_HOWTO_DEFAULT = (
    "download {example} on a machine with internet: `huggingface-cli download {example} "
    "--local-dir /models/<name>`, copy the folder here, then pass model_path=/models/<name> "
    "(or put it in the Hugging Face cache, HF_HOME, and pass the model id)"
)
_EXAMPLE = {"qwen": QWEN_DEFAULT_ID, "pulse": PULSE_DEFAULT_ID}


def resolve_model_path(name_or_path: str | os.PathLike, kind: str = "model") -> Path:
    """Find a checkpoint on local disk; never download.

    ``name_or_path`` is either a folder holding ``config.json`` or a Hub model id
    (``org/name``) that is looked up in the local Hugging Face cache
    (``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or ``~/.cache/huggingface/hub``:
    ``models--{org}--{name}/snapshots/*``), the offline equivalent of
    ``snapshot_download(..., local_files_only=True)``. ``kind`` (``"qwen"``, ``"pulse"`` or any
    label) only tailors the error message.

    Raises ``FileNotFoundError`` naming what was looked for, where, and how to provide it.
    """
    raw = os.fspath(name_or_path)
    example = _EXAMPLE.get(kind, raw if looks_like_model_id(raw) else "<org/model>")
    howto = _HOWTO.get(kind, _HOWTO_DEFAULT).format(example=example)
    p = Path(raw).expanduser()
    if p.is_dir():
        if (p / "config.json").is_file():
            return p.resolve()
        raise FileNotFoundError(
            f"{kind} checkpoint folder {str(p)!r} has no config.json, so it is not a model "
            f"checkpoint. To provide one: {howto}."
        )
    if looks_like_model_id(raw):
        snap, searched = find_in_hub_cache(raw)
        if snap is not None:
            return snap
        where = f"no local folder {raw!r} and no copy in the Hugging Face cache (looked in {', '.join(searched)})"
    else:
        where = f"no checkpoint folder at {str(p)!r}"
    raise FileNotFoundError(
        f"{kind} model {raw!r} not found: {where}; nothing is downloaded (offline). To provide it: {howto}."
    )


# --------------------------------------------------------------------------------------------
# Sharded, batched, data-parallel execution (shared by both readers)
# --------------------------------------------------------------------------------------------


def _partial_state():
    """accelerate's process state. Without CUDA it is created with ``cpu=True`` so that a
    multi-process launch on CPUs (torchrun / ``accelerate launch --multi_gpu`` on a machine
    without GPUs, as the tests do) forms a gloo group instead of N processes that each
    believe they are alone and all redo every shard."""
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1 and state.num_processes == 1:
        raise RuntimeError(
            f"launched with WORLD_SIZE={world} but accelerate sees a single process "
            f"({state.distributed_type}); create PartialState before anything else initialises it"
        )
    return state


def _atomic_write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _read_json(path: Path) -> Any | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def run_sharded(
    items: Sequence[Any],
    process_batch: Callable[[list[Any]], list[str | None]],
    *,
    batch_size: int,
    shard_dir: str | os.PathLike | None = None,
    shard_size: int | None = None,
    settings: dict | None = None,
    digest: Callable[[list[Any]], str] | None = None,
    progress: bool = True,
    desc: str = "generating",
) -> list[str | None]:
    """Run ``process_batch`` over ``items`` in batches, split into shards across processes.

    Items are cut into consecutive shards of ``shard_size`` (default ``4 * batch_size``); under
    ``accelerate launch`` each process takes a contiguous slice of the pending shards and the
    per-shard results are gathered so that every process returns the full list, in order. With
    ``shard_dir``, each finished shard is written atomically to ``shard_{k:05d}.json`` and shards
    already there are read back instead of recomputed. ``manifest.json`` pins the shard size and
    ``settings`` (anything that changes the outputs); ``digest(shard_items)`` fingerprints a
    shard's inputs so a shard from other inputs is detected. Both mismatches raise ``ValueError``.
    """
    n = len(items)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    state = _partial_state()
    settings = dict(settings or {})
    settings["n_items"] = n
    shard_size = int(shard_size or 4 * batch_size)
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    sdir = Path(shard_dir) if shard_dir is not None else None

    if sdir is not None:
        manifest_path = sdir / "manifest.json"
        if state.is_main_process:
            man = _read_json(manifest_path)
            if man is None:
                _atomic_write_json(manifest_path, {"version": 1, "shard_size": shard_size, "settings": settings})
        state.wait_for_everyone()
        man = _read_json(manifest_path)
        if man is None:
            raise ValueError(f"cannot read {manifest_path}")
        if man.get("settings") != json.loads(json.dumps(settings)):
            raise ValueError(
                f"shard_dir {str(sdir)!r} holds results made with other settings "
                f"({man.get('settings')} != {settings}); use a new shard_dir or delete it"
            )
        shard_size = int(man["shard_size"])

    n_shards = math.ceil(n / shard_size) if n else 0
    bounds = [(k * shard_size, min(n, (k + 1) * shard_size)) for k in range(n_shards)]

    def shard_path(k: int) -> Path:
        return sdir / f"shard_{k:05d}.json"

    results: dict[int, list] = {}
    if sdir is not None:
        for k, (a, b) in enumerate(bounds):
            rec = _read_json(shard_path(k))
            if rec is None:
                continue
            ok = rec.get("start") == a and rec.get("stop") == b and len(rec.get("results", [])) == b - a
            if ok and digest is not None and rec.get("digest") != digest(list(items[a:b])):
                raise ValueError(
                    f"{shard_path(k)} was made from other inputs than items[{a}:{b}] (digest mismatch); "
                    "use a new shard_dir for new inputs"
                )
            if ok:
                results[k] = rec["results"]
        # everyone has scanned the folder before anyone writes to it, so all agree on `pending`
        state.wait_for_everyone()
    pending = [k for k in range(n_shards) if k not in results]

    mine: list[tuple[int, list]] = []
    with state.split_between_processes(pending) as my_shards:
        total = sum(bounds[k][1] - bounds[k][0] for k in my_shards)
        bar = None
        if progress and total:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc=desc, disable=not state.is_main_process)
        for k in my_shards:
            a, b = bounds[k]
            chunk = list(items[a:b])
            out: list[str | None] = []
            for i in range(0, len(chunk), batch_size):
                batch = chunk[i : i + batch_size]
                res = list(process_batch(batch))
                if len(res) != len(batch):
                    raise RuntimeError(f"process_batch returned {len(res)} results for {len(batch)} items")
                out.extend(res)
                if bar is not None:
                    bar.update(len(batch))
            if sdir is not None:
                rec = {"start": a, "stop": b, "results": out}
                if digest is not None:
                    rec["digest"] = digest(chunk)
                _atomic_write_json(shard_path(k), rec)
            mine.append((k, out))
        if bar is not None:
            bar.close()

    if state.num_processes > 1:
        from accelerate.utils import gather_object

        gathered = gather_object(mine)
    else:
        gathered = mine
    for k, out in gathered:
        results[k] = out
    flat: list[str | None] = []
    for k in range(n_shards):
        flat.extend(results[k])
    return flat


def _sha1(*parts: bytes | str) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\x00")
    return h.hexdigest()


def _image_digest(items: list[Any]) -> str:
    parts: list[bytes | str] = []
    for x in items:
        if isinstance(x, (str, os.PathLike)):
            parts.append("path:" + os.fspath(x))
        elif isinstance(x, Image.Image):
            try:
                parts.append(f"img:{x.mode}:{x.size}:" + hashlib.sha1(x.tobytes()).hexdigest())
            except Exception:  # unreadable image: stable marker
                parts.append("img:unreadable")
        else:
            parts.append("other:" + repr(type(x)))
    return _sha1(*parts)


def _array_digest(items: list[Any]) -> str:
    return _sha1(*[np.ascontiguousarray(np.asarray(x, dtype=np.float32)).tobytes() for x in items])


def _config_sha(path: Path) -> str:
    return hashlib.sha1((path / "config.json").read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# Shared reader machinery
# --------------------------------------------------------------------------------------------


def _resolve_dtype(dtype, device):
    import torch

    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        return {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
                "fp16": torch.float16, "float32": torch.float32, "fp32": torch.float32}[dtype]
    return dtype


def _load_image(x: Any) -> Image.Image | None:
    """An RGB image from a path or a PIL image; None (logged) when it cannot be read."""
    try:
        if isinstance(x, (str, os.PathLike)):
            with Image.open(x) as im:
                im.load()
                img = im.convert("RGB")
        elif isinstance(x, Image.Image):
            img = x.convert("RGB")
        else:
            raise TypeError(f"expected a path or a PIL image, got {type(x).__name__}")
        if img.width < 1 or img.height < 1:
            raise ValueError("empty image")
        return img
    except Exception as e:  # noqa: BLE001 -- any unreadable input is a missing transcription
        log.warning("unreadable image %r: %s", x if isinstance(x, (str, os.PathLike)) else type(x).__name__, e)
        return None


class _GenerativeReader:
    """Lazy model loading, greedy batched generation and sharded execution; subclasses provide
    ``_load_model`` and ``_encode(images) -> model inputs``."""

    kind = "model"

    def __init__(self, model_path, prompt, max_new_tokens, batch_size, device, dtype, shard_batches, model_kwargs):
        self.model_path = resolve_model_path(model_path, self.kind)
        self.model_kwargs = dict(model_kwargs or {})
        self.model_name = os.fspath(model_path)
        self.prompt = prompt
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = int(batch_size)
        self.shard_batches = int(shard_batches)
        self._device = device
        self._dtype = dtype
        self._model = None
        self._tokenizer = None

    # -- loading -------------------------------------------------------------------------
    @property
    def device(self):
        import torch

        if self._device is None:
            return _partial_state().device
        return torch.device(self._device)

    @property
    def dtype(self):
        return _resolve_dtype(self._dtype, self.device)

    @property
    def model(self):
        if self._model is None:
            self.load()
        return self._model

    def load(self):
        """Load the model and its pre-processing now (otherwise done on first use)."""
        if self._model is None:
            self._load_model()
            self._model.eval()
        return self

    def _from_pretrained_kwargs(self) -> dict:
        kw = {"local_files_only": True, "dtype": self.dtype, "device_map": {"": str(self.device)}}
        kw.update(self.model_kwargs)  # e.g. attn_implementation="flash_attention_2"
        return kw

    def _load_model(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _encode(self, images: list[Image.Image]) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _settings(self) -> dict:
        return {
            "reader": type(self).__name__,
            "model_config_sha1": _config_sha(self.model_path),
            "prompt": self.prompt,
            "max_new_tokens": self.max_new_tokens,
        }

    # -- generation ----------------------------------------------------------------------
    def _generation_config(self):
        gc = copy.deepcopy(self._model.generation_config)
        # greedy, whatever sampling defaults the checkpoint ships (Qwen's has do_sample=True)
        gc.do_sample = False
        gc.num_beams = 1
        gc.temperature = None
        gc.top_p = None
        gc.top_k = None
        gc.max_new_tokens = self.max_new_tokens
        gc.max_length = None
        if gc.pad_token_id is None:
            gc.pad_token_id = self._tokenizer.pad_token_id
        return gc

    def generate_images(self, images: list[Image.Image]) -> list[str]:
        """Greedy generation for a batch of loaded RGB images (left padded), one text each."""
        import torch

        model = self.model
        inputs = self._encode(images)
        inputs = {k: (v.to(model.device) if hasattr(v, "to") else v) for k, v in inputs.items()}
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        with torch.inference_mode():
            out = model.generate(**inputs, generation_config=self._generation_config())
        new = out[:, inputs["input_ids"].shape[1] :]
        texts = self._tokenizer.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return [t.strip() for t in texts]

    def _run(self, items, prepare: Callable[[Any], Image.Image | None], shard_dir, progress, digest, desc):
        def process_batch(batch):
            imgs = [prepare(x) for x in batch]
            ok = [i for i, im in enumerate(imgs) if im is not None]
            res: list[str | None] = [None] * len(batch)
            if ok:
                for i, text in zip(ok, self.generate_images([imgs[i] for i in ok])):
                    res[i] = text
            return res

        return run_sharded(
            items,
            process_batch,
            batch_size=self.batch_size,
            shard_dir=shard_dir,
            shard_size=self.batch_size * self.shard_batches,
            settings=self._settings(),
            digest=digest,
            progress=progress,
            desc=desc,
        )


# --------------------------------------------------------------------------------------------
# Chest X-rays: Qwen2.5-VL
# --------------------------------------------------------------------------------------------

# Used only when the checkpoint ships no chat template (the real one does).
_QWEN_FALLBACK_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _processor_chat_template(path: Path) -> str | None:
    jinja = path / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    js = _read_json(path / "chat_template.json")
    if isinstance(js, dict) and isinstance(js.get("chat_template"), str):
        return js["chat_template"]
    return None


class QwenVLReader(_GenerativeReader):
    """Chest X-ray transcription with Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``).

    Each image goes in a one-turn chat (the checkpoint's chat template: image, then
    ``prompt`` asking for FINDINGS and IMPRESSION sections); batches are generated greedily with
    left padding; bf16 on CUDA, float32 on CPU unless ``dtype`` says otherwise; ``device=None``
    means the accelerate process's device (``cuda:<local rank>`` under ``accelerate launch``,
    else cuda if available, else cpu).

    Pre-processing is the ``Qwen2_5_VLProcessor`` recipe built from its parts -- the tokenizer,
    the PIL backend of the Qwen2-VL image processor (``Qwen2VLImageProcessorPil``, read from the
    checkpoint's ``preprocessor_config.json``), and each ``<|image_pad|>`` expanded to
    ``prod(image_grid_thw) // merge_size**2`` tokens with ``mm_token_type_ids`` marking them --
    because in transformers 5 the processor class needs torchvision (its video processor) and
    the PIL backend gives identical pixels on every machine. ``max_pixels`` caps the image
    resolution (default 1280 * 28 * 28, the Qwen model card's suggestion: <= 1280 visual
    tokens per image; the checkpoint's own cap, ~12.8 Mpx, is wasteful for 3000 px CXRs);
    ``None`` keeps the checkpoint's settings. ``shard_batches`` batches make one shard;
    ``model_kwargs`` go to ``from_pretrained`` (e.g. ``{"attn_implementation":
    "flash_attention_2"}`` where flash-attn is installed).
    """

    kind = "qwen"

    def __init__(
        self,
        model_path: str | os.PathLike = QWEN_DEFAULT_ID,
        prompt: str = DEFAULT_CXR_PROMPT,
        max_new_tokens: int = 256,
        batch_size: int = 8,
        device=None,
        dtype=None,
        *,
        max_pixels: int | None = 1280 * 28 * 28,
        min_pixels: int | None = None,
        shard_batches: int = 4,
        model_kwargs: dict | None = None,
    ):
        super().__init__(model_path, prompt, max_new_tokens, batch_size, device, dtype, shard_batches, model_kwargs)
        self.max_pixels = max_pixels
        self.min_pixels = min_pixels
        self._image_processor = None
        self._chat_template = None

    def _settings(self) -> dict:
        return {**super()._settings(), "max_pixels": self.max_pixels, "min_pixels": self.min_pixels}

    def _load_model(self):
        from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        path = self.model_path
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = "<|endoftext|>" if "<|endoftext|>" in tok.get_vocab() else tok.eos_token
        ip = Qwen2VLImageProcessorPil.from_pretrained(path, local_files_only=True)
        size = {"shortest_edge": ip.size.shortest_edge, "longest_edge": ip.size.longest_edge}
        if self.min_pixels is not None:
            size["shortest_edge"] = int(self.min_pixels)
        if self.max_pixels is not None:
            size["longest_edge"] = int(self.max_pixels)
        self._size = size
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            path, **self._from_pretrained_kwargs()
        )
        self._chat_template = tok.chat_template or _processor_chat_template(path) or _QWEN_FALLBACK_TEMPLATE
        self._tokenizer, self._image_processor, self._model = tok, ip, model

    def prompt_text(self) -> str:
        """The chat-templated prompt for one image (before image-token expansion)."""
        if self._tokenizer is None:
            self.load()
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]}]
        return self._tokenizer.apply_chat_template(
            messages, chat_template=self._chat_template, tokenize=False, add_generation_prompt=True
        )

    def _encode(self, images):
        import torch

        cfg = self._model.config
        tok = self._tokenizer
        image_token = tok.convert_ids_to_tokens(cfg.image_token_id)
        vis = self._image_processor(images=images, size=self._size, return_tensors="pt")
        merge = self._image_processor.merge_size**2
        template = self.prompt_text()
        if template.count(image_token) != 1:
            raise ValueError(f"chat template should place one {image_token} per image, got: {template!r}")
        texts = []
        for thw in vis["image_grid_thw"]:
            n_tok = int(torch.prod(thw).item()) // merge
            texts.append(template.replace(image_token, image_token * n_tok))
        enc = tok(texts, padding=True, padding_side="left", return_tensors="pt", add_special_tokens=False)
        mm = (enc["input_ids"] == cfg.image_token_id).to(torch.long)
        return {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "mm_token_type_ids": mm,
            "pixel_values": vis["pixel_values"],
            "image_grid_thw": vis["image_grid_thw"],
        }

    def transcribe(
        self,
        images: Sequence[Image.Image | str | os.PathLike],
        shard_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> list[str | None]:
        """One report per image (``None`` where the image could not be read)."""
        return self._run(list(images), _load_image, shard_dir, progress, _image_digest, "CXR -> text")


# --------------------------------------------------------------------------------------------
# ECGs: rendering and PULSE-7B (HF LLaVA)
# --------------------------------------------------------------------------------------------

# A (T, 12) record's leads are in the order mmlib.schema.LEADS.
_LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
_RHYTHM_LEAD = "II"

# Paper geometry of render_ecg_image, in pixels (4 px per mm).
_PX_MM = 4
_GRID_X0, _GRID_Y0 = 30, 50  # top-left of the grid
_GRID_W_MM, _GRID_H_MM = 260, 195
_TRACE_X0_MM = 10  # traces start after the 1 mV calibration pulse
_ROW_BASE_MM = (25, 70, 115, 165)  # baselines of the three 3x4 rows and the rhythm strip
_GRID_MINOR = (255, 208, 208)
_GRID_MAJOR = (236, 128, 128)


def is_flat_ecg(signal: np.ndarray, tol: float = 1e-3) -> bool:
    """True when every sample is NaN or ``|x| < tol`` mV (no recording to interpret)."""
    a = np.asarray(signal, dtype=np.float64)
    finite = np.isfinite(a)
    return bool(not finite.any() or np.all(np.abs(a[finite]) < tol))


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except Exception:  # noqa: BLE001 -- Pillow without FreeType
        return ImageFont.load_default()


def render_ecg_image(signal: np.ndarray, fs: int = FS) -> Image.Image:
    """Render a 12-lead ECG as a standard paper print (RGB, :data:`ECG_IMAGE_SIZE` = 1100x850 px).

    ``signal`` is (T, 12) in mV, leads in the order :data:`mmlib.schema.LEADS`, sampled at ``fs`` Hz
    (the first 10 s are drawn). The print is 25 mm/s and 10 mm/mV at 4 px/mm on a 260 x 195 mm
    grid of 1 mm (light red) and 5 mm (red) squares; a 3 x 4 layout (rows I, aVR, V1, V4 /
    II, aVL, V2, V5 / III, aVF, V3, V6, each lead for its own 2.5 s window) with lead labels,
    1 mV x 0.2 s calibration pulses and column separators, plus a 10 s lead II rhythm strip
    at the bottom. NaN samples leave gaps; traces may overlap neighbouring rows as on paper
    and are clipped to the grid. Deterministic: the same input gives the same pixels.
    """
    sig = np.asarray(signal, dtype=np.float64)
    if sig.ndim != 2 or sig.shape[1] != 12:
        raise ValueError(f"signal: expected shape (T, 12) in mV, got {sig.shape}")
    if not (isinstance(fs, (int, np.integer)) and fs > 0):
        raise ValueError(f"fs: expected a positive integer sampling rate, got {fs!r}")
    W, H = ECG_IMAGE_SIZE
    img = Image.new("RGB", (W, H), (255, 255, 255))
    d = ImageDraw.Draw(img)
    x0, y0 = _GRID_X0, _GRID_Y0
    x1, y1 = x0 + _GRID_W_MM * _PX_MM, y0 + _GRID_H_MM * _PX_MM
    for major in (False, True):
        step = 5 if major else 1
        col = _GRID_MAJOR if major else _GRID_MINOR
        for mm in range(0, _GRID_W_MM + 1, step):
            if major or mm % 5:
                d.line([(x0 + mm * _PX_MM, y0), (x0 + mm * _PX_MM, y1)], fill=col, width=1)
        for mm in range(0, _GRID_H_MM + 1, step):
            if major or mm % 5:
                d.line([(x0, y0 + mm * _PX_MM), (x1, y0 + mm * _PX_MM)], fill=col, width=1)

    ink = (0, 0, 0)
    d.text((x0, 12), f"25 mm/s   10 mm/mV   {fs} Hz   12-lead ECG", fill=ink, font=_font(18))
    px_s = 25 * _PX_MM  # pixels per second
    px_mv = 10 * _PX_MM  # pixels per mV
    tx0 = x0 + _TRACE_X0_MM * _PX_MM
    label_font = _font(16)

    def baseline(row: int) -> int:
        return y0 + _ROW_BASE_MM[row] * _PX_MM

    def trace(values: np.ndarray, t0: float, yb: int) -> None:
        """Polyline of `values` starting at time t0 s on baseline yb; NaNs break the line."""
        xs = tx0 + (t0 + np.arange(len(values)) / fs) * px_s
        ys = np.clip(yb - values * px_mv, y0, y1)
        good = np.isfinite(values)
        start = None
        for i in range(len(values) + 1):
            if i < len(values) and good[i]:
                if start is None:
                    start = i
                continue
            if start is not None:
                seg = list(zip(xs[start:i].tolist(), ys[start:i].tolist()))
                if len(seg) == 1:
                    seg = seg * 2
                d.line(seg, fill=ink, width=2)
                start = None

    def calibration(yb: int) -> None:
        cx = x0 + 2 * _PX_MM
        pts = [(x0, yb), (cx, yb), (cx, yb - px_mv), (cx + 5 * _PX_MM, yb - px_mv), (cx + 5 * _PX_MM, yb), (tx0, yb)]
        d.line(pts, fill=ink, width=2)

    n10 = min(len(sig), 10 * fs)
    seg = int(round(2.5 * fs))
    for r, row in enumerate(_LAYOUT):
        yb = baseline(r)
        calibration(yb)
        for c, lead in enumerate(row):
            a, b = c * seg, min(n10, (c + 1) * seg)
            if a < b:
                trace(sig[a:b, LEADS.index(lead)], a / fs, yb)
            xl = tx0 + int(c * 2.5 * px_s)
            if c:
                d.line([(xl, yb - 5 * _PX_MM), (xl, yb + 5 * _PX_MM)], fill=ink, width=2)
            d.text((xl + 2 * _PX_MM, yb - 16 * _PX_MM), lead, fill=ink, font=label_font)
    yb = baseline(3)
    calibration(yb)
    trace(sig[:n10, LEADS.index(_RHYTHM_LEAD)], 0.0, yb)
    d.text((tx0 + 2 * _PX_MM, yb - 16 * _PX_MM), _RHYTHM_LEAD, fill=ink, font=label_font)
    return img


def _check_hf_llava(path: Path) -> dict:
    """The config of an HF-format LLaVA checkpoint; CheckpointFormatError for an original one."""
    cfg = _read_json(path / "config.json") or {}
    mt = cfg.get("model_type")
    arch = cfg.get("architectures") or []
    original = (
        mt not in ("llava", "llava_next")
        or "vision_config" not in cfg
        or "mm_vision_tower" in cfg
        or any(a.startswith("Llava") and a.endswith("ForCausalLM") for a in arch)
    )
    if original:
        aspect = cfg.get("image_aspect_ratio")
        tiling = (
            f" This checkpoint uses image_aspect_ratio={aspect!r}: for the tiling-faithful LLaVA-NeXT "
            "format use src/transformers/models/llava_next/convert_llava_next_weights_to_hf.py instead."
            if aspect == "anyres"
            else ""
        )
        raise CheckpointFormatError(
            f"{str(path)!r} is an original (haotian-liu/LLaVA) checkpoint (model_type={mt!r}, "
            f"architectures={arch}, {'no vision_config' if 'vision_config' not in cfg else 'mm_vision_tower set'}), "
            "not transformers' HF-LLaVA format. Convert it once on a machine with internet with "
            "transformers' src/transformers/models/llava/convert_llava_weights_to_hf.py "
            "(--text_model_id lmsys/vicuna-7b-v1.5 --vision_model_id openai/clip-vit-large-patch14-336 "
            "--old_state_dict_id PULSE-ECG/PULSE-7B --output_hub_path <you>/PULSE-7B-hf), download the "
            "converted folder and pass it as model_path (details in the mmlib.vlm module docstring)."
            + tiling
        )
    return cfg


def _expand_to_square(img: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """LLaVA's ``expand2square`` (image_aspect_ratio="pad"): centre on a square of `fill`."""
    w, h = img.size
    if w == h:
        return img
    s = max(w, h)
    out = Image.new(img.mode, (s, s), fill)
    out.paste(img, ((s - w) // 2, (s - h) // 2))
    return out


class PulseECGReader(_GenerativeReader):
    """ECG interpretation with PULSE-7B in transformers' LLaVA format.

    Each ECG is drawn with :func:`render_ecg_image` and sent in LLaVA's v1 conversation format,
    ``"{LLAVA_V1_SYSTEM} USER: <image>\\n{prompt} ASSISTANT:"``, through
    ``LlavaForConditionalGeneration`` (config ``model_type`` ``"llava"``; the print is padded
    to a square as LLaVA's ``image_aspect_ratio="pad"`` does) or
    ``LlavaNextForConditionalGeneration`` (``"llava_next"``, anyres tiling) and the checkpoint's
    processor (``AutoProcessor``). An original LLaVA checkpoint (``llava_llama``, no
    ``vision_config``) raises :class:`CheckpointFormatError` at construction, with the
    conversion command; see the module docstring. Batching, sharding, devices, dtypes and
    ``accelerate launch`` behave as in :class:`QwenVLReader`. Flat-line ECGs give ``None``
    without a model call.
    """

    kind = "pulse"

    def __init__(
        self,
        model_path: str | os.PathLike = PULSE_DEFAULT_ID,
        prompt: str = DEFAULT_ECG_PROMPT,
        max_new_tokens: int = 256,
        batch_size: int = 8,
        device=None,
        dtype=None,
        *,
        shard_batches: int = 4,
        model_kwargs: dict | None = None,
    ):
        super().__init__(model_path, prompt, max_new_tokens, batch_size, device, dtype, shard_batches, model_kwargs)
        self.config = _check_hf_llava(self.model_path)
        self._processor = None

    def _load_model(self):
        from transformers import AutoProcessor

        if self.config["model_type"] == "llava_next":
            from transformers import LlavaNextForConditionalGeneration as cls
        else:
            from transformers import LlavaForConditionalGeneration as cls
        path = self.model_path
        proc = AutoProcessor.from_pretrained(path, local_files_only=True)
        model = cls.from_pretrained(path, **self._from_pretrained_kwargs())
        cfg = model.config
        # convert_llava_weights_to_hf.py builds LlavaProcessor(tokenizer, image_processor) without
        # the fields the <image> expansion needs: take them from the model config.
        if getattr(proc, "patch_size", 0) is None:
            proc.patch_size = cfg.vision_config.patch_size
        if getattr(proc, "vision_feature_select_strategy", 0) is None:
            proc.vision_feature_select_strategy = cfg.vision_feature_select_strategy
        is_clip = getattr(cfg.vision_config, "model_type", "") == "clip_vision_model"
        if is_clip and getattr(proc, "num_additional_image_tokens", 1) == 0:
            proc.num_additional_image_tokens = 1  # CLIP's CLS token (dropped again by "default")
        tok = proc.tokenizer
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.unk_token or tok.eos_token
        self._processor, self._tokenizer, self._model = proc, tok, model

    def prompt_text(self) -> str:
        """The LLaVA v1 prompt for one ECG image."""
        return f"{LLAVA_V1_SYSTEM} USER: <image>\n{self.prompt} ASSISTANT:"

    def _encode(self, images):
        proc = self._processor
        if self.config["model_type"] == "llava":
            mean = getattr(proc.image_processor, "image_mean", None) or (0.5, 0.5, 0.5)
            fill = tuple(int(round(255 * m)) for m in mean)
            images = [_expand_to_square(im, fill) for im in images]
        text = self.prompt_text()
        if proc.image_token != "<image>":
            text = text.replace("<image>", proc.image_token)
        enc = proc(text=[text] * len(images), images=images, padding=True, return_tensors="pt")
        return dict(enc)

    def interpret(
        self,
        signals: np.ndarray,
        fs: int = FS,
        shard_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> list[str | None]:
        """One interpretation per ECG of ``signals`` (n, T, 12) in mV (``None`` for flat lines)."""
        arr = np.asarray(signals)
        if arr.ndim != 3 or arr.shape[2] != 12:
            raise ValueError(f"signals: expected shape (n, T, 12) in mV, got {arr.shape}")

        def prepare(sig):
            if is_flat_ecg(sig):
                return None
            return render_ecg_image(sig, fs=fs)

        items = [arr[i] for i in range(len(arr))]
        digest = lambda chunk: _sha1(f"fs={fs}", _array_digest(chunk))  # noqa: E731
        return self._run(items, prepare, shard_dir, progress, digest, "ECG -> text")
