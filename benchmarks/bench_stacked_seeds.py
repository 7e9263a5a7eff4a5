"""Benchmark of training several seeds of the ``paper`` network as one stacked model (issue 15 asked whether
per-step overhead dominates a fit, so that one forward for many seeds would pay several-fold). Not adopted: this
benchmark keeps the measurement re-runnable.

Compares, on one thread as the chapters train, a training step (forward, backward, fused AdamW) of ``seeds``
separate :class:`mmlib.models.PaperFusion` networks (the book's model, the book's optimiser :func:`mmlib.train.adamw`,
``index_select`` mini-batches as :func:`mmlib.train.fit_network` draws them) against one step of :class:`Stacked`,
the same architecture with every parameter stacked over seeds (batched matrix products, one attention call, one
optimiser step for all). Random inputs of the demo's shape: mini-batches of 256 stays, 4 modalities of 384
dimensions, width 32, 2 heads. The two take turns, ``--rounds`` times. Prints milliseconds per seed and step and
the ratio (separate / stacked: above 1 is faster), then, with ``--profile``, PyTorch's operator profile of each.

    .venv/bin/python benchmarks/bench_stacked_seeds.py [--seeds 5] [--steps 40] [--rounds 3] [--profile]
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
import torch.nn.functional as F

from mmlib.models import PaperFusion
from mmlib.train import TrainConfig, adamw

B, M, D = 256, 4, 384  # stays per mini-batch, modalities, embedding size (the demo's)


class Stacked(torch.nn.Module):
    """``S`` paper networks (input layers, one post-norm attention block, mean over tokens, classifier head) with
    their parameters stacked on a leading seed axis: ``forward(x (S, B, M, D), mask (S, B, M)) -> logits (S, B)``."""

    def __init__(self, S: int, width: int = 32, heads: int = 2, dropout: float = 0.1):
        super().__init__()
        W = width

        def p(*shape):
            return torch.nn.Parameter(torch.randn(*shape) * 0.05)

        self.W, self.H, self.dropout = W, heads, dropout
        self.w_in, self.b_in = p(S, M, D, W), p(S, M, W)
        self.w_qkv, self.b_qkv, self.w_o, self.b_o = p(S, W, 3 * W), p(S, 3 * W), p(S, W, W), p(S, W)
        self.g1, self.be1 = torch.nn.Parameter(torch.ones(S, W)), p(S, W)
        self.w_f1, self.b_f1, self.w_f2, self.b_f2 = p(S, W, 2 * W), p(S, 2 * W), p(S, 2 * W, W), p(S, W)
        self.g2, self.be2 = torch.nn.Parameter(torch.ones(S, W)), p(S, W)
        self.w_h1, self.b_h1, self.w_h2, self.b_h2 = p(S, W, W), p(S, W), p(S, W, 1), p(S, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        S, n, W, H = x.shape[0], x.shape[1], self.W, self.H
        e = torch.einsum("sbmd,smdw->sbmw", x, self.w_in) + self.b_in[:, None]
        t = torch.where(mask[..., None], e, self.b_in[:, None].expand_as(e)).reshape(S, n * M, W)
        qkv = torch.baddbmm(self.b_qkv[:, None], t, self.w_qkv).reshape(S * n, M, 3, H, W // H)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(S, n * M, W)
        t = F.layer_norm(t + torch.baddbmm(self.b_o[:, None], a, self.w_o), (W,)) * self.g1[:, None] + self.be1[:, None]
        f = torch.baddbmm(self.b_f2[:, None], torch.relu(torch.baddbmm(self.b_f1[:, None], t, self.w_f1)), self.w_f2)
        t = F.layer_norm(t + f, (W,)) * self.g2[:, None] + self.be2[:, None]
        h = F.dropout(torch.relu(torch.baddbmm(self.b_h1[:, None], t.reshape(S, n, M, W).mean(2), self.w_h1)),
                      self.dropout, self.training)
        return torch.baddbmm(self.b_h2[:, None], h, self.w_h2).squeeze(-1)


def _data(n: int = 3000):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, M, D, generator=g), torch.rand(n, M, generator=g) > 0.3, (torch.rand(n, generator=g) > 0.7).float()


def separate(S: int, data) -> Callable[[], None]:
    """One training step of each of ``S`` separate paper networks."""
    x, mask, y = data
    models = [PaperFusion(M, D, 32, 2) for _ in range(S)]
    opts = [adamw(m, TrainConfig()) for m in models]
    loss_fn, g = torch.nn.BCEWithLogitsLoss(), torch.Generator().manual_seed(1)

    def step():
        for model, opt in zip(models, opts):
            b = torch.randint(0, len(x), (B,), generator=g)
            loss = loss_fn(model(x.index_select(0, b), mask.index_select(0, b)), y.index_select(0, b))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()
    return step


def stacked(S: int, data) -> Callable[[], None]:
    """One training step of :class:`Stacked` over ``S`` seeds (each seed its own mini-batch, its mean loss)."""
    x, mask, y = data
    model = Stacked(S)
    opt = adamw(model, TrainConfig())  # the book's optimiser, over the stacked parameters
    g = torch.Generator().manual_seed(1)

    def step():
        b = torch.randint(0, len(x), (S * B,), generator=g)
        logits = model(x.index_select(0, b).view(S, B, M, D), mask.index_select(0, b).view(S, B, M))
        loss = F.binary_cross_entropy_with_logits(logits, y.index_select(0, b).view(S, B), reduction="none")
        loss = loss.mean(1).sum()  # each seed's gradient is that of its own mean loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
    return step


def _ms_per_seed_step(step, S: int, steps: int) -> float:
    for _ in range(5):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps / S * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="print PyTorch's operator profile of both")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data, S = _data(), args.seeds
    steps = {"separate": separate(S, data), "stacked": stacked(S, data)}
    ratios = []
    for r in range(args.rounds):
        order = ("separate", "stacked") if r % 2 == 0 else ("stacked", "separate")
        ms = {k: _ms_per_seed_step(steps[k], S, args.steps) for k in order}
        ratios.append(ms["separate"] / ms["stacked"])
        print(f"round {r + 1}/{args.rounds}: separate {ms['separate']:.2f} ms per seed and step, stacked "
              f"{ms['stacked']:.2f}: {ratios[-1]:.2f}x", flush=True)
    print(f"stacking {S} seeds of the paper network: {min(ratios):.2f}-{max(ratios):.2f}x per seed and step")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for k, step in steps.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(10):
                    step()
            print(f"\n{k}, 10 steps:\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


if __name__ == "__main__":
    main()
