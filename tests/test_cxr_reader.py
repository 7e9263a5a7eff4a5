"""Tests of the offline chest X-ray reader (mmlib.cxr_reader).

- on a generated synthetic MIMIC-Eye cohort (read from its JPG files) the cardiothoracic ratio tracks the
  phantom's true CTR, and every finding of the report's IMPRESSION is read clearly better than chance;
- unreadable input (blank, garbage, empty or missing files, noise) gives ``readable`` False and a
  ``None`` report, never an exception;
- paths and arrays give identical measurements; results are deterministic and independent of how the
  images are batched;
- on phantoms drawn with ``render_cxr`` directly: an enlarged heart is called and a normal one is not,
  an effusion and a consolidation are put on the right side (and zone);
- :func:`findings_from_report` parses the IMPRESSION back into exactly the findings of :func:`cxr_findings`.

The cohort is generated once per module (n = 450 stays, ~300 images, a few seconds).
"""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mmlib import cxr_reader as cr
from mmlib.data import generate, load_cohort
from mmlib.data.cxr import render_cxr


@pytest.fixture(scope="module")
def cohort_read(tmp_path_factory):
    """(paths, views, truth, reports, measurements) of a fresh synthetic cohort's chest X-rays."""
    d = tmp_path_factory.mktemp("cxr_reader")
    root, _ = generate("mimic_eye", {"n": 450, "seed": 11, "image_size": 256}, data_dir=d, progress=False)
    c = load_cohort("mimic_eye", root, progress=False)
    ids = c.availability.index[c.availability["cxr"]]
    paths = [c.root / c.modalities["cxr"].loc[s, "path"] for s in ids]
    views = c.modalities["cxr"].loc[ids, "ViewPosition"].tolist()
    truth = c.truth.loc[ids]
    reports, m = cr.read_cxr(paths, view=views)
    return paths, views, truth, reports, m


def _findings(n: int, **kw) -> dict[str, np.ndarray]:
    f = {"ctr": np.full(n, 0.45), "consolidation": np.zeros(n), "consolidation_side": np.zeros(n, int),
         "consolidation_zone": np.zeros(n, int), "edema": np.zeros(n), "effusion_left": np.zeros(n),
         "effusion_right": np.zeros(n)}
    for k, v in kw.items():
        f[k] = np.broadcast_to(np.asarray(v), (n,)).copy()
    return f


def _render(n: int, ap: bool = False, seed: int = 5, **kw) -> np.ndarray:
    images, _ = render_cxr(_findings(n, **kw), np.full(n, ap), np.random.default_rng(seed), size=256)
    return images


def _impression(report: str) -> str:
    assert "FINDINGS:" in report and "IMPRESSION:" in report
    assert report.index("FINDINGS:") < report.index("IMPRESSION:")
    return report.split("IMPRESSION:")[1]


# --------------------------------------------------------------------------- cohort-level fidelity
def test_reads_cohort_and_ctr_tracks_truth(cohort_read):
    paths, views, truth, reports, m = cohort_read
    assert len(m) == len(paths) == len(reports) >= 250
    assert m["readable"].all()
    assert list(m.columns[:3]) == ["readable", "unreadable_reason", "view"]
    for col in ("ctr", "heart_width_px", "thorax_width_px", "edema_score", "perihilar_haze", "contrast", "noise",
                "rotation_deg", *[f"opacity_{s}_{z}" for s in cr.SIDES for z in cr.ZONES],
                *[f"cp_blunting_{s}" for s in cr.SIDES]):
        assert col in m.columns
    visible = ~m["heart_obscured"].astype(bool).to_numpy()
    assert visible.mean() > 0.85  # only large effusions hide the heart borders
    r = np.corrcoef(m["ctr_pa_equiv"].to_numpy()[visible], truth["cxr_ctr"].to_numpy()[visible])[0, 1]
    assert r > 0.8, r
    rw = np.corrcoef(m["heart_width_px"].to_numpy()[visible], truth["cxr_acq_heart_width_px"].to_numpy()[visible])[0, 1]
    rt = np.corrcoef(m["thorax_width_px"], truth["cxr_acq_thorax_width_px"])[0, 1]
    assert rw > 0.8 and rt > 0.8, (rw, rt)
    # image-quality measures follow the acquisition
    assert np.corrcoef(m["noise"].fillna(m["noise"].median()), truth["cxr_acq_noise_sd"])[0, 1] > 0.8
    assert np.corrcoef(m["rotation_deg"], truth["cxr_acq_rotation_deg"])[0, 1] > 0.4
    # the view is echoed, and AP films are adjusted for the magnified heart
    ap = np.array(views) == "AP"
    assert (m["view"].to_numpy() == np.array(views)).all()
    assert np.allclose(m["ctr_pa_equiv"][ap], m["ctr"][ap] / cr.READER_SETTINGS["ap_heart_magnification"])
    assert np.allclose(m["ctr_pa_equiv"][~ap], m["ctr"][~ap])


def test_report_fidelity_above_chance(cohort_read):
    _, _, truth, reports, m = cohort_read
    parsed = pd.DataFrame([cr.findings_from_report(r) for r in reports], index=truth.index)
    for f in cr.FINDINGS:
        y = truth[f"finding_{f}"].to_numpy(bool)
        p = parsed[f].to_numpy(bool)
        assert y.sum() >= 15 and (~y).sum() >= 15, f
        sens, spec = p[y].mean(), 1 - p[~y].mean()
        assert sens + spec > 1.2, (f, sens, spec)
        assert spec > 0.8, (f, spec)
    # errors are real: the reading is not perfect
    assert (parsed.to_numpy() != truth[[f"finding_{f}" for f in cr.FINDINGS]].to_numpy(bool)).any()


def test_findings_from_report_round_trips_the_impression(cohort_read):
    _, _, _, reports, m = cohort_read
    f = cr.cxr_findings(m)
    parsed = pd.DataFrame([cr.findings_from_report(r) for r in reports], index=f.index)
    pd.testing.assert_frame_equal(parsed, f[list(cr.FINDINGS)])
    assert f.any().all()  # every finding occurs in the cohort's reports
    for rep in reports:
        _impression(rep)


# --------------------------------------------------------------------------- robustness
def test_unreadable_inputs_are_missing_not_errors(tmp_path, cohort_read):
    good = cohort_read[0][0]
    (tmp_path / "garbage.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(tmp_path / "black.jpg")
    Image.fromarray(np.full((300, 280), 180, np.uint8)).save(tmp_path / "flat.png")
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (256, 256)).astype(np.uint8)).save(tmp_path / "noise.png")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:600])
    items = [good, tmp_path / "garbage.jpg", tmp_path / "empty.jpg", tmp_path / "text.png", tmp_path / "black.jpg",
             tmp_path / "flat.png", tmp_path / "noise.png", truncated, tmp_path / "missing.jpg", str(good)]
    reports, m = cr.read_cxr(items)
    assert len(m) == len(reports) == len(items)
    assert m["readable"].tolist() == [True] + [False] * 8 + [True]
    for i in range(1, 9):
        assert reports[i] is None
        assert m["unreadable_reason"].iloc[i]
        assert np.isnan(m["ctr"].iloc[i])
    assert reports[0] == reports[-1] and reports[0] is not None
    assert not cr.cxr_findings(m).iloc[1:9].to_numpy().any()
    # arrays: a blank frame in a stack; an empty batch
    arr = np.zeros((3, 256, 256), np.uint8)
    arr[1] = np.asarray(Image.open(good).convert("L"))
    assert cr.measure_cxr(arr)["readable"].tolist() == [False, True, False]
    empty = cr.measure_cxr(np.zeros((0, 256, 256), np.uint8))
    assert len(empty) == 0 and "ctr" in empty.columns
    assert cr.cxr_report(empty) == []
    with pytest.raises(ValueError, match="view"):
        cr.measure_cxr(arr, view=["PA"])
    # a lateral film is not read (and does not shift the other rows); DICOM view spellings are normalised
    four = cohort_read[0][:4]
    m = cr.measure_cxr(four, view=["LL", "ap axial", "PA", None])
    assert m["readable"].tolist() == [False, True, True, True]
    assert m["view"].tolist() == ["LATERAL", "AP", "PA", None]
    assert m["unreadable_reason"].iloc[0] == "not a frontal view"
    assert np.allclose(m["ctr"].iloc[1:], cohort_read[4]["ctr"].iloc[1:4])


def test_paths_arrays_sizes_and_batching_agree(cohort_read, tmp_path):
    paths, views, _, reports, m = cohort_read
    k = 40
    arrays = np.stack([np.asarray(Image.open(p).convert("L")) for p in paths[:k]])
    from_arrays = cr.measure_cxr(arrays, view=views[:k])
    pd.testing.assert_frame_equal(from_arrays, m.iloc[:k].reset_index(drop=True))
    # a list of 2-D arrays, a sub-batch, and a different order give the same rows
    pd.testing.assert_frame_equal(cr.measure_cxr(list(arrays), view=views[:k]), from_arrays)
    sub = cr.measure_cxr(arrays[5:9], view=views[5:9])
    pd.testing.assert_frame_equal(sub, from_arrays.iloc[5:9].reset_index(drop=True))
    rev = cr.measure_cxr(arrays[::-1], view=views[:k][::-1])
    pd.testing.assert_frame_equal(rev.iloc[::-1].reset_index(drop=True), from_arrays)
    assert cr.cxr_report(from_arrays) == reports[:k]
    # a 16-bit copy is rescaled, not clipped
    Image.fromarray(arrays[0].astype(np.uint16) * 250).save(tmp_path / "film16.png")
    m16 = cr.measure_cxr([tmp_path / "film16.png"], view=views[:1])
    assert abs(m16["ctr"].iloc[0] - from_arrays["ctr"].iloc[0]) < 0.01
    # a larger copy of the same film reads the same findings, with pixel sizes in its own scale
    big = np.asarray(Image.fromarray(arrays[0]).resize((512, 512), Image.BILINEAR))
    mb = cr.measure_cxr([big], view=views[:1])
    assert abs(mb["ctr"].iloc[0] - from_arrays["ctr"].iloc[0]) < 0.02
    assert abs(mb["thorax_width_px"].iloc[0] / from_arrays["thorax_width_px"].iloc[0] - 2) < 0.05


def test_deterministic(cohort_read):
    paths, views, _, reports, m = cohort_read
    reports2, m2 = cr.read_cxr(paths[:60], view=views[:60])
    assert reports2 == reports[:60]
    pd.testing.assert_frame_equal(m2, m.iloc[:60].reset_index(drop=True))


# --------------------------------------------------------------------------- rendered phantoms
def test_heart_size_on_rendered_phantoms():
    n = 8
    big = _render(n, ctr=0.65)
    normal = _render(n, ctr=0.42)
    r_big, m_big = cr.read_cxr(big, view=["PA"] * n)
    r_norm, m_norm = cr.read_cxr(normal, view=["PA"] * n)
    assert m_big["readable"].all() and m_norm["readable"].all()
    assert np.abs(m_big["ctr"] - 0.65).max() < 0.04 and np.abs(m_norm["ctr"] - 0.42).max() < 0.04
    for rep in r_big:
        assert "Cardiomegaly" in _impression(rep)
        assert "The heart is enlarged (cardiothoracic ratio 0.6" in rep
        assert cr.findings_from_report(rep)["cardiomegaly"]
    for rep in r_norm:
        assert "Cardiomegaly" not in _impression(rep)
        assert "within normal limits (cardiothoracic ratio 0.4" in rep
        assert not cr.findings_from_report(rep)["cardiomegaly"]
    # AP magnifies the heart; the AP threshold allows for it
    r_ap, m_ap = cr.read_cxr(_render(n, ap=True, ctr=0.42), view=["AP"] * n)
    assert (m_ap["ctr"] > m_norm["ctr"].mean()).mean() >= 0.75
    assert sum(cr.findings_from_report(r)["cardiomegaly"] for r in r_ap) <= 1


def test_effusion_and_consolidation_sides():
    n = 6
    for side, other in (("left", "right"), ("right", "left")):
        reps, m = cr.read_cxr(_render(n, **{f"effusion_{side}": 0.5}), view=["PA"] * n)
        assert (m[f"cp_blunting_{side}"] > cr.DEFAULT_THRESHOLDS["effusion"]).all()
        assert (m[f"cp_blunting_{other}"] < cr.DEFAULT_THRESHOLDS["effusion"]).all()
        for rep in reps:
            imp = _impression(rep)
            assert f"{side} pleural effusion" in imp and other not in imp
            assert f"Blunting of the {side} costophrenic angle" in rep
    # consolidation of the right lower zone (side 0 = the patient's right, zone 0 = lower)
    reps, m = cr.read_cxr(_render(n, consolidation=0.8, consolidation_side=0, consolidation_zone=0), view=["PA"] * n)
    assert (m["opacity_right_lower"] > m["opacity_left_lower"] + 0.1).all()
    assert sum("Right lower zone consolidation" in _impression(r) for r in reps) >= n - 1
    # a normal film reads normal
    reps, m = cr.read_cxr(_render(n, seed=9), view=["PA"] * n)
    normal = "No cardiomegaly, consolidation, pulmonary edema or pleural effusion."
    assert sum(_impression(r).strip() == normal for r in reps) >= n - 1


def test_findings_from_report_free_text_and_thresholds():
    neg = ("FINDINGS: PA view. The lungs are clear. "
           "IMPRESSION: No cardiomegaly, consolidation, pulmonary edema or pleural effusion.")
    assert cr.findings_from_report(neg) == {k: False for k in cr.FINDINGS}
    pos = ("FINDINGS: AP view. The heart is enlarged (cardiothoracic ratio 0.61). IMPRESSION: Cardiomegaly. "
           "Consolidation in the right lower zone. Pulmonary edema. Small left pleural effusion.")
    assert cr.findings_from_report(pos) == {k: True for k in cr.FINDINGS}
    # the IMPRESSION decides when there is one; free text without sections is read whole
    sectioned = "FINDINGS: Pleural effusion. IMPRESSION: No acute finding."
    assert cr.findings_from_report(sectioned)["pleural_effusion"] is False
    free = "Enlarged cardiac silhouette with bilateral effusions; no focal consolidation."
    assert cr.findings_from_report(free) == {"cardiomegaly": True, "consolidation": False, "edema": False,
                                             "pleural_effusion": True}
    assert cr.findings_from_report(None) == {k: False for k in cr.FINDINGS}
    unassessed = "IMPRESSION: Heart size cannot be assessed. Pulmonary edema."
    assert cr.findings_from_report(unassessed) == {"cardiomegaly": False, "consolidation": False, "edema": True,
                                                   "pleural_effusion": False}
    with pytest.raises(ValueError):
        cr.findings_from_report(3)
    # thresholds are per call
    m = cr.measure_cxr(_render(2, ctr=0.6), view=["PA", None])
    assert cr.cxr_findings(m)["cardiomegaly"].all()
    assert not cr.cxr_findings(m, {"ctr_pa": 0.9})["cardiomegaly"].any()
    assert cr.cxr_report(m)[1].startswith("FINDINGS: Frontal view.")
    with pytest.raises(ValueError, match="unknown"):
        cr.cxr_findings(m, {"ctr": 0.5})


def test_worker_processes_give_the_same_reports_and_measurements(cohort_read, monkeypatch):
    """read_cxr(n_jobs=2) hands whole batches to two worker processes: the same result as one process."""
    paths, views, _, reports, m = cohort_read
    monkeypatch.setattr(cr, "_CHUNK", 64)  # several batches from these ~300 images (workers use their own size)
    r2, m2 = cr.read_cxr(paths, view=views, n_jobs=2)
    assert r2 == reports
    pd.testing.assert_frame_equal(m2, m)
    r1, m1 = cr.read_cxr(paths[:10], view=views[:10], n_jobs=2)  # one batch: read here, no workers
    assert r1 == reports[:10]
