"""Tests of the synthetic chest X-ray phantom generator (mmlib.data.cxr)."""

from __future__ import annotations


import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from mmlib.data.cxr import ACQUISITION_KEYS, FINDINGS, render_cxr

SIZE = 256


def _findings(n: int, **kw) -> dict[str, np.ndarray]:
    f = {
        "ctr": np.full(n, 0.45),
        "consolidation": np.zeros(n),
        "consolidation_side": np.zeros(n, dtype=int),
        "consolidation_zone": np.zeros(n, dtype=int),
        "edema": np.zeros(n),
        "effusion_left": np.zeros(n),
        "effusion_right": np.zeros(n),
    }
    for k, v in kw.items():
        f[k] = np.broadcast_to(np.asarray(v), (n,)).copy()
    return f


def _one(seed: int = 0, ap: bool = False, size: int = SIZE, **kw):
    """Render one image; with equal seeds the acquisition and anatomy are identical."""
    img, acq = render_cxr(_findings(1, **kw), np.array([ap]), np.random.default_rng(seed), size=size)
    return img[0].astype(np.float64), {k: v[0] for k, v in acq.items()}


def _otsu(values: np.ndarray) -> float:
    hist, edges = np.histogram(values, 64)
    mids = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m = np.cumsum(hist * mids)
    mu0 = m / np.maximum(w0, 1)
    mu1 = (m[-1] - m) / np.maximum(w1, 1)
    return float(edges[np.argmax(w0 * w1 * (mu0 - mu1) ** 2) + 1])


def _heart_width(img: np.ndarray, cx: float) -> int:
    """A tiny classical reader: widest bright central run bounded by dark lung on both
    sides, scanning down until the run jumps (the diaphragm)."""
    im = uniform_filter(img, 5)
    s = im.shape[0]
    thr = _otsu(im[s // 5 : 4 * s // 5, s // 8 : 7 * s // 8].ravel())
    c = int(round(cx))
    best, prev = 0, None
    for y in range(s // 4, s):
        row = im[y] > thr
        if not row[c]:
            continue
        lung = (im[y] > 35) & ~row
        left = c
        while left > 0 and row[left - 1]:
            left -= 1
        right = c
        while right < s - 1 and row[right + 1]:
            right += 1
        if left >= 14 and right <= s - 15 and lung[left - 14 : left].all() and lung[right + 1 : right + 15].all():
            width = right - left + 1
            if prev is not None and width > prev + 12:
                break
            prev = width
            best = max(best, width)
    return best


# --------------------------------------------------------------------------- #
# basic contract
# --------------------------------------------------------------------------- #
def test_shapes_dtypes_and_acquisition_keys():
    n = 5
    ap = np.array([0, 1, 0, 1, 0], dtype=bool)
    img, acq = render_cxr(_findings(n), ap, np.random.default_rng(1), size=128, chunk=2)
    assert img.shape == (n, 128, 128) and img.dtype == np.uint8
    for key in ("rotation_deg", "shift_x", "shift_y", "scale", "contrast", "noise_sd",
                "inspiration", "heart_width_px", "thorax_width_px"):
        assert key in acq
    assert set(acq) == set(ACQUISITION_KEYS)
    for v in acq.values():
        assert v.shape == (n,) and v.dtype == np.float64 and np.all(np.isfinite(v))
    assert img.std() > 20  # not a flat image


def test_empty_cohort():
    img, acq = render_cxr(_findings(0), np.zeros(0, bool), np.random.default_rng(0), size=64)
    assert img.shape == (0, 64, 64)
    assert all(v.shape == (0,) for v in acq.values())


@pytest.mark.parametrize("size", [64, 100, 256])
def test_looks_like_a_radiograph(size):
    """Dark air outside the body, dark lungs on both sides, bright mediastinum."""
    n = 8
    g = np.random.default_rng(3)
    img, acq = render_cxr(_findings(n, ctr=g.uniform(0.4, 0.5, n)), g.uniform(size=n) < 0.5,
                          np.random.default_rng(4), size=size)
    s = size
    for i in range(n):
        im = uniform_filter(img[i].astype(float), max(3, s // 40))
        cx = s / 2 + acq["shift_x"][i]
        y = int(0.40 * s + acq["shift_y"][i])  # upper-middle thorax
        centre = im[y, int(cx)]
        right_lung = im[y, int(cx - 0.25 * s)]  # image left
        left_lung = im[y, int(cx + 0.25 * s)]
        corner = im[int(0.55 * s), 1]  # air beside the chest wall
        assert centre > right_lung + 30 and centre > left_lung + 30, i
        assert right_lung > corner and left_lung > corner, i
        assert corner < 40, i


# --------------------------------------------------------------------------- #
# determinism
# --------------------------------------------------------------------------- #
def test_determinism_and_chunk_independence():
    n = 7
    g = np.random.default_rng(0)
    f = _findings(n, ctr=g.uniform(0.38, 0.65, n), consolidation=g.uniform(0, 1, n),
                  consolidation_side=g.integers(0, 3, n), consolidation_zone=g.integers(0, 3, n),
                  edema=g.uniform(0, 1, n), effusion_left=g.uniform(0, 1, n))
    ap = g.uniform(size=n) < 0.5
    a, acq_a = render_cxr(f, ap, np.random.default_rng(42))
    b, acq_b = render_cxr(f, ap, np.random.default_rng(42), chunk=3)
    c, _ = render_cxr(f, ap, np.random.default_rng(43))
    assert a.tobytes() == b.tobytes()
    for k in acq_a:
        np.testing.assert_array_equal(acq_a[k], acq_b[k])
    assert a.tobytes() != c.tobytes()
    assert np.mean(a != c) > 0.5


def test_progress_bar_runs():
    img, _ = render_cxr(_findings(3), np.zeros(3, bool), np.random.default_rng(0), size=64,
                        chunk=2, progress=True)
    assert img.shape == (3, 64, 64)


# --------------------------------------------------------------------------- #
# heart size / cardiothoracic ratio
# --------------------------------------------------------------------------- #
def test_heart_width_follows_ctr_and_matches_returned_truth():
    ctrs = [0.38, 0.44, 0.50, 0.56]
    for seed in (0, 1, 2):
        measured, truth = [], []
        for ctr in ctrs:
            img, acq = _one(seed, ctr=ctr)
            measured.append(_heart_width(img, SIZE / 2 + acq["shift_x"]))
            truth.append(acq["heart_width_px"])
            assert acq["heart_width_px"] / acq["thorax_width_px"] == pytest.approx(ctr)
        assert np.all(np.diff(truth) > 0)
        assert np.all(np.diff(measured) > 0), (seed, measured)
        rel = np.abs(np.array(measured) - truth) / truth
        assert rel.max() < 0.08, (seed, measured, truth)


def test_ap_magnifies_the_heart():
    for seed in (0, 1, 2, 3):
        _, pa = _one(seed, ap=False, ctr=0.45)
        img_ap, ap = _one(seed, ap=True, ctr=0.45)
        assert pa["heart_magnification"] == 1.0
        assert 1.10 <= ap["heart_magnification"] <= 1.15
        ratio_pa = pa["heart_width_px"] / pa["thorax_width_px"]
        ratio_ap = ap["heart_width_px"] / ap["thorax_width_px"]
        assert ratio_ap / ratio_pa == pytest.approx(ap["heart_magnification"])
        # the apparent (pixel) CTR is larger in AP
        img_pa, _ = _one(seed, ap=False, ctr=0.45)
        m_pa = _heart_width(img_pa, SIZE / 2 + pa["shift_x"]) / pa["thorax_width_px"]
        m_ap = _heart_width(img_ap, SIZE / 2 + ap["shift_x"]) / ap["thorax_width_px"]
        assert m_ap > m_pa * 1.04, (seed, m_pa, m_ap)


def test_acquisition_distributions_pa_vs_ap():
    n = 400
    ap = np.arange(n) % 2 == 1
    _, acq = render_cxr(_findings(n), ap, np.random.default_rng(5), size=64)
    assert np.abs(acq["rotation_deg"][~ap]).max() <= 3.0
    assert np.abs(acq["rotation_deg"][ap]).max() <= 6.0
    assert np.abs(acq["rotation_deg"][ap]).mean() > 1.5 * np.abs(acq["rotation_deg"][~ap]).mean()
    assert acq["noise_sd"][ap].mean() > 1.5 * acq["noise_sd"][~ap].mean()
    assert acq["inspiration"][ap].max() < acq["inspiration"][~ap].min()
    assert acq["contrast"].std() > 0.05 and acq["scale"].std() > 0.01
    frac = acq["thorax_width_px"] / 64
    assert np.all((frac > 0.5) & (frac < 0.9))


# --------------------------------------------------------------------------- #
# findings
# --------------------------------------------------------------------------- #
def _region_means(diff: np.ndarray, acq: dict) -> dict[str, float]:
    s = diff.shape[0]
    cx = int(s / 2 + acq["shift_x"])
    return {"left": diff[:, : cx - 12].sum(), "right": diff[:, cx + 12 :].sum()}


@pytest.mark.parametrize("key,side", [("effusion_right", "left"), ("effusion_left", "right")])
def test_effusion_brightens_its_own_base_only(key, side):
    other = "right" if side == "left" else "left"
    for seed in (0, 1):
        base, acq = _one(seed)
        tops = []
        for sev in (0.15, 0.4, 0.8):
            img, _ = _one(seed, **{key: sev})
            diff = img - base
            mass = _region_means(np.clip(diff, 0, None), acq)
            assert mass[side] > 20 * max(mass[other], 1.0), (seed, sev, mass)
            assert np.abs(diff).max() > 40  # fluid replaces dark lung
            # the costophrenic region (lower lateral thorax) of that side brightens
            s = SIZE
            cx = s / 2 + acq["shift_x"]
            xs = slice(int(cx - 0.38 * s), int(cx - 0.22 * s)) if side == "left" else \
                slice(int(cx + 0.22 * s), int(cx + 0.38 * s))
            rows = np.nonzero((diff[:, xs] > 25).mean(axis=1) > 0.2)[0]
            assert rows.size > 0, (seed, sev)
            tops.append(rows.min())
        # higher severity -> higher fluid level (smaller row index)
        assert tops[0] > tops[1] > tops[2], (seed, tops)


@pytest.mark.parametrize("side", [0, 1, 2])
def test_consolidation_side_and_zone(side):
    seed = 3
    base, acq = _one(seed)
    cy = []
    for zone in (2, 1, 0):  # upper, middle, lower
        img, a = _one(seed, consolidation=0.8, consolidation_side=side, consolidation_zone=zone)
        assert a["consolidation_area_px"] > 100
        diff = np.clip(img - base, 0, None)
        m = _region_means(diff, acq)
        total = diff.sum()
        assert total > 0
        if side == 0:  # patient's right = image left
            assert m["left"] > 0.97 * total and m["right"] < 0.01 * total
        elif side == 1:
            assert m["right"] > 0.97 * total and m["left"] < 0.01 * total
        else:
            assert min(m["left"], m["right"]) > 0.2 * total
        ys = np.arange(diff.shape[0])
        cy.append((diff.sum(axis=1) * ys).sum() / total)
    assert cy[0] < cy[1] < cy[2], cy  # upper above middle above lower


def test_consolidation_grows_with_severity():
    seed = 4
    base, _ = _one(seed)
    areas, masses = [], []
    for sev in (0.2, 0.5, 0.9):
        img, a = _one(seed, consolidation=sev, consolidation_side=1, consolidation_zone=1)
        areas.append(a["consolidation_area_px"])
        masses.append(np.clip(img - base, 0, None).sum())
    assert areas[0] < areas[1] < areas[2]
    assert masses[0] < masses[1] < masses[2]
    _, a0 = _one(seed)
    assert a0["consolidation_area_px"] == 0


def test_edema_is_bilateral_perihilar_and_grows():
    seed = 5
    base, acq = _one(seed)
    s = SIZE
    cx = s / 2 + acq["shift_x"]
    means = []
    for sev in (0.3, 0.6, 0.95):
        img, _ = _one(seed, edema=sev)
        diff = img - base
        pos = np.clip(diff, 0, None)
        m = _region_means(pos, acq)
        assert min(m["left"], m["right"]) > 0.3 * pos.sum()
        # perihilar boxes on both sides brighten
        y0, y1 = int(0.42 * s + acq["shift_y"]), int(0.58 * s + acq["shift_y"])
        left = diff[y0:y1, int(cx - 0.22 * s) : int(cx - 0.12 * s)].mean()
        right = diff[y0:y1, int(cx + 0.14 * s) : int(cx + 0.24 * s)].mean()
        assert left > 3 and right > 3, (sev, left, right)
        means.append(left + right)
    assert means[0] < means[1] < means[2]


def test_findings_do_not_change_acquisition():
    _, a = _one(7)
    _, b = _one(7, ctr=0.6, consolidation=1.0, edema=1.0, effusion_left=1.0, effusion_right=1.0)
    for k in ("rotation_deg", "shift_x", "shift_y", "scale", "contrast", "noise_sd", "inspiration",
              "thorax_width_px"):
        assert a[k] == b[k]


# --------------------------------------------------------------------------- #
# validation
# --------------------------------------------------------------------------- #
def test_missing_key_is_named():
    f = _findings(3)
    del f["edema"]
    with pytest.raises(ValueError, match="edema"):
        render_cxr(f, np.zeros(3, bool), np.random.default_rng(0))


@pytest.mark.parametrize("key", FINDINGS)
def test_wrong_length_is_named(key):
    f = _findings(3)
    f[key] = f[key][:2]
    with pytest.raises(ValueError, match=rf"{key}.*expected.*3"):
        render_cxr(f, np.zeros(3, bool), np.random.default_rng(0))


@pytest.mark.parametrize(
    "key,value",
    [("ctr", 1.5), ("edema", 1.2), ("effusion_left", -0.5), ("ctr", np.nan),
     ("consolidation_side", 3), ("consolidation_zone", -1)],
)
def test_bad_values_are_named(key, value):
    f = _findings(3, consolidation=0.5)
    f[key] = f[key].astype(float)
    f[key][1] = value
    with pytest.raises(ValueError, match=key):
        render_cxr(f, np.zeros(3, bool), np.random.default_rng(0))


def test_side_and_zone_ignored_without_consolidation():
    f = _findings(2, consolidation_side=-1, consolidation_zone=np.nan)
    img, _ = render_cxr(f, np.zeros(2, bool), np.random.default_rng(0), size=64)
    assert img.shape == (2, 64, 64)


def test_bad_size_and_chunk():
    with pytest.raises(ValueError, match="size"):
        render_cxr(_findings(1), np.zeros(1, bool), np.random.default_rng(0), size=8)
    with pytest.raises(ValueError, match="chunk"):
        render_cxr(_findings(1), np.zeros(1, bool), np.random.default_rng(0), chunk=0)
