"""Fusion models over per-modality text embeddings, and the logistic-regression baseline.

Every network takes ``x``: a float tensor ``(batch, M, D)`` holding one embedding per modality (chapter 02's
matrices, in the order of the modality set being trained) and ``mask``: a bool tensor ``(batch, M)``, True
where the modality is present. It returns one logit per sample, shape ``(batch,)``. Each model handles a
missing modality its own way; that difference is what chapters 04-07 study:

============  ==========================================================================================
``paper``     The Multimodal Paradox model (arXiv 2505.03020): each embedding projected to a common width,
              the projections stacked as a token sequence, one multi-head self-attention block (residual +
              layer norm), mean-pooled over the tokens, feed-forward classifier. A missing modality is a
              zero vector, exactly as in the paper: its token is the projection's bias and it is attended
              to like any other.
``resilient`` The mitigation of arXiv 2605.12031: the same projections plus a learnable modality-type
              token per modality and a CLS token; the attention's key-padding mask excludes missing
              modalities from attention and hence from the gradient; the CLS output is classified.
              Modality dropout during training is applied by :mod:`mmlib.train` (it is a training choice,
              not a layer).
``late``      Late fusion: one small classifier per modality; the logits of the modalities present are
              averaged. A sample with no modality present gets a learned constant.
``linear``    The decision-layer model of arXiv 2510.14411: one encoder per modality gives ``h_m`` (zero
              where missing) and a single linear layer reads ``[h_1; ...; h_M]``. Its weight splits into one
              block per modality (:func:`decision_weights`); chapter 06 reads it.
============  ==========================================================================================

``logreg`` (scikit-learn) is the non-neural baseline: a standardised logistic regression on the
concatenated, zero-filled embeddings (:func:`logistic_regression`).
"""
from __future__ import annotations

import torch
from torch import nn

NEURAL_MODELS = ("paper", "resilient", "late", "linear")
ALL_MODELS = NEURAL_MODELS + ("logreg",)
MODEL_DOCS = {
    "paper": "self-attention fusion, missing modality = zero vector (arXiv 2505.03020)",
    "resilient": "masked attention + modality tokens + CLS + modality dropout (arXiv 2605.12031)",
    "late": "late fusion: one head per modality, logits averaged over present modalities",
    "linear": "per-modality encoders + one linear decision layer over [h_1; ...; h_M] (arXiv 2510.14411)",
    "logreg": "logistic regression on concatenated zero-filled embeddings (scikit-learn)",
}


def _zero_missing(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` with the rows of missing modalities set to exactly zero (also clears NaN/inf content)."""
    return torch.where(mask[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))


def _after_first(seq: nn.Sequential, t: torch.Tensor) -> torch.Tensor:
    """``seq`` without its first layer, applied to ``t`` (the first layer's output)."""
    for layer in list(seq)[1:]:
        t = layer(t)
    return t


def _apply_each(layers, x: torch.Tensor) -> torch.Tensor:
    """``layers[m]`` applied to modality ``m`` of ``x`` ``(batch, M, ...)``, stacked again ``(batch, M, ...)``."""
    return torch.stack([layer(x[:, m]) for m, layer in enumerate(layers)], dim=1)


class ModalityProjection(nn.Module):
    """One linear map per modality from the embedding size ``in_dim`` to the common ``width`` (the paper and
    resilient models' input layers; :func:`encode_inputs` applies them, so this module only holds them)."""

    def __init__(self, n_modalities: int, in_dim: int, width: int):
        super().__init__()
        self.proj = nn.ModuleList(nn.Linear(in_dim, width) for _ in range(n_modalities))


def input_layers(model: nn.Module) -> list[nn.Linear]:
    """The per-modality input layers of a fusion network (the linear maps from the embedding size to the width):
    the only layers that read the embeddings themselves, and the largest matrices of these networks."""
    if isinstance(model, CalibratedDecision):
        return input_layers(model.base)
    if isinstance(model, (PaperFusion, ResilientFusion)):
        return list(model.project.proj)
    if isinstance(model, LateFusion):
        return [h[0] for h in model.heads]
    if isinstance(model, LinearDecisionFusion):
        return [e[0] for e in model.encoders]
    raise TypeError(f"{type(model).__name__} has no per-modality input layers")


def encode_inputs(model: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The input layers' outputs ``(batch, M, width)`` for ``x`` with the modalities missing in ``mask`` taken as zero
    vectors, as every network's :meth:`forward` computes them first; ``model.fuse(encode_inputs(model, x, mask),
    mask)`` is ``model(x, mask)``. A missing modality's output is exactly its layer's bias, whatever its row of ``x``
    holds (:func:`mask_encoded`): the layers run on ``x`` as it is and the missing outputs are replaced after, a
    select over ``width`` columns instead of over the embedding's (12x fewer for 384 -> 32; the same values, and
    the same gradients up to the order of a sum)."""
    return mask_encoded(model, _apply_each(input_layers(model), x), mask)


def mask_encoded(model: nn.Module, encoded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """:func:`encode_inputs` under a mask that removes more modalities: the removed ones replaced by their input
    layer's bias, which is what the layer gives for the zero vector (bit for bit: ``0 . w`` adds exactly 0). With it
    :func:`mmlib.missing.predict_masked` runs the input layers once per stay instead of once per mask draw.
    Its result is contiguous whatever the memory layout of ``mask`` (numpy's ``a[rows][:, cols]`` is not): the
    attention that reads it rounds differently in the last bit on other layouts, and a stay's prediction must not
    depend on how its rows were gathered."""
    bias = torch.stack([layer.bias for layer in input_layers(model)])
    return torch.where(mask[..., None], encoded, bias.to(encoded.dtype)).contiguous()


class AttentionBlock(nn.Module):
    """Multi-head self-attention with a residual connection and layer norm, then a position-wise
    feed-forward layer with its own residual and layer norm (a post-norm transformer encoder layer).
    Dropout is applied in the classifier head only (dropout on these small token tensors doubled the
    CPU training time for no gain on the demo cohorts)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(width)
        self.ff = nn.Sequential(nn.Linear(width, 2 * width), nn.ReLU(), nn.Linear(2 * width, width))
        self.norm2 = nn.LayerNorm(width)

    def forward(self, t: torch.Tensor, ignore: torch.Tensor | None = None) -> torch.Tensor:
        """``ignore``: bool ``(batch, tokens)``, True for tokens no query may attend to."""
        a, _ = self.attn(t, t, t, key_padding_mask=ignore, need_weights=False)
        t = self.norm1(t + a)
        return self.norm2(t + self.ff(t))


def _classifier(width: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, 1))


class PaperFusion(nn.Module):
    """The paper's self-attention fusion; a missing modality enters as a zero embedding."""

    def __init__(self, n_modalities: int, in_dim: int, width: int = 64, heads: int = 4, dropout: float = 0.1):
        super().__init__()
        self.project = ModalityProjection(n_modalities, in_dim, width)
        self.block = AttentionBlock(width, heads)
        self.head = _classifier(width, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.fuse(encode_inputs(self, x, mask), mask)

    def fuse(self, t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits from the projected tokens ``t`` ``(batch, M, width)`` (:func:`encode_inputs`)."""
        return self.head(self.block(t).mean(dim=1)).squeeze(-1)


class ResilientFusion(nn.Module):
    """Masked-attention fusion: modality-type tokens, a CLS token, missing modalities masked out."""

    def __init__(self, n_modalities: int, in_dim: int, width: int = 64, heads: int = 4, dropout: float = 0.1):
        super().__init__()
        self.project = ModalityProjection(n_modalities, in_dim, width)
        self.type_tokens = nn.Parameter(torch.randn(n_modalities, width) * 0.02)
        self.cls = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.block = AttentionBlock(width, heads)
        self.head = _classifier(width, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.fuse(encode_inputs(self, x, mask), mask)

    def fuse(self, t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits from the projected tokens ``t`` ``(batch, M, width)`` (:func:`encode_inputs`)."""
        t = t + self.type_tokens
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1)
        keep = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        return self.head(self.block(t, ignore=~keep)[:, 0]).squeeze(-1)


class LateFusion(nn.Module):
    """One classifier per modality; the logits of the modalities present are averaged."""

    def __init__(self, n_modalities: int, in_dim: int, width: int = 64, heads: int = 4, dropout: float = 0.1):
        super().__init__()
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(in_dim, width), nn.ReLU(), nn.Dropout(dropout),
                                                 nn.Linear(width, 1)) for _ in range(n_modalities))
        self.none_present = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.fuse(encode_inputs(self, x, mask), mask)

    def fuse(self, e: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits from the heads' first-layer outputs ``e`` ``(batch, M, width)`` (:func:`encode_inputs`)."""
        logits = torch.cat([_after_first(h, e[:, m]) for m, h in enumerate(self.heads)], dim=1)
        w = mask.to(logits.dtype)
        n = w.sum(dim=1)
        mean = (logits * w).sum(dim=1) / n.clamp(min=1)
        return torch.where(n > 0, mean, self.none_present)


class LinearDecisionFusion(nn.Module):
    """Per-modality encoders ``h_m = ReLU(LayerNorm(W_m x_m))`` (zero where missing), concatenated and read
    by one linear decision layer; its weight block ``[:, m*width:(m+1)*width]`` belongs to modality m."""

    def __init__(self, n_modalities: int, in_dim: int, width: int = 64, heads: int = 4, dropout: float = 0.1):
        super().__init__()
        self.encoders = nn.ModuleList(nn.Sequential(nn.Linear(in_dim, width), nn.LayerNorm(width), nn.ReLU())
                                      for _ in range(n_modalities))
        self.drop = nn.Dropout(dropout)
        self.decision = nn.Linear(n_modalities * width, 1)
        self.width = width

    def features(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-modality features ``(batch, M, width)``, zero for missing modalities."""
        return self.features_from(encode_inputs(self, x, mask), mask)

    def features_from(self, e: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """:meth:`features` from the encoders' first-layer outputs ``e`` ``(batch, M, width)`` (:func:`encode_inputs`)."""
        return _zero_missing(torch.stack([_after_first(enc, e[:, m]) for m, enc in enumerate(self.encoders)], dim=1), mask)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.fuse(encode_inputs(self, x, mask), mask)

    def fuse(self, e: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits from the encoders' first-layer outputs ``e`` ``(batch, M, width)`` (:func:`encode_inputs`)."""
        return self.decision(self.drop(self.features_from(e, mask)).flatten(1)).squeeze(-1)


def decision_weights(model: LinearDecisionFusion, modalities: list[str]) -> dict[str, torch.Tensor]:
    """The decision layer's weight split by the modality whose features each block reads."""
    w = model.decision.weight.detach()[0]
    return {m: w[i * model.width:(i + 1) * model.width] for i, m in enumerate(modalities)}


def contributions(model: LinearDecisionFusion, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample logit contribution of each modality, ``c_m = W_m . h_m`` ``(batch, M)`` (the logit is their
    sum plus the bias), and the feature norms ``||h_m||`` ``(batch, M)``; eval mode, no gradient."""
    model.eval()
    with torch.no_grad():
        h = model.features(x, mask)
        w = model.decision.weight[0].view(len(model.encoders), model.width)
        return (h * w).sum(-1), h.norm(dim=-1)


class CalibratedDecision(nn.Module):
    """A trained :class:`LinearDecisionFusion` whose modality contributions are re-weighted:
    ``logit = sum_m scale_m * c_m + bias`` (adaptive weight allocation at the decision layer, fitted on
    validation by :func:`mmlib.train.calibrate_modalities`)."""

    def __init__(self, base: LinearDecisionFusion, scale: torch.Tensor, bias: float):
        super().__init__()
        self.base = base
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
        self.register_buffer("bias", torch.tensor(float(bias)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.fuse(encode_inputs(self, x, mask), mask)

    def fuse(self, e: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits from the base's first-layer outputs ``e`` ``(batch, M, width)`` (:func:`encode_inputs`)."""
        h = self.base.features_from(e, mask)
        w = self.base.decision.weight[0].view(len(self.base.encoders), self.base.width)
        return ((h * w).sum(-1) * self.scale).sum(-1) + self.bias


_CLASSES = {"paper": PaperFusion, "resilient": ResilientFusion, "late": LateFusion,
            "linear": LinearDecisionFusion}


def build_model(name: str, n_modalities: int, in_dim: int, width: int = 64, heads: int = 4,
                dropout: float = 0.1) -> nn.Module:
    """A freshly initialised network ``name`` (one of :data:`NEURAL_MODELS`) for ``n_modalities`` inputs."""
    if name not in _CLASSES:
        raise ValueError(f"model {name!r} is not a neural model; expected one of {list(_CLASSES)}"
                         + (" (logreg is fitted by mmlib.train.fit_logreg)" if name == "logreg" else ""))
    if width % heads:
        raise ValueError(f"parameter width ({width}) must be divisible by heads ({heads})")
    return _CLASSES[name](n_modalities, in_dim, width=width, heads=heads, dropout=dropout)


def logistic_regression(C: float = 0.1, max_iter: int = 2000):
    """The scikit-learn baseline: standardise, then class-balanced L2 logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, class_weight="balanced", max_iter=max_iter))
