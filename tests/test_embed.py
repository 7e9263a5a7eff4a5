"""Embeddings: agreement with sentence-transformers, order, cache, errors, a BERT built in code, and the
same bytes for a text whatever its batch-mates, batch size, order, threads or cache (the cache key's settings).

Runs offline on a CPU: all-MiniLM-L6-v2 comes from its wheel, the other encoder is a tiny BERT built here.
The ONNX graphs are built once per test session in a temporary folder (MMLIB_ONNX_CACHE).
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from mmlib import embed
from mmlib.embed import VectorCache, embed_texts, encoder_id, resolve_encoder

TEXTS = [
    "Patient is a 67-year-old woman arriving by ambulance with chest pain. Triage acuity 2. Temperature 98.6 °F, "
    "heart rate 112/min, respiratory rate 22/min, SpO2 91%, blood pressure 92/58 mmHg.",
    "Vital signs: heart rate 112 /min, oxygen saturation 91 %, systolic blood pressure 92 mmHg.",
    "FINDINGS: PA view. Heart size is enlarged. IMPRESSION: Cardiomegaly.",
    "Sinus rhythm, rate 72/min.",
    "Laboratory results in the first 90 minutes: lactate 4.20 mmol/L (high); sodium 139 mEq/L. " * 4,
    "Past medical history: COPD on home oxygen, atrial fibrillation on apixaban. Denies fever or recent travel.",
    "ok",
]


@pytest.fixture(scope="module", autouse=True)
def onnx_cache(tmp_path_factory):
    """ONNX graphs built once for this module, in a temporary folder (never the user's ~/.cache)."""
    old = os.environ.get("MMLIB_ONNX_CACHE")
    os.environ["MMLIB_ONNX_CACHE"] = str(tmp_path_factory.mktemp("onnx"))
    yield
    if old is None:
        os.environ.pop("MMLIB_ONNX_CACHE", None)
    else:
        os.environ["MMLIB_ONNX_CACHE"] = old


@pytest.fixture(scope="module")
def reference():
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(resolve_encoder("all-MiniLM-L6-v2")), device="cpu")
    return st.encode(TEXTS, batch_size=64)


def _cos(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A tiny BERT built in code: random weights, a WordPiece tokenizer trained here, saved with save_pretrained."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(TEXTS * 5, trainers.WordPieceTrainer(
        vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=128)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(fast), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    folder = tmp_path_factory.mktemp("models") / "tiny-bert"
    BertModel(cfg).eval().save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def test_default_path_shape_dtype_and_agreement(reference):
    v, s = embed_texts(TEXTS, progress=False)
    assert v.shape == (len(TEXTS), 384) and v.dtype == np.float32
    assert s["backend"] == "onnx" and s["precision"] == "int8" and s["dim"] == 384 and s["n"] == len(TEXTS)
    assert s["embedded"] == len(TEXTS) and s["from_cache"] == 0 and s["seconds"] > 0
    assert s["encoder"] == str(resolve_encoder("all-MiniLM-L6-v2"))
    assert _cos(v, reference).min() >= 0.99, _cos(v, reference)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_fp32_is_exact(reference, backend):
    v, s = embed_texts(TEXTS, precision="fp32", backend=backend, progress=False)
    assert s["precision"] == "fp32" and s["backend"] == backend
    assert _cos(v, reference).min() >= 0.9999
    np.testing.assert_allclose(v, reference, atol=2e-4)


def test_normalize_false_returns_the_plain_mean(reference):
    v, _ = embed_texts(TEXTS, precision="fp32", normalize=False, progress=False)
    norms = np.linalg.norm(v, axis=1)
    assert not np.allclose(norms, 1, atol=1e-2)
    np.testing.assert_allclose(v / norms[:, None], reference, atol=2e-4)


def test_order_is_preserved():
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(TEXTS))
    v, _ = embed_texts(TEXTS, precision="fp32", batch_size=2, progress=False)
    w, _ = embed_texts([TEXTS[i] for i in perm], precision="fp32", batch_size=3, progress=False)
    np.testing.assert_array_equal(w, v[perm])
    singles = np.concatenate([embed_texts([t], precision="fp32", progress=False)[0] for t in TEXTS[:3]])
    np.testing.assert_array_equal(singles, v[:3])
    q, _ = embed_texts([TEXTS[i] for i in perm], batch_size=3, progress=False)  # int8: same order
    assert (_cos(q, v[perm]) > 0.99).all()


def test_cache_hits_misses_and_duplicates(tmp_path, tiny_bert):
    texts = TEXTS + TEXTS[:2]
    v1, s1 = embed_texts(texts, cache_dir=tmp_path, progress=False)
    assert s1["embedded"] == len(TEXTS) and s1["unique"] == len(TEXTS), "duplicates are embedded once"
    assert s1["from_cache"] == len(texts) - len(TEXTS)
    np.testing.assert_array_equal(v1[:2], v1[-2:])
    v2, s2 = embed_texts(texts, cache_dir=tmp_path, progress=False)
    assert s2["embedded"] == 0 and s2["from_cache"] == len(texts)
    np.testing.assert_array_equal(v1, v2)
    _, s3 = embed_texts(texts, max_length=16, cache_dir=tmp_path, progress=False)
    assert s3["embedded"] == len(TEXTS), "another max_length is another cache"
    _, s4 = embed_texts(texts, precision="fp32", cache_dir=tmp_path, progress=False)
    assert s4["embedded"] == len(TEXTS), "another precision is another cache"
    _, s5 = embed_texts(texts, encoder=str(tiny_bert), cache_dir=tmp_path, progress=False)
    assert s5["embedded"] == len(TEXTS) and s5["dim"] == 32, "another encoder is another cache"
    v6, s6 = embed_texts(TEXTS[:3] + ["a text never seen"], cache_dir=tmp_path, progress=False)
    assert s6["embedded"] == 1 and s6["from_cache"] == 3
    np.testing.assert_array_equal(v6[:3], v1[:3])
    v7, s7 = embed_texts(texts, cache_dir=tmp_path, normalize=False, progress=False)
    assert s7["embedded"] == 0, "normalised or not, the cache holds the same vectors"
    np.testing.assert_allclose(v7 / np.linalg.norm(v7, axis=1, keepdims=True), v1, atol=1e-6)
    shards = list((tmp_path / "vectors").rglob("*.vec.npy"))
    assert shards and not list(tmp_path.rglob("*.tmp")), "complete shards only, no temporary files left"


def test_vector_cache_shards_and_compaction(tmp_path):
    cache = VectorCache(tmp_path, max_shards=3)
    rng = np.random.default_rng(1)
    keys = [os.urandom(32) for _ in range(10)]
    vecs = rng.normal(size=(10, 4)).astype(np.float32)
    for a in range(0, 10, 2):
        cache.add(keys[a:a + 2], vecs[a:a + 2])
    assert len(list(tmp_path.glob("*.keys.npy"))) <= 3
    again = VectorCache(tmp_path)
    assert all(k in again for k in keys)
    np.testing.assert_array_equal(again.get(keys[::-1], 4), vecs[::-1])
    (tmp_path / "junk.keys.npy").write_bytes(b"not an array")  # a half-deleted shard is skipped, not fatal
    assert len(VectorCache(tmp_path).index) == 10


def test_missing_encoder_is_named_with_how_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("TRANSFORMERS_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    with pytest.raises(FileNotFoundError, match=r"nowhere.*huggingface-cli download.*pass its path"):
        embed_texts(["x"], encoder=str(tmp_path / "nowhere"), progress=False)
    with pytest.raises(FileNotFoundError, match=r"Charangan/MedBERT.*Hugging Face cache.*huggingface-cli download "
                                                r"Charangan/MedBERT"):
        resolve_encoder("MedBERT")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_encoder(tmp_path / "empty")
    with pytest.raises(ValueError, match="list of strings"):
        embed_texts(["x", None], progress=False)
    with pytest.raises(ValueError, match="precision"):
        embed_texts(["x"], precision="int4", progress=False)


def test_hub_cache_snapshot_is_found(tmp_path, monkeypatch, tiny_bert):
    import shutil

    snap = tmp_path / "hub" / "models--someorg--tiny" / "snapshots" / ("a" * 40)
    shutil.copytree(tiny_bert, snap)
    (tmp_path / "hub" / "models--someorg--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--someorg--tiny" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_encoder("someorg/tiny") == snap.resolve()
    assert encoder_id(snap).split("-")[-1] == encoder_id(tiny_bert).split("-")[-1], "identity follows the content"


def test_a_bert_built_in_code_loads_from_a_local_path(tiny_bert):
    assert resolve_encoder(str(tiny_bert)) == tiny_bert.resolve()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a random tiny BERT may fail the int8 check and run fp32
        a, s = embed_texts(TEXTS, encoder=str(tiny_bert), max_length=64, progress=False)
        b, _ = embed_texts(TEXTS, encoder=str(tiny_bert), max_length=64, progress=False)
    assert a.shape == (len(TEXTS), 32) and a.dtype == np.float32 and s["encoder"] == str(tiny_bert.resolve())
    assert s["max_length"] == 64 and s["precision"] in ("int8", "fp32")
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[0], a[1])
    # the ONNX export of this other architecture agrees with PyTorch
    x, _ = embed_texts(TEXTS, encoder=str(tiny_bert), max_length=64, precision="fp32", progress=False)
    y, _ = embed_texts(TEXTS, encoder=str(tiny_bert), max_length=64, precision="fp32", backend="torch",
                       progress=False)
    assert _cos(x, y).min() > 0.9999
    assert _cos(a, x).min() > 0.99


def test_empty_input_and_built_graph_metadata():
    v, s = embed_texts([], progress=False)
    assert v.shape == (0, 384) and v.dtype == np.float32 and s["n"] == 0 and s["embedded"] == 0
    import json

    metas = list(embed.default_onnx_dir().rglob("int8-*.json"))
    info = json.loads(metas[0].read_text())
    assert info["usable"] and info["check_min_cosine"] >= embed.INT8_MIN_COSINE and info["fusions"].get("Attention")


_EXPORT_ONCE = """
import json, sys, time
from pathlib import Path
from mmlib import embed

def slow_export(path, dst, int8, tok):  # stands in for the real export: long enough for the other to arrive
    with open(sys.argv[2], "a") as fh:
        fh.write(f"{sys.argv[3]}\\n")
    time.sleep(3)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(b"graph")
    info = {"usable": True, "by": sys.argv[3]}
    dst.with_suffix(".json").write_text(json.dumps(info))
    return info

embed._build_onnx = slow_export
print(json.dumps(embed._OnnxRunner._ensure(Path("enc"), Path(sys.argv[1]), True, None)))
"""


def test_two_processes_asking_for_one_absent_graph_export_it_once(tmp_path):
    """Chapters side by side (or test workers) that need the same absent ONNX graph: one exports it, the other
    waits for the lock beside it and reads that graph, instead of both exporting the same graph at once."""
    import json
    import subprocess
    import sys

    graph, log = tmp_path / "onnx" / "enc" / "int8-v0.onnx", tmp_path / "exports.txt"
    procs = [subprocess.Popen([sys.executable, "-c", _EXPORT_ONCE, str(graph), str(log), who],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for who in ("a", "b")]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    exporters = log.read_text().split()
    assert len(exporters) == 1, f"exported {len(exporters)} times"
    assert [json.loads(o)["by"] for o, _ in outs] == exporters * 2, "both read the one export"


def test_skip_layer_norm_is_unfused_in_the_built_graphs_and_stays_so_in_a_session(tmp_path):
    """The default encoder's graphs hold no ``SkipLayerNormalization`` (slow in ONNX Runtime's CPU kernel), neither
    as saved nor as a session optimises them (ONNX Runtime would fuse some again if its fusion were left on)."""
    import json

    import onnx
    import onnxruntime as ort

    embed_texts(TEXTS[:2], progress=False)  # builds the graphs if this session has not yet
    folder = embed.default_onnx_dir() / embed.encoder_id(embed.resolve_encoder(embed.DEFAULT_ENCODER))
    for name in (f"fp32-v{embed.ONNX_FORMAT}", f"int8-o{embed.OUTLIER_CHANNELS}-v{embed.ONNX_FORMAT}"):
        info = json.loads((folder / f"{name}.json").read_text())
        assert info["unfused"]["SkipLayerNormalization"] == 12, info  # two per layer of all-MiniLM-L6-v2
        so = ort.SessionOptions()
        so.optimized_model_filepath = str(tmp_path / f"{name}-session.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(str(folder / f"{name}.onnx"), so, providers=["CPUExecutionProvider"],
                             disabled_optimizers=["SkipLayerNormFusion"])
        ops = {n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node}
        assert "SkipLayerNormalization" not in ops and "LayerNormalization" in ops, (name, ops)
        assert "SkipLayerNormalization" not in {n.op_type for n in onnx.load(folder / f"{name}.onnx").graph.node}
    # why sessions disable ONNX Runtime's own fusion: with it on, it fuses some of the int8 graph's nodes again
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "refused.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(str(folder / f"int8-o{embed.OUTLIER_CHANNELS}-v{embed.ONNX_FORMAT}.onnx"), so,
                         providers=["CPUExecutionProvider"])
    assert "SkipLayerNormalization" in {n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node}
    # (that the unfused fp32 graph still computes the exact vectors: test_fp32_is_exact)


def test_an_int8_graph_that_fails_its_check_is_not_used(tmp_path, monkeypatch, tiny_bert):
    monkeypatch.setattr(embed, "INT8_MIN_COSINE", 1.01)  # no graph can pass: the fallback must engage
    with pytest.warns(UserWarning, match="using fp32 instead"):
        v, s = embed_texts(TEXTS, encoder=str(tiny_bert), onnx_dir=tmp_path / "onnx", cache_dir=tmp_path,
                           progress=False)
    assert s["precision"] == "fp32" and s["backend"] == "onnx"
    exact, _ = embed_texts(TEXTS, encoder=str(tiny_bert), precision="fp32", backend="torch", progress=False)
    assert _cos(v, exact).min() > 0.9999
    _, s2 = embed_texts(TEXTS, encoder=str(tiny_bert), onnx_dir=tmp_path / "onnx", cache_dir=tmp_path, progress=False)
    assert s2["embedded"] == 0 and s2["precision"] == "fp32", "from the cache, the precision it really ran at"


def test_embed_modalities_zero_rows_and_masks_where_texts_are_missing(tmp_path, tiny_bert):
    import pandas as pd

    texts = pd.DataFrame({"a": [TEXTS[0], None, TEXTS[1]], "b": [None, None, None]}, index=[5, 6, 7])
    arrays, stats = embed.embed_modalities(texts, encoder=str(tiny_bert), cache_dir=tmp_path)
    assert list(arrays) == ["stay_id", "a", "mask_a", "b", "mask_b"]
    np.testing.assert_array_equal(arrays["stay_id"], [5, 6, 7])
    np.testing.assert_array_equal(arrays["mask_a"], [True, False, True])
    assert arrays["a"].dtype == np.float32 and arrays["a"].shape == (3, 32)
    np.testing.assert_array_equal(arrays["a"][1], 0)
    direct, _ = embed_texts([TEXTS[0], TEXTS[1]], encoder=str(tiny_bert), progress=False)
    np.testing.assert_array_equal(arrays["a"][[0, 2]], direct)
    assert arrays["b"].shape == (3, 32) and not arrays["b"].any() and not arrays["mask_b"].any()
    assert list(stats["modality"]) == ["a", "b"] and list(stats["texts"]) == [2, 0]
    assert list(stats["embedded now"]) == [2, 0] and (stats["dim"] == 32).all()
    _, again = embed.embed_modalities(texts, encoder=str(tiny_bert), cache_dir=tmp_path)
    assert list(again["embedded now"]) == [0, 0] and list(again["from cache or repeated"]) == [2, 0]


# ------------------------------------------------------------------ a vector depends on its text, not its company

NOTES = [f"Patient is a {age}-year-old {sex} arriving {how} with {what}. Triage acuity {acuity}. Heart rate {hr}/min, "
         f"SpO2 {spo2}%, blood pressure {sbp}/{dbp} mmHg. Past medical history: {pmh}." + " Labs pending." * (i % 4)
         for i, (age, sex, how, what, acuity, hr, spo2, sbp, dbp, pmh) in enumerate([
             (67, "woman", "by ambulance", "chest pain", 2, 112, 91, 92, 58, "COPD"),
             (45, "man", "as a walk-in", "abdominal pain", 3, 88, 99, 141, 90, "hypertension, diabetes"),
             (82, "woman", "on transfer", "syncope", 2, 48, 95, 100, 60, "atrial fibrillation on apixaban"),
             (23, "man", "by private car", "fever and cough", 4, 104, 94, 118, 72, "asthma"),
             (59, "woman", "by ambulance", "altered mental status", 1, 131, 86, 80, 44, "cirrhosis")])]


def _bytes_equal(a, b) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("backend, precision", [("onnx", "int8"), ("onnx", "fp32"), ("torch", "fp32")])
def test_a_vector_is_the_same_bytes_whatever_its_batch_mates_order_batch_size_threads_or_cache(
        tmp_path, monkeypatch, backend, precision):
    texts = TEXTS + NOTES
    kw = {"backend": backend, "precision": precision, "progress": False}
    alone = np.concatenate([embed_texts([t], **kw)[0] for t in texts])
    together, s = embed_texts(texts, batch_size=64, **kw)
    assert s["precision"] == precision and s["backend"] == backend
    assert _bytes_equal(together, alone), np.abs(together - alone).max()
    perm = np.random.default_rng(1).permutation(len(texts))
    shuffled, _ = embed_texts([texts[i] for i in perm], batch_size=2, **kw)
    assert _bytes_equal(shuffled, alone[perm])
    mixed, _ = embed_texts(NOTES[::-1] + ["an unrelated sentence about the weather"] + TEXTS[2:5], batch_size=3, **kw)
    assert _bytes_equal(mixed[:len(NOTES)], alone[len(TEXTS):][::-1])
    # the cache filled in another order and company, then asked for everything
    embed_texts(NOTES[1::2] + TEXTS[::3], cache_dir=tmp_path, batch_size=1, **kw)
    from_cache, s2 = embed_texts(texts, cache_dir=tmp_path, **kw)
    assert 0 < s2["from_cache"] < len(texts) and _bytes_equal(from_cache, alone)
    runner = embed._runner(resolve_encoder("all-MiniLM-L6-v2"), "cpu", backend, precision, embed.default_onnx_dir())
    for workers in (1, 3):  # texts spread over another number of threads
        monkeypatch.setattr(runner, "workers", workers)
        assert _bytes_equal(embed_texts(texts[::-1], **kw)[0], alone[::-1])


def test_batching_would_break_it_so_texts_run_alone():
    """What the one-text-per-run design protects against: in a padded batch the int8 vectors move."""
    path = resolve_encoder("all-MiniLM-L6-v2")
    runner = embed._runner(path, "cpu", "onnx", "int8", embed.default_onnx_dir())
    ids = embed._tokenizer(path)(NOTES, truncation=True, max_length=256)["input_ids"]
    batch, mask = embed._pad(ids, 0)
    width = int(mask.sum(1).max())
    batched = runner.int8.run(None, {"input_ids": batch[:, :width], "attention_mask": mask[:, :width]})[0]
    alone = np.stack([runner.one(x) for x in ids])
    assert not np.array_equal(batched, alone)
    # dynamic int8 quantisation scales activations per run, and padding enters the scale: with onnxruntime 1.32
    # the padded batch's vectors sit at cosine 0.89-0.91 of the same texts run alone -- the same model, moved
    # far more than the encoder's own agreement with fp32 (test_default_path_shape_dtype_and_agreement)
    assert 0.8 < _cos(batched, alone).min() and _cos(batched, alone).max() < 0.999


def test_embed_modalities_is_the_same_bytes_whatever_the_cache_held(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"note": NOTES, "report": [TEXTS[2], None, TEXTS[0], TEXTS[5], None]}, index=range(5))
    fresh, _ = embed.embed_modalities(frame, cache_dir=tmp_path / "fresh")
    embed_texts(NOTES[2:] + ["something else entirely, to share the batch"], cache_dir=tmp_path / "warm",
                progress=False)
    embed_texts([TEXTS[5], TEXTS[1]], cache_dir=tmp_path / "warm", progress=False)
    warm, stats = embed.embed_modalities(frame, cache_dir=tmp_path / "warm")
    assert list(stats["from cache or repeated"]) == [3, 1], "the warm cache was used"
    none, _ = embed.embed_modalities(frame)
    assert list(fresh) == list(warm) == list(none)
    for k in fresh:
        assert _bytes_equal(fresh[k], warm[k]) and _bytes_equal(fresh[k], none[k]), k


def test_the_cache_key_holds_every_setting_that_decides_a_vector(tmp_path, monkeypatch):
    ids = {(b, p): embed.numerics_id(backend=b, precision=p) for b, p in
           [("onnx", "int8"), ("onnx", "fp32"), ("torch", "fp32")]}
    assert len(set(ids.values())) == 3 and all(len(v) == 12 for v in ids.values())
    assert embed.numerics_id(backend="onnx", precision="int8") == ids["onnx", "int8"], "stable"
    _, s = embed_texts(NOTES, cache_dir=tmp_path, progress=False)
    assert s["numerics"] == ids["onnx", "int8"]
    assert [p.name for p in (tmp_path / "vectors").glob("*/*")] == [f"L256-int8-onnx-{ids['onnx', 'int8']}"]
    # another threshold for the fp32 short texts of int8: other vectors, so another id and another cache
    monkeypatch.setattr(embed, "_RUNNERS", {})
    monkeypatch.setattr(embed, "INT8_MIN_TOKENS", 2)
    _, s2 = embed_texts(NOTES, cache_dir=tmp_path, progress=False)
    assert s2["numerics"] != s["numerics"] and s2["embedded"] == len(NOTES)


def test_token_ids_from_the_rust_tokenizer_are_the_transformers_call_s(tiny_bert, monkeypatch):
    """embed_texts tokenises with the fast tokenizer's Rust backend directly: the same ids (truncation included)
    as the transformers call; a backend that disagrees on the probe texts is not used."""
    long = " ".join(TEXTS + NOTES) * 3
    texts = TEXTS + NOTES + [long, "", "ÉCG: QRS 96 ms; SpO₂ 91 %"]
    for folder, max_length in ((resolve_encoder("all-MiniLM-L6-v2"), 256), (tiny_bert, 64), (tiny_bert, 128)):
        tok = embed._tokenizer(folder)
        want = tok(texts, truncation=True, max_length=max_length)["input_ids"]
        assert embed._token_ids(folder, tok, texts, max_length) == want
        assert embed._FAST_TOKENIZERS[(str(folder), max_length)] is not None, "the fast path was taken"
    assert embed._token_ids(tiny_bert, embed._tokenizer(tiny_bert), [], 64) == []

    class Disagrees:  # a tokenizer whose transformers call differs from its backend: the call is used
        is_fast = True

        def __init__(self, tok):
            self.tok, self.backend_tokenizer = tok, tok.backend_tokenizer

        def __call__(self, texts, **kw):
            out = self.tok(texts, **kw)
            return {"input_ids": [x[:-1] for x in out["input_ids"]]}

    odd = Disagrees(embed._tokenizer(tiny_bert))
    monkeypatch.setattr(embed, "_FAST_TOKENIZERS", {})
    assert embed._token_ids(tiny_bert, odd, NOTES, 64) == odd(NOTES, truncation=True, max_length=64)["input_ids"]
    assert embed._FAST_TOKENIZERS[(str(tiny_bert), 64)] is None


def test_embed_cohorts_is_chapter_02s_loop(tmp_path, tiny_bert):
    """embed.embed_cohorts (chapter 02) writes each cohort's embed_modalities arrays where ``path`` says and returns
    every cohort's stats with its display name, as chapter 02's loop did."""
    import pandas as pd

    texts = {"mimic_eye": pd.DataFrame({"a": [TEXTS[0], None, TEXTS[1]]}, index=[5, 6, 7]),
             "mds_ed": pd.DataFrame({"a": [TEXTS[2]], "b": [None]}, index=[9])}
    opts = dict(encoder=str(tiny_bert), max_length=64, batch_size=8)
    got = embed.embed_cohorts(texts, lambda n: tmp_path / f"new_{n}.npz", cache_dir=tmp_path / "c1", **opts)
    stats = []
    for n, t in texts.items():
        arrays, st = embed.embed_modalities(t, cache_dir=tmp_path / "c2", **opts)
        np.savez(tmp_path / f"old_{n}.npz", **arrays)
        stats.append(st.assign(cohort={"mimic_eye": "MIMIC-Eye", "mds_ed": "MIMIC-IV-Ext-MDS-ED"}[n]))
    want = pd.concat(stats).set_index(["cohort", "modality"])
    pd.testing.assert_frame_equal(got.drop(columns="seconds"), want.drop(columns="seconds"))
    assert list(got.index) == [("MIMIC-Eye", "a"), ("MIMIC-IV-Ext-MDS-ED", "a"), ("MIMIC-IV-Ext-MDS-ED", "b")]
    for n in texts:
        new, old = np.load(tmp_path / f"new_{n}.npz"), np.load(tmp_path / f"old_{n}.npz")
        assert list(new) == list(old)
        assert all(_bytes_equal(new[k], old[k]) for k in old)
