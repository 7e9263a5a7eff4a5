"""Tiny, randomly initialised vision-language checkpoints built in code (no downloads).

They have the architecture, file layout and pre-processing of the real checkpoints that
:mod:`mmlib.vlm` loads (Qwen2.5-VL for chest X-rays, HF-format LLaVA for PULSE-7B ECGs) but a
few thousand parameters, so the real loading and generation code runs on a CPU in seconds.
Their outputs are gibberish; tests check plumbing (shapes, determinism, batching, shards), not
the text.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

# The Qwen2-VL chat template as shipped with Qwen/Qwen2.5-VL-7B-Instruct (system prompt by
# default; an image becomes <|vision_start|><|image_pad|><|vision_end|>).
QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Larger than the usual 0.02 so that the image visibly changes what a random model writes
# (with tiny weights every image gets the same text and batching tests would prove little).
INIT_STD = 0.3

QWEN_SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

_CORPUS = [
    "FINDINGS: The lungs are clear. There is no pleural effusion or pneumothorax. "
    "The cardiomediastinal silhouette is normal.",
    "IMPRESSION: No acute cardiopulmonary process.",
    "FINDINGS: Moderate cardiomegaly with pulmonary edema and small bilateral effusions. "
    "IMPRESSION: Congestive heart failure.",
    "Right lower lobe consolidation concerning for pneumonia.",
    "You are a helpful assistant. system user assistant",
    "Read this chest X-ray and write a radiology report with FINDINGS and IMPRESSION sections.",
    "Sinus rhythm, rate 72 bpm. Normal axis. PR, QRS and QT intervals are normal. "
    "Atrial fibrillation with rapid ventricular response. ST elevation in V1-V4. "
    "Left bundle branch block. Interpret this 12-lead ECG.",
    "A chat between a curious human and an artificial intelligence assistant. The assistant "
    "gives helpful, detailed, and polite answers to the human's questions. USER: ASSISTANT:",
]


def _byte_level_bpe(special: list[str], vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    return tok


def build_tiny_qwen25_vl(out_dir: str | Path, seed: int = 0) -> Path:
    """Save a tiny Qwen2.5-VL checkpoint (model, tokenizer with chat template, PIL image
    processor) to ``out_dir`` in the layout of Qwen/Qwen2.5-VL-7B-Instruct."""
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=_byte_level_bpe(QWEN_SPECIAL),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=QWEN_SPECIAL[1:],
        padding_side="left",
    )
    tok.chat_template = QWEN_CHAT_TEMPLATE
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    cfg = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tok),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
            initializer_range=INIT_STD,
        ),
        vision_config=dict(
            initializer_range=INIT_STD,
            depth=1,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=64,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=[0],
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out)
    tok.save_pretrained(out)
    # Small images -> few visual tokens (56x56 .. 112x112 px -> 4 .. 16 tokens after merging).
    ip = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112)
    # Written as the released checkpoint's preprocessor_config.json is (min_pixels/max_pixels,
    # no "size"), which the loader must read.
    legacy = {
        "min_pixels": 56 * 56,
        "max_pixels": 112 * 112,
        "patch_size": ip.patch_size,
        "temporal_patch_size": ip.temporal_patch_size,
        "merge_size": ip.merge_size,
        "image_mean": list(ip.image_mean),
        "image_std": list(ip.image_std),
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2_5_VLProcessor",
    }
    (out / "preprocessor_config.json").write_text(json.dumps(legacy, indent=2))
    # The real checkpoint also ships the template as the processor's chat_template.json.
    (out / "chat_template.json").write_text(json.dumps({"chat_template": QWEN_CHAT_TEMPLATE}))
    return out


def _llava_tokenizer():
    """Byte-level BPE tokenizer with LLaVA's special tokens (and ``<image>``), left padding; and their ids."""
    from transformers import PreTrainedTokenizerFast

    special = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
    tok = PreTrainedTokenizerFast(tokenizer_object=_byte_level_bpe(special), unk_token="<unk>", bos_token="<s>",
                                  eos_token="</s>", pad_token="<pad>", additional_special_tokens=["<image>"],
                                  padding_side="left")
    return tok, {t: tok.convert_tokens_to_ids(t) for t in special}


def _tiny_llama(tok, ids: dict, max_positions: int):
    """One-layer Llama text config sized to ``tok``."""
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
                       bos_token_id=ids["<s>"], eos_token_id=ids["</s>"], pad_token_id=ids["<pad>"],
                       initializer_range=INIT_STD)


def _tiny_clip(image_size: int, patch_size: int):
    """Two-layer CLIP vision config."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(initializer_range=INIT_STD, initializer_factor=INIT_STD / 0.02, hidden_size=32,
                            intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=image_size,
                            patch_size=patch_size, projection_dim=32)


def _save_model(cls, cfg, ids: dict, out: Path, seed: int) -> None:
    """Initialise ``cls(cfg)`` with ``seed``, set its generation ids, save it to ``out``."""
    torch.manual_seed(seed)
    model = cls(cfg).eval()
    model.generation_config.eos_token_id = ids["</s>"]
    model.generation_config.pad_token_id = ids["<pad>"]
    model.save_pretrained(out)


def build_tiny_llava(out_dir: str | Path, seed: int = 0, image_size: int = 28, patch_size: int = 14) -> Path:
    """Save a tiny HF-format LLaVA checkpoint (CLIP vision tower + Llama text model,
    ``LlavaProcessor`` with a CLIP image processor, tokenizer with ``<image>``) to ``out_dir``,
    in the layout that transformers' ``convert_llava_weights_to_hf.py`` produces."""
    from transformers import (
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok, ids = _llava_tokenizer()
    text = _tiny_llama(tok, ids, max_positions=1024)
    vision = _tiny_clip(image_size, patch_size)
    cfg = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=ids["<image>"],
        image_seq_length=(image_size // patch_size) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        pad_token_id=ids["<pad>"],
    )
    _save_model(LlavaForConditionalGeneration, cfg, ids, out, seed)
    ip = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    proc = LlavaProcessor(
        image_processor=ip,
        tokenizer=tok,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    proc.save_pretrained(out)
    return out


def write_original_llava_config(out_dir: str | Path) -> Path:
    """A folder holding the config.json of an *original* (haotian-liu/LLaVA) checkpoint, as
    PULSE-ECG/PULSE-7B is released: ``model_type`` ``llava_llama``, no ``vision_config``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {
        "_name_or_path": "liuhaotian/llava-v1.6-vicuna-7b",
        "architectures": ["LlavaLlamaForCausalLM"],
        "model_type": "llava_llama",
        "hidden_size": 4096,
        "image_aspect_ratio": "anyres",
        "mm_patch_merge_type": "spatial_unpad",
        "mm_projector_type": "mlp2x_gelu",
        "mm_vision_tower": "openai/clip-vit-large-patch14-336",
        "vocab_size": 32000,
    }
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    return out


def build_tiny_llava_next(out_dir: str | Path, seed: int = 0, image_size: int = 28, patch_size: int = 14) -> Path:
    """Save a tiny HF-format LLaVA-NeXT checkpoint ("anyres" tiling, as
    ``convert_llava_next_weights_to_hf.py`` writes for LLaVA-1.6 models) to ``out_dir``."""
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextProcessor,
    )
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok, ids = _llava_tokenizer()
    s = image_size
    pinpoints = [[s, 2 * s], [2 * s, s], [2 * s, 2 * s]]
    cfg = LlavaNextConfig(
        vision_config=_tiny_clip(s, patch_size),
        text_config=_tiny_llama(tok, ids, max_positions=2048),
        image_token_index=ids["<image>"],
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        pad_token_id=ids["<pad>"],
    )
    _save_model(LlavaNextForConditionalGeneration, cfg, ids, out, seed)
    ip = LlavaNextImageProcessorPil(
        size={"shortest_edge": s}, crop_size={"height": s, "width": s}, image_grid_pinpoints=pinpoints
    )
    LlavaNextProcessor(
        image_processor=ip, tokenizer=tok, patch_size=patch_size,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
    ).save_pretrained(out)
    return out
