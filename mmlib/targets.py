"""What the paper found when modalities are added (its Table 1 and Figure 2), as checkable targets, and whether
a run reproduces them.

The synthetic simulator (:mod:`mmlib.data.latent`) is calibrated so that its default cohorts reproduce the
paper's first finding, not by fitting numbers but by its structure: each modality sees its own part of the
latent state (:data:`mmlib.data.latent.MODALITY_SEES`). The targets, per cohort:

- MIMIC-Eye: arrival is the best single modality by AUROC and the chest X-ray the weakest (the paper's
  section 5.2.1: "Arrival achieves the highest F1 ... X-ray struggles with the lowest AUC-ROC");
- both cohorts: the model on all modalities beats the best single modality, the paired 95% CI of the AUROC
  difference excluding 0 ("adding modalities improves performance").

On a synthetic source these are the simulator's calibration targets; on a real source the same table says
whether the credentialed data reproduce the paper. Chapter 04 shows :func:`target_table`;
``benchmarks/bench_targets.py`` checks it on the demo profile.
"""
from __future__ import annotations

import pandas as pd

from .train import ModalityOrder

#: The paper's single-modality ordering by AUROC, per cohort (``None``: the paper states none).
SINGLE_ORDER_TARGETS = {"mimic_eye": {"best": "arrival", "weakest": "cxr"}, "mds_ed": {"best": None, "weakest": None}}

AUROC = ("auroc", "overall", "all")


def target_table(summary, orders: dict, model: str) -> pd.DataFrame:
    """One row per target and cohort: ``cohort, target, achieved, met`` (``met`` is True, False, or None
    when the runs needed were not trained, e.g. single modalities other than the first without
    ``every_order``).

    ``summary``: a :class:`mmlib.metrics.Summary` holding ``model``'s runs; ``orders``: cohort ->
    :class:`mmlib.train.ModalityOrder`. The best single modality is chosen by mean AUROC over seeds; the
    all-modality gain is the paired difference on the shared bootstrap resamples (:meth:`Summary.difference`).
    """
    rows = []
    for cohort, order in orders.items():
        order = ModalityOrder(order)
        have = set(summary.select("auroc", cohort=cohort, model=model)["modalities"])
        singles = [m for m in order if m in have]
        full = order.full
        if len(singles) < len(order) or full not in have:
            missing = sorted(set(order) - set(singles)) + ([full] if full not in have else [])
            rows.append({"cohort": cohort, "target": "single modalities and all modalities trained",
                         "achieved": f"not trained: {', '.join(missing)}", "met": None})
            continue
        means = {m: summary.estimate("auroc", cohort=cohort, model=model, modalities=m).mean for m in singles}
        ranked = sorted(means, key=means.get, reverse=True)
        ranking = " > ".join(f"{m} {means[m]:.3f}" for m in ranked)
        want = SINGLE_ORDER_TARGETS.get(cohort, {})
        if want.get("best"):
            rows.append({"cohort": cohort, "target": f"best single modality by AUROC is {want['best']}",
                         "achieved": ranking, "met": ranked[0] == want["best"]})
        if want.get("weakest"):
            rows.append({"cohort": cohort, "target": f"weakest single modality by AUROC is {want['weakest']}",
                         "achieved": ranking, "met": ranked[-1] == want["weakest"]})
        best = ranked[0]
        gain = summary.difference(cohort, (model, best), (model, full), AUROC)
        rows.append({"cohort": cohort, "target": "all modalities beat the best single one (paired 95% CI > 0)",
                     "achieved": f"{full} {means[best] + gain.change:.3f} − {best} {means[best]:.3f} = "
                                 f"{gain.change:+.3f} [{gain.ci_low:+.3f}, {gain.ci_high:+.3f}]",
                     "met": bool(gain.ci_low > 0)})
    return pd.DataFrame(rows, columns=["cohort", "target", "achieved", "met"])


def target_sentence(table: pd.DataFrame, names: dict | None = None, synthetic: bool = True) -> str:
    """Chapter 04's sentence on :func:`target_table`: how many targets hold, and which do not."""
    names = names or {}
    judged = table[table["met"].notna()]
    what = "the simulator's calibration targets" if synthetic else "the paper's findings on adding modalities"
    if judged.empty:
        return f"None of {what} could be checked: the runs they need were not trained."
    missed = judged[~judged["met"].astype(bool)]
    head = f"{len(judged) - len(missed)} of {len(judged)} of {what} hold"
    if missed.empty:
        return head + "."
    return head + "; not met: " + "; ".join(f"{names.get(r.cohort, r.cohort)}: {r.target} ({r.achieved})"
                                           for r in missed.itertuples()) + "."


__all__ = ["SINGLE_ORDER_TARGETS", "target_table", "target_sentence"]
