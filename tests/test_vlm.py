"""Tests of the GPU-path transcription backends (mmlib.vlm) on tiny models built in code.

The checkpoints (tests/tiny_models.py) are randomly initialised, saved with ``save_pretrained``
and loaded back through ``resolve_model_path`` and the readers exactly as a user's local copy
of Qwen2.5-VL-7B-Instruct or converted PULSE-7B would be. Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tiny_models  # tests/ is on sys.path under pytest (rootdir conftest)

from mmlib.vlm import (  # noqa: E402
    ECG_IMAGE_SIZE,
    LEADS,
    CheckpointFormatError,
    PulseECGReader,
    QwenVLReader,
    is_flat_ecg,
    render_ecg_image,
    resolve_model_path,
    run_sharded,
)

pytestmark = pytest.mark.timeout(300)

MAX_NEW = 8
QWEN_KW = dict(max_new_tokens=MAX_NEW, max_pixels=112 * 112, min_pixels=56 * 56)


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory) -> Path:
    d = tiny_models.build_tiny_qwen25_vl(tmp_path_factory.mktemp("models") / "tiny-qwen2.5-vl")
    # the released checkpoint ships sampling defaults: the reader must still decode greedily
    gen = json.loads((d / "generation_config.json").read_text())
    gen.update(do_sample=True, temperature=0.7, top_p=0.9, top_k=50, repetition_penalty=1.05)
    (d / "generation_config.json").write_text(json.dumps(gen))
    return d


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory) -> Path:
    return tiny_models.build_tiny_llava(tmp_path_factory.mktemp("models") / "tiny-pulse-hf", image_size=112)


def _images(n: int) -> list[Image.Image]:
    """Varied sizes and contents (different numbers of visual tokens per image)."""
    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        h, w = 60 + 17 * i, 90 - 9 * i
        out.append(Image.fromarray((rng.random((h, w, 3)) ** (1 + i) * 255).astype(np.uint8)))
    return out


def _ecgs(n: int, T: int = 1000) -> np.ndarray:
    """Noisy 12-lead records of very different amplitudes (so their prints differ visibly
    even at the tiny model's 112 px input)."""
    amps = [0.1, 0.5, 2.0, 1.0, 8.0, 4.0]
    rng = np.random.default_rng(0)
    return np.stack([amps[i % len(amps)] * rng.normal(size=(T, 12)) for i in range(n)])


class _CountGenerate:
    """Wraps a loaded model's generate to count calls."""

    def __init__(self, reader):
        self.calls = 0
        self.batch_sizes: list[int] = []
        model = reader.model
        orig = model.generate

        def generate(*a, **kw):
            self.calls += 1
            self.batch_sizes.append(int(kw["input_ids"].shape[0]))
            return orig(*a, **kw)

        model.generate = generate


# ------------------------------------------------------------------------------ resolve_model_path


def test_resolve_local_folder(qwen_dir):
    assert resolve_model_path(str(qwen_dir), "qwen") == qwen_dir.resolve()
    assert resolve_model_path(qwen_dir, "qwen") == qwen_dir.resolve()


def test_resolve_from_hf_cache(tmp_path, monkeypatch):
    hub = tmp_path / "hf_home" / "hub" / "models--SomeOrg--Some-VLM"
    old, new = hub / "snapshots" / "aaa111", hub / "snapshots" / "bbb222"
    for s in (old, new):
        s.mkdir(parents=True)
        (s / "config.json").write_text("{}")
    (hub / "refs").mkdir()
    (hub / "refs" / "main").write_text("aaa111")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    assert resolve_model_path("SomeOrg/Some-VLM", "qwen") == old.resolve()  # refs/main wins
    (hub / "refs" / "main").unlink()
    os.utime(old / "config.json", (1, 1))
    assert resolve_model_path("SomeOrg/Some-VLM", "qwen") == new.resolve()  # else newest snapshot


def test_missing_model_id_says_how_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    with pytest.raises(FileNotFoundError) as e:
        resolve_model_path("Qwen/Qwen2.5-VL-7B-Instruct", "qwen")
    msg = str(e.value)
    assert "Qwen/Qwen2.5-VL-7B-Instruct" in msg
    assert str(tmp_path / "empty_home" / "hub") in msg  # where it looked
    assert "huggingface-cli download Qwen/Qwen2.5-VL-7B-Instruct" in msg and "model_path=" in msg
    # the readers fail at construction, before anything heavy
    with pytest.raises(FileNotFoundError, match="Qwen2.5-VL-7B-Instruct"):
        QwenVLReader()
    with pytest.raises(FileNotFoundError, match="convert_llava_weights_to_hf.py"):
        PulseECGReader()


def test_missing_folder_names_the_path(tmp_path):
    missing = tmp_path / "models" / "qwen2.5-vl-7b"
    with pytest.raises(FileNotFoundError) as e:
        QwenVLReader(model_path=str(missing))
    assert str(missing) in str(e.value) and "huggingface-cli download" in str(e.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_model_path(empty, "pulse")


# ------------------------------------------------------------------------------ Qwen2.5-VL


def test_qwen_transcribe_batched_greedy_and_unreadable(qwen_dir, tmp_path):
    imgs = _images(5)
    on_disk = tmp_path / "cxr.png"
    imgs[1].save(on_disk)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not a jpeg")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(on_disk.read_bytes()[:60])
    inputs = [imgs[0], str(on_disk), str(broken), imgs[2], str(tmp_path / "nope.png"), imgs[3], truncated, imgs[4]]

    reader = QwenVLReader(str(qwen_dir), batch_size=3, **QWEN_KW)
    counter = _CountGenerate(reader)
    out = reader.transcribe(inputs, progress=False)
    assert len(out) == len(inputs)
    assert [o is None for o in out] == [False, False, True, False, True, False, True, False]
    assert all(isinstance(o, str) and o for o in out if o is not None)
    # unreadable images are dropped from their batch, not sent to the model
    assert counter.batch_sizes == [2, 2, 1]
    assert out[1] == reader.transcribe([imgs[1]], progress=False)[0]  # path == in-memory image
    assert len({o for o in out if o is not None}) > 1  # the image matters, even to a random model

    # same inputs -> same outputs; one by one (no padding) == batched (left padding)
    single = QwenVLReader(str(qwen_dir), batch_size=1, **QWEN_KW)
    assert single.transcribe(inputs, progress=False) == out


def test_qwen_inputs_follow_the_processor_recipe(qwen_dir):
    reader = QwenVLReader(str(qwen_dir), **QWEN_KW).load()
    prompt = reader.prompt_text()
    assert prompt.startswith("<|im_start|>system\n")
    assert "<|vision_start|><|image_pad|><|vision_end|>" + reader.prompt in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "FINDINGS" in reader.prompt and "IMPRESSION" in reader.prompt
    enc = reader._encode([im.convert("RGB") for im in _images(3)])
    image_id = reader.model.config.image_token_id
    rows = zip(enc["input_ids"], enc["image_grid_thw"], enc["mm_token_type_ids"], enc["attention_mask"])
    for row, thw, mm, att in rows:
        n = int(thw.prod()) // 4  # merge_size 2
        assert int((row == image_id).sum()) == n and int(mm.sum()) == n
        assert att[-1] == 1  # left padding
    assert int(enc["image_grid_thw"].prod(dim=1).sum()) == enc["pixel_values"].shape[0]


def test_qwen_shards_resume_without_generating(qwen_dir, tmp_path):
    imgs = _images(5)
    sd = tmp_path / "shards"
    r1 = QwenVLReader(str(qwen_dir), batch_size=2, shard_batches=1, **QWEN_KW)
    c1 = _CountGenerate(r1)
    out1 = r1.transcribe(imgs, shard_dir=sd, progress=False)
    assert c1.calls == 3
    assert sorted(p.name for p in sd.iterdir()) == ["manifest.json"] + [f"shard_{k:05d}.json" for k in range(3)]
    assert json.loads((sd / "shard_00001.json").read_text())["results"] == out1[2:4]

    # a fresh reader on the same shard_dir: everything is read back, the model is never loaded
    r2 = QwenVLReader(str(qwen_dir), batch_size=2, shard_batches=1, **QWEN_KW)
    assert r2.transcribe(imgs, shard_dir=sd, progress=False) == out1
    assert r2._model is None

    # an interrupted run: only the missing shard is recomputed
    (sd / "shard_00001.json").unlink()
    c1.calls = 0
    assert r1.transcribe(imgs, shard_dir=sd, progress=False) == out1
    assert c1.calls == 1

    # other settings or other inputs in the same shard_dir are refused, not mixed
    with pytest.raises(ValueError, match="other settings"):
        QwenVLReader(str(qwen_dir), prompt="Describe.", batch_size=2, **QWEN_KW).transcribe(imgs, shard_dir=sd)
    with pytest.raises(ValueError, match="other inputs"):
        r1.transcribe(imgs[::-1], shard_dir=sd, progress=False)


# ------------------------------------------------------------------------------ sharding helper


def test_run_sharded_order_and_shards(tmp_path):
    calls = []

    def upper(batch):
        calls.append(list(batch))
        return [s.upper() for s in batch]

    items = [f"x{i}" for i in range(11)]
    out = run_sharded(items, upper, batch_size=2, shard_dir=tmp_path, shard_size=4, progress=False)
    assert out == [s.upper() for s in items]
    assert [len(c) for c in calls] == [2, 2, 2, 2, 2, 1]
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man["shard_size"] == 4 and man["settings"]["n_items"] == 11
    # the manifest pins the shard size: a re-run with another batch size reuses the shards
    calls.clear()
    assert run_sharded(items, upper, batch_size=3, shard_dir=tmp_path, progress=False) == out
    assert calls == []
    assert run_sharded([], upper, batch_size=2, progress=False) == []


def test_data_parallel_under_accelerate_launch(qwen_dir, tmp_path):
    """Two CPU processes under `accelerate launch`: each takes half the shards, both return the
    full, ordered list, identical to a single-process run."""
    imgs = _images(4)
    paths = []
    for i, im in enumerate(imgs):
        paths.append(str(tmp_path / f"img{i}.png"))
        im.save(paths[-1])
    script = tmp_path / "dp.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, sys
            from accelerate import PartialState
            from mmlib.vlm import QwenVLReader
            state = PartialState(cpu=True)
            reader = QwenVLReader({str(qwen_dir)!r}, batch_size=1, shard_batches=1,
                                  max_new_tokens={MAX_NEW}, max_pixels=112 * 112, min_pixels=56 * 56)
            out = reader.transcribe({paths!r}, shard_dir=sys.argv[1], progress=False)
            with open(sys.argv[1] + f"/out_{{state.process_index}}.json", "w") as f:
                json.dump({{"out": out, "n": state.num_processes, "loaded": reader._model is not None}}, f)
            state.destroy_process_group()
            """
        )
    )
    sd = tmp_path / "shards"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    with socket.socket() as s:  # a free port, not the default 29500 another job may hold
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--main_process_port", str(port), "--mixed_precision", "no",
           "--dynamo_backend", "no", str(script), str(sd)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    r0 = json.loads((sd / "out_0.json").read_text())
    r1 = json.loads((sd / "out_1.json").read_text())
    assert r0["n"] == r1["n"] == 2
    expected = QwenVLReader(str(qwen_dir), batch_size=4, **QWEN_KW).transcribe(paths, progress=False)
    assert r0["out"] == r1["out"] == expected
    assert len(list(sd.glob("shard_*.json"))) == 4


# ------------------------------------------------------------------------------ ECG rendering


def test_render_ecg_image_print_geometry():
    sig = np.zeros((1000, 12))
    sig[:, LEADS.index("II")] = 1.0  # a 1 mV step in lead II, for the scale check
    img = render_ecg_image(sig, fs=100)
    assert img.size == ECG_IMAGE_SIZE == (1100, 850) and img.mode == "RGB"
    a = np.asarray(img).astype(int)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    reddish = (r > 200) & (g < 235) & (r - g > 20) & (abs(g - b) < 20)
    dark = (r < 80) & (g < 80) & (b < 80)
    assert reddish.mean() > 0.15  # the grid covers the paper
    assert dark.mean() > 0.003
    # 1 mm small squares: grid lines every 4 px along a row of the paper between traces
    row = a[50 + 4 * 45 + 2, 30:1071]  # 2 px below a 1 mm line, far from the traces
    col_lines = np.flatnonzero((row[:, 0] > 200) & (row[:, 1] < 235))
    assert set(np.diff(col_lines)) == {4}
    # 10 mm/mV: lead II at +1 mV sits 40 px above its baseline in the rhythm strip (y = 710)
    strip = dark[640:760, 100:1060]
    ys = np.flatnonzero(strip.any(axis=1)) + 640
    assert 668 <= ys.min() <= 672 and ys.max() <= 672
    # deterministic
    assert np.array_equal(np.asarray(render_ecg_image(sig, fs=100)), a.astype(np.uint8))


def test_render_ecg_image_inputs():
    from mmlib.data.ecg import LEADS as SIMULATOR_LEADS

    assert LEADS == tuple(SIMULATOR_LEADS)  # same lead order as the cohort's waveforms
    sig = _ecgs(1)[0]
    sig[100:150, :] = np.nan  # gaps are allowed
    assert render_ecg_image(sig, fs=100).size == ECG_IMAGE_SIZE
    assert render_ecg_image(np.zeros((5000, 12)), fs=500).size == ECG_IMAGE_SIZE
    with pytest.raises(ValueError, match="T, 12"):
        render_ecg_image(np.zeros((1000, 8)))


def test_is_flat_ecg():
    assert is_flat_ecg(np.zeros((1000, 12)))
    assert is_flat_ecg(np.full((1000, 12), np.nan))
    x = np.full((1000, 12), 5e-4)
    x[::7] = np.nan
    assert is_flat_ecg(x)
    x[3, 4] = 0.2
    assert not is_flat_ecg(x)


# ------------------------------------------------------------------------------ PULSE (LLaVA)


def test_unconverted_llava_checkpoint_is_refused(tmp_path):
    orig = tiny_models.write_original_llava_config(tmp_path / "PULSE-7B")
    with pytest.raises(CheckpointFormatError) as e:
        PulseECGReader(model_path=str(orig))
    msg = str(e.value)
    assert "llava_llama" in msg and "convert_llava_weights_to_hf.py" in msg and "model_path" in msg
    assert "llava_next" in msg  # the anyres (LLaVA-1.6) alternative is pointed out
    # an HF-looking model_type without vision_config is refused too
    (orig / "config.json").write_text(json.dumps({"model_type": "llava", "architectures": ["LlavaLlamaForCausalLM"]}))
    with pytest.raises(CheckpointFormatError, match="convert"):
        PulseECGReader(model_path=str(orig))


def test_pulse_interpret(llava_dir, tmp_path):
    sig = _ecgs(5)
    sig[1] = 0.0  # flat line
    sig[3] = np.nan  # no recording
    reader = PulseECGReader(str(llava_dir), max_new_tokens=MAX_NEW, batch_size=2)
    text = reader.prompt_text()
    assert text.startswith("A chat between a curious human and an artificial intelligence assistant.")
    assert text.endswith(f"USER: <image>\n{reader.prompt} ASSISTANT:")
    counter = _CountGenerate(reader)
    out = reader.interpret(sig, fs=100, progress=False)
    assert [o is None for o in out] == [False, True, False, True, False]
    assert all(isinstance(o, str) and o for o in out if o is not None)
    assert counter.batch_sizes == [1, 1, 1]  # flat ECGs never reach the model
    assert len({out[0], out[2], out[4]}) > 1

    # greedy determinism and batch == one by one, through a fresh load
    single = PulseECGReader(str(llava_dir), max_new_tokens=MAX_NEW, batch_size=1)
    assert single.interpret(sig, fs=100, progress=False) == out
    batched = PulseECGReader(str(llava_dir), max_new_tokens=MAX_NEW, batch_size=5)
    c = _CountGenerate(batched)
    assert batched.interpret(sig, fs=100, progress=False) == out
    assert c.batch_sizes == [3]

    # all-flat input: no model load at all
    idle = PulseECGReader(str(llava_dir), max_new_tokens=MAX_NEW)
    assert idle.interpret(np.zeros((2, 1000, 12)), progress=False) == [None, None]
    assert idle._model is None

    # shards resume without generating
    sd = tmp_path / "ecg_shards"
    first = reader.interpret(sig, fs=100, shard_dir=sd, progress=False)
    assert first == out
    counter.calls = 0
    again = PulseECGReader(str(llava_dir), max_new_tokens=MAX_NEW, batch_size=2)
    assert again.interpret(sig, fs=100, shard_dir=sd, progress=False) == out
    assert again._model is None
    with pytest.raises(ValueError, match="other inputs"):
        again.interpret(sig, fs=50, shard_dir=sd, progress=False)
    with pytest.raises(ValueError, match=r"\(n, T, 12\)"):
        reader.interpret(sig[0])


def test_pulse_pads_print_to_square_for_llava(llava_dir):
    reader = PulseECGReader(str(llava_dir), max_new_tokens=MAX_NEW).load()
    assert reader.config["model_type"] == "llava"
    enc = reader._encode([render_ecg_image(_ecgs(1)[0])])
    pv = enc["pixel_values"]
    assert tuple(pv.shape) == (1, 3, 112, 112)
    # 1100x850 print centred on a 1100x1100 square of the normalisation mean: the top and bottom
    # rows are ~0 after normalisation and the whole width (all four lead columns) is kept
    assert float(pv[0, :, :10].abs().max()) < 0.05 and float(pv[0, :, -10:].abs().max()) < 0.05
    assert float(pv[0, :, 56].abs().max()) > 0.5
    n_img = int((enc["input_ids"][0] == reader.model.config.image_token_id).sum())
    assert n_img == (112 // 14) ** 2  # CLS dropped by the "default" feature strategy


def test_qwen_reads_the_checkpoint_pixel_budget(qwen_dir):
    # max_pixels=None keeps the checkpoint's preprocessor_config.json (min/max_pixels keys)
    r = QwenVLReader(str(qwen_dir), max_new_tokens=2, max_pixels=None).load()
    assert r._size == {"shortest_edge": 56 * 56, "longest_edge": 112 * 112}
    big = Image.new("RGB", (1000, 800), (90, 90, 90))
    enc = r._encode([big])
    assert int(enc["image_grid_thw"].prod()) * 14 * 14 <= 112 * 112
    assert r.dtype == r.model.dtype == __import__("torch").float32  # float32 on CPU


def test_pulse_bfloat16_on_request(llava_dir):
    import torch

    r = PulseECGReader(
        str(llava_dir), max_new_tokens=3, dtype="bfloat16", model_kwargs={"attn_implementation": "eager"}
    )
    out = r.interpret(_ecgs(2), progress=False)
    assert r.model.dtype == torch.bfloat16 and all(isinstance(o, str) for o in out)
    assert r.model.config._attn_implementation == "eager"


def test_pulse_processor_without_patch_size(llava_dir, tmp_path):
    """The conversion script saves LlavaProcessor(tokenizer, image_processor) with no
    patch_size / feature strategy / CLS count: the reader fills them from the model config."""
    import shutil

    conv = tmp_path / "pulse-converted"
    shutil.copytree(llava_dir, conv)
    pc = json.loads((conv / "processor_config.json").read_text())
    for k in ("patch_size", "vision_feature_select_strategy", "num_additional_image_tokens"):
        pc.pop(k, None)
    (conv / "processor_config.json").write_text(json.dumps(pc))
    sig = _ecgs(3)
    expected = PulseECGReader(str(llava_dir), max_new_tokens=MAX_NEW).interpret(sig, progress=False)
    assert PulseECGReader(str(conv), max_new_tokens=MAX_NEW).interpret(sig, progress=False) == expected


def test_pulse_llava_next_checkpoint(tmp_path):
    """A LLaVA-1.6 conversion (convert_llava_next_weights_to_hf.py, anyres tiling) loads too."""
    d = tiny_models.build_tiny_llava_next(tmp_path / "tiny-pulse-next")
    sig = _ecgs(3)
    batched = PulseECGReader(str(d), max_new_tokens=MAX_NEW, batch_size=3)
    assert batched.config["model_type"] == "llava_next"
    out = batched.interpret(sig, progress=False)
    assert type(batched.model).__name__ == "LlavaNextForConditionalGeneration"
    assert all(isinstance(o, str) and o for o in out) and len(set(out)) > 1
    assert PulseECGReader(str(d), max_new_tokens=MAX_NEW, batch_size=1).interpret(sig, progress=False) == out
