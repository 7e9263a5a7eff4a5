"""The paper's findings on adding modalities as targets (mmlib.targets), on hand-made summaries whose answers
are known."""
import numpy as np
import pandas as pd

from mmlib import targets
from mmlib.metrics import Summary
from mmlib.train import ModalityOrder

B = 40
ORDER = ModalityOrder(["arrival", "vitals", "codes", "cxr"])


def _summary(auroc: dict, spread: dict | None = None) -> Summary:
    """Summary of cohort mimic_eye, model paper: ``auroc[modalities] = mean``; replicates = mean + a shared
    noise scaled by ``spread[modalities]`` (default 0.01), so paired differences have a known spread."""
    noise = np.linspace(-1, 1, B)
    rows, reps = [], {}
    for mods, mean in auroc.items():
        s = (spread or {}).get(mods, 0.01)
        rows.append({"cohort": "mimic_eye", "model": "paper", "modalities": mods, "n_modalities": len(mods.split("+")),
                     "metric": "auroc", "attribute": "overall", "group": "all", "mean": mean, "sd": s,
                     "ci_low": mean - s, "ci_high": mean + s, "n": 100, "n_pos": 30, "n_seeds": 3, "flag": ""})
        reps[("mimic_eye", "paper", mods)] = {("auroc", "overall", "all"): mean + s * noise}
    return Summary(pd.DataFrame(rows), reps)


SINGLES = {"arrival": 0.78, "vitals": 0.72, "codes": 0.66, "cxr": 0.64}


def test_all_targets_met():
    t = targets.target_table(_summary(SINGLES | {ORDER.full: 0.81}), {"mimic_eye": ORDER}, "paper")
    assert list(t["met"]) == [True, True, True]
    assert "+0.030" in t["achieved"].iloc[2]
    assert targets.target_sentence(t).startswith("3 of 3 of the simulator's calibration targets hold")


def test_wrong_order_and_no_gain_are_reported():
    # vitals best, codes weakest, and the full set's gain is inside its interval (replicates spread 0.05 vs 0)
    t = targets.target_table(_summary(SINGLES | {"vitals": 0.80, "codes": 0.60, ORDER.full: 0.805},
                                      spread={ORDER.full: 0.05}), {"mimic_eye": ORDER}, "paper")
    assert list(t["met"]) == [False, False, False]
    s = targets.target_sentence(t, {"mimic_eye": "MIMIC-Eye"}, synthetic=False)
    assert s.startswith("0 of 3 of the paper's findings") and "MIMIC-Eye: best single modality by AUROC is arrival" in s


def test_untrained_singles_are_not_judged():
    t = targets.target_table(_summary({"arrival": 0.78, ORDER.full: 0.81}), {"mimic_eye": ORDER}, "paper")
    assert t["met"].isna().all() and "codes" in t["achieved"].iloc[0]
    assert "could be checked" in targets.target_sentence(t)
