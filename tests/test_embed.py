"""Embeddings: agreement with sentence-transformers, order, cache, errors, and a BERT built in code."""
from __future__ import annotations

import numpy as np
import pytest

from mmlib.embed import embed_texts, resolve_encoder

TEXTS = [
    "67-year-old woman arriving by ambulance. Chief complaint: chest pain. Triage acuity (ESI) 2.",
    "Vital signs: heart rate 112 /min, oxygen saturation 91 %, systolic blood pressure 92 mmHg.",
    "FINDINGS: PA view. Heart size is enlarged. IMPRESSION: Cardiomegaly.",
    "Sinus rhythm, rate 72/min.",
    "Laboratory results in the first 90 minutes: lactate 4.20 mmol/L (high); sodium 139 mEq/L. " * 3,
]


def test_matches_sentence_transformers_and_keeps_order():
    from sentence_transformers import SentenceTransformer

    v, stats = embed_texts(TEXTS, precision="fp32", progress=False)
    ref = SentenceTransformer(str(resolve_encoder("all-MiniLM-L6-v2")), device="cpu").encode(TEXTS)
    assert v.shape == (len(TEXTS), 384) and v.dtype == np.float32
    cos = (v * ref).sum(1) / (np.linalg.norm(v, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() > 0.9999, cos
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    rev, _ = embed_texts(TEXTS[::-1], precision="fp32", progress=False)
    np.testing.assert_allclose(rev[::-1], v, atol=1e-5)
    assert stats["embedded"] == len(TEXTS) and stats["dim"] == 384


def test_cache_hits_misses_and_duplicates(tmp_path):
    texts = TEXTS + TEXTS[:2]
    v1, s1 = embed_texts(texts, precision="fp32", cache_dir=tmp_path, progress=False)
    assert s1["embedded"] == len(TEXTS) and s1["unique"] == len(TEXTS), "duplicates are embedded once"
    np.testing.assert_array_equal(v1[:2], v1[-2:])
    v2, s2 = embed_texts(texts, precision="fp32", cache_dir=tmp_path, progress=False)
    assert s2["embedded"] == 0 and s2["from_cache"] == len(TEXTS)
    np.testing.assert_array_equal(v1, v2)
    _, s3 = embed_texts(texts, precision="fp32", max_length=16, cache_dir=tmp_path, progress=False)
    assert s3["embedded"] == len(TEXTS), "another max_length is another cache"
    _, s4 = embed_texts(TEXTS[:3] + ["a text never seen"], precision="fp32", cache_dir=tmp_path, progress=False)
    assert s4["embedded"] == 1 and s4["from_cache"] == 3


def test_missing_encoder_is_named_with_how_to_provide_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*huggingface-cli download"):
        embed_texts(["x"], encoder=str(tmp_path / "nowhere"), progress=False)
    with pytest.raises(FileNotFoundError, match="Charangan/MedBERT"):
        resolve_encoder("MedBERT")
    with pytest.raises(ValueError, match="list of strings"):
        embed_texts(["x", None], progress=False)


def test_a_bert_built_in_code_loads_from_a_local_path(tmp_path):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(TEXTS * 5, trainers.WordPieceTrainer(
        vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")
    import torch

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(fast), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    folder = tmp_path / "tiny-bert"
    BertModel(cfg).save_pretrained(folder)
    fast.save_pretrained(folder)
    a, s = embed_texts(TEXTS, encoder=str(folder), max_length=64, progress=False)
    b, _ = embed_texts(TEXTS, encoder=str(folder), max_length=64, progress=False)
    assert a.shape == (len(TEXTS), 32) and s["encoder"] == str(folder)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[0], a[1])
