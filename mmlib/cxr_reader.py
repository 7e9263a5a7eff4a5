"""The offline default chest X-ray reader: pixel measurements -> a templated radiology report.

The Multimodal Paradox has its chest X-rays transcribed by a vision-language model (Qwen2.5-VL); without
a GPU (or without the weights) the book uses this reader instead.  It is classical image analysis of the
frontal radiograph: it reads the pixels only (never the synthetic truth; the DICOM view position may be
passed, as a real reader would use it), measures what a radiologist looks at and writes a short,
deterministic report, e.g.::

    FINDINGS: PA view. The heart is enlarged (cardiothoracic ratio 0.58). Patchy airspace opacity in the
    right lower zone (about 35% of the zone). Blunting of the left costophrenic angle with a raised left
    lung base (12% of the expected lung height lost). IMPRESSION: Cardiomegaly. Right lower zone
    consolidation. Small left pleural effusion.

Sides are the patient's: radiological convention puts the patient's right on the image's left.

Method (vectorised over batches of 256 images, analysed at 128 x 128 after 2 x 2 binning)
-----------------------------------------------------------------------------------------
1. **Decoding.**  Paths are decoded with Pillow (grey scale); any size is resized to 256 x 256.  A file
   that cannot be opened or decoded, a blank image (1st-99th percentile range below
   ``READER_SETTINGS["min_contrast"]``) or one in which no pair of lung fields is found is unreadable:
   ``readable`` False, ``unreadable_reason``, report ``None`` -- never an exception.  Per image, intensity
   anchors from the central region: the aerated-lung level ``lo`` (10th percentile) and the heart /
   abdomen level ``hi`` (90th percentile); the background level (2nd percentile of the whole image).
2. **Lung fields.**  Aerated lung = darker than ``lung_fraction`` of the way from ``lo`` to ``hi``, more
   than 3 px from the background and the image border (the body's soft margin), thin vertical strips
   opened away; connected components (one label pass per batch) keep the large ones plus small dark
   pockets between them (costophrenic recesses cut off by a rib).  A haze-tolerant mask
   (``hazy_lung_fraction``) grown from it and bounded by its lateral edges follows the lungs through
   perihilar / basal haze.
3. **Midline, thorax, rotation.**  Sub-pixel lateral lung edges (the lung / chest-wall crossing); the
   midline is the robust line through their mid-points (its tilt is ``rotation_deg``); the inner
   thoracic width is the sum of the widest lateral extents from the midline.
4. **Heart.**  Per side and row, the heart border is the first pixel darker than ``heart_level`` from the
   midline outwards (bounded by the medial lung edge), so a juxtacardiac consolidation, being darker
   than the heart, does not widen it.  The rows that count: scanning up from the lung base, the medial
   lung edge first follows the diaphragm towards the midline; the cardiophrenic angle is where it stops
   doing so, and the widest border above it is the heart's half width.  When that angle lies far above
   the dome (a large tilted heart whose lower border merges with the diaphragm) the rows above the dome
   count instead; the domes are the highest lung base over the lateral hemithorax, the left one at
   least as low as the right.  CTR = (right + left half widths) / thoracic width.  Where a lung base
   rises to within ``heart_obscured_height`` (dome - apex, over the hemithorax half width) fluid hides
   the heart borders: ``heart_obscured``; the measured CTR is then a lower bound, the heart is called
   enlarged only when even that exceeds the threshold, and otherwise the report says heart size cannot
   be assessed.  ``ctr_pa_equiv`` divides an AP film's CTR by ``ap_heart_magnification``.
5. **Zones and opacity.**  Per lung, the field between the lateral edge and the heart / mediastinal
   border, from the apex (the higher of the two, so an apical opacity does not shorten its lung) to the
   dome, cut into equal thirds (upper, middle, lower zone), less a 2 px rim.  A pixel (5 x 5 smoothed)
   is opaque when it lies more than ``opacity_level`` of the way from the mean aerated-lung level to
   ``hi``; ``opacity_{side}_{zone}`` is the opaque fraction of the zone.
6. **Edema.**  ``edema_score``: the mean aerated-lung level on the background -> ``hi`` scale (diffuse
   haze lifts it); ``perihilar_haze``: mean opacity of the inner half of the mid / lower fields;
   ``vascular_sharpness``: high-frequency energy in the lungs over that of the uniform abdomen.
7. **Pleural effusion.**  Fluid fills the costophrenic recess and raises the lung base.
   ``lung_height_{side}`` = (lowest lung row - apex) / hemithorax half width; ``cp_blunting_{side}`` =
   1 - lung_height / ``normal_lung_height`` (clipped to 0-1).
8. **Image quality.**  ``contrast`` ((hi - lo) / 255), ``noise`` (high-pass residual in the abdomen, an
   estimate of the detector noise SD in grey levels), ``rotation_deg``, ``exposure`` (mean aerated-lung
   grey level / 255), ``lung_area_fraction``.

Interpretation (:func:`cxr_findings`, :func:`cxr_report`) applies :data:`DEFAULT_THRESHOLDS`, which can be
changed per call: cardiomegaly CTR > 0.50 (PA or unknown view) / 0.56 (AP); consolidation when a zone's
opaque fraction exceeds 0.08 (with edema: 0.20, or 0.08 and 0.10 above the same zone of the other lung);
edema score > 0.48; effusion blunting > 0.09 (moderate > 0.18, large > 0.33).  The thresholds and the
measurement constants in :data:`READER_SETTINGS` (including the edge offsets that make widths match the
drawn anatomy) were set on a calibration cohort of the synthetic generator (seed 101, 1,020 images,
Youden index, clinical round numbers where they fitted) that no evaluation uses.

Reading quality on fresh synthetic cohorts (seeds 303 and 404, 683 + 1,039 films; sensitivity /
specificity of the IMPRESSION against the phantom's findings): cardiomegaly 0.50-0.62 / 0.98 (0.86-0.88 /
0.98 where the heart borders are visible: large bilateral effusions hide the heart in 5-8 % of films,
nearly all of them enlarged hearts), consolidation 0.74-0.77 / 0.94-0.96, edema 0.93-0.94 / 0.87-0.92,
pleural effusion 0.91-0.94 / 0.97-0.99; CTR vs the true CTR r = 0.87-0.89 (visible hearts).
Throughput on the 2-core project machine: 220-460 images/s from 256 px JPEG files, reports included
(depending on the machine's load): 4,500 films in 10-20 s.

Public API: :data:`FINDINGS`, :data:`ZONES`, :data:`SIDES`, :data:`DEFAULT_THRESHOLDS`,
:data:`READER_SETTINGS`, :func:`measure_cxr`, :func:`cxr_findings`, :func:`cxr_report`, :func:`read_cxr`,
:func:`findings_from_report`.
"""
from __future__ import annotations

import functools
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from .reports import findings_in_text, merge_thresholds, worker_count
from .schema import CXR_FINDINGS

__all__ = ["FINDINGS", "ZONES", "SIDES", "DEFAULT_THRESHOLDS", "READER_SETTINGS", "measure_cxr", "cxr_findings",
           "cxr_report", "read_cxr", "findings_from_report"]

#: The findings of the IMPRESSION (:func:`cxr_findings`, :func:`findings_from_report`); see :mod:`mmlib.schema`.
FINDINGS = CXR_FINDINGS
#: Lung zones, top to bottom (equal thirds of the apex-to-dome height).
ZONES = ("upper", "middle", "lower")
#: The patient's sides (the patient's right lung is on the image's left).
SIDES = ("right", "left")

#: Decision thresholds of :func:`cxr_findings` / :func:`cxr_report`.
DEFAULT_THRESHOLDS = {
    "ctr_pa": 0.50,             # measured CTR > this on a PA (or unknown-view) film: cardiomegaly
    "ctr_ap": 0.56,             # ... on an AP film (0.50 x the 10-15 % AP magnification of the heart)
    "consolidation": 0.08,      # opaque fraction of a lung zone > this: airspace opacity in that zone ...
    "consolidation_edema": 0.20,  # ... with edema: > this, or > "consolidation" and more than
    "consolidation_asymmetry": 0.10,  # ... this above the same zone of the other lung
    "edema": 0.48,              # edema_score > this: pulmonary edema
    "effusion": 0.09,           # cp_blunting of a side > this: pleural effusion on that side
    "effusion_moderate": 0.18,  # ... > this: moderate
    "effusion_large": 0.33,     # ... > this: large
    # wording only (no effect on the findings): edema descriptors
    "perihilar_haze": 0.05,     # perihilar_haze > this: "with perihilar predominance"
    "vascular_blur": 1.30,      # vascular_sharpness < this: "indistinct vascular markings"
}

#: Measurement constants of :func:`measure_cxr` (image analysis, not interpretation).
READER_SETTINGS = {
    "size": 256,                    # images are resized to this, then binned 2 x 2
    "lung_fraction": 0.50,          # aerated lung: below lo + this * (hi - lo)
    "hazy_lung_fraction": 0.62,     # heart-border mask: below lo + this * (hi - lo)
    "opacity_level": 0.30,          # opaque pixel: above ref + this * (hi - ref)
    "normal_lung_height": {"right": 1.57, "left": 1.62},  # median (lowest row - apex) / half width
    "heart_obscured_height": 1.10,  # a lung's (dome - apex) / half width below this: heart borders hidden
    "ap_heart_magnification": 1.125,
    "min_contrast": 12.0,           # grey levels between the 1st and 99th percentile: less is blank
    "min_lung_fraction": 0.03,      # less lung field (of the image area), or not both lungs: unreadable
    "noise_factor": 2.06,           # abdomen high-pass residual x this ~ detector noise SD (grey levels)
    # edge-position offsets (work pixels) so that widths match the drawn anatomy on the calibration set:
    # the 50 % lung / wall crossing lies outside the inner rib margin, the heart-border crossing inside
    "thorax_edge_offset_px": 1.38,
    "heart_edge_offset_px": 1.28,
    "heart_level": 0.80,            # heart border: first pixel below lo + this * (hi - lo) off the midline
}

_F32 = np.float32
_WORK = 128
_S2 = np.zeros((3, 3, 3), bool)
_S2[1] = ndi.generate_binary_structure(2, 1)
_CHUNK = 256

_MEASURE_COLUMNS = (
    ["readable", "unreadable_reason", "view", "ctr", "ctr_pa_equiv", "heart_width_px", "thorax_width_px",
     "heart_right_px", "heart_left_px", "heart_obscured"]
    + [f"opacity_{s}_{z}" for s in SIDES for z in ZONES]
    + ["opacity_max", "edema_score", "perihilar_haze", "vascular_sharpness"]
    + [f"lung_height_{s}" for s in SIDES] + [f"cp_blunting_{s}" for s in SIDES]
    + ["contrast", "noise", "rotation_deg", "exposure", "lung_area_fraction"]
)


# --------------------------------------------------------------------------- #
# small vectorised helpers
# --------------------------------------------------------------------------- #
def _first_true(mask: np.ndarray, axis: int) -> np.ndarray:
    has = mask.any(axis=axis)
    return np.where(has, np.argmax(mask, axis=axis), -1)


def _last_true(mask: np.ndarray, axis: int) -> np.ndarray:
    n = mask.shape[axis]
    has = mask.any(axis=axis)
    return np.where(has, n - 1 - np.argmax(np.flip(mask, axis), axis=axis), -1)


def _ffill_rows(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Forward-fill (n, H) ``values`` along rows where ``valid`` is False (leading gaps -> NaN)."""
    H = values.shape[1]
    idx = np.where(valid, np.arange(H)[None, :], 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    out = np.take_along_axis(values, idx, axis=1)
    seen = np.maximum.accumulate(valid, axis=1)
    return np.where(seen, out, np.nan)


def _bfill_rows(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return _ffill_rows(values[:, ::-1], valid[:, ::-1])[:, ::-1]


def _nanmean_rows3(q: np.ndarray) -> np.ndarray:
    """NaN-aware 3-row running mean of (n, H)."""
    w = np.isfinite(q).astype(np.float64)
    z = np.nan_to_num(q)
    num = z.copy()
    den = w.copy()
    num[:, 1:] += z[:, :-1]
    den[:, 1:] += w[:, :-1]
    num[:, :-1] += z[:, 1:]
    den[:, :-1] += w[:, 1:]
    return np.where(np.isfinite(q), num / np.maximum(den, 1), np.nan)


def _kth_largest(a: np.ndarray, k: int) -> np.ndarray:
    """k-th largest along the last axis (NaN ignored; NaN if fewer than k finite values)."""
    b = np.where(np.isfinite(a), a, -np.inf)
    k = min(k, b.shape[-1])
    v = -np.partition(-b, k - 1, axis=-1)[..., k - 1]
    return np.where(np.isfinite(v), v, np.nan)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Square dilation of radius r in the last two axes (separable, fast)."""
    m = ndi.maximum_filter1d(mask.view(np.uint8), 2 * r + 1, axis=1)
    return ndi.maximum_filter1d(m, 2 * r + 1, axis=2).view(bool)


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    m = ndi.minimum_filter1d(mask.view(np.uint8), 2 * r + 1, axis=1)
    return ndi.minimum_filter1d(m, 2 * r + 1, axis=2).view(bool)


def _heart_extent(p: np.ndarray, top: np.ndarray, bot: np.ndarray, values: np.ndarray | None = None,
                  flat_step: float = 0.4, drop: float = 2.0, start: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Largest distance of the heart border from the midline on one side, and the cardiophrenic angle.

    ``p`` (n, H): per row, the distance of the medial lung edge from the midline (NaN where that row has
    no lung on this side).  Scanning upwards from the lung base, the medial edge first follows the
    diaphragm towards the midline (``p`` decreasing); the angle is where it stops doing so (two rows in
    a row with a decrease below ``flat_step`` px, after ``p`` has dropped ``drop`` px below its value at
    the base).  The heart border is everything above the angle (and below ``start`` of the apex-to-base
    height).  Returns (extent, angle row); extent NaN (angle -1) where there is no border to trace.
    """
    n, H = p.shape
    rows = np.arange(H)[None, :]
    valid = np.isfinite(p) & (rows >= (top + start * (bot - top))[:, None]) & (rows <= bot[:, None])
    valid &= (top >= 0)[:, None]
    q = np.where(valid, p, np.nan)
    up = _nanmean_rows3(q)[:, ::-1]  # bottom -> top
    first = np.argmax(np.isfinite(up), axis=1)
    p0 = up[np.arange(n), first]
    d = np.full_like(up, np.nan)
    d[:, 1:] = up[:, 1:] - up[:, :-1]
    with np.errstate(invalid="ignore"):
        flat = d > -flat_step  # NaN compares False
        turned = flat.copy()
        turned[:, 1:] &= flat[:, :-1]
        turned &= up < (p0 - drop)[:, None]
    has = turned.any(1)
    k = np.argmax(turned, axis=1)
    last_valid = np.max(np.where(valid, rows, -1), axis=1)
    angle = np.where(has, H - k, last_valid)
    above = valid & (rows <= angle[:, None])
    if values is not None:
        q = np.where(np.isfinite(values), values, q)
    ext = np.max(np.where(above, q, -np.inf), axis=1)
    ext = np.where(np.isfinite(ext), ext, np.nan)
    return ext, np.where(valid.any(1), angle, -1)


def _heart_above(p: np.ndarray, top: np.ndarray, dome: np.ndarray, values: np.ndarray | None = None,
                 start: float = 0.4, margin: float = 2.0) -> np.ndarray:
    """Largest border distance over the rows from ``start`` of apex-to-dome down to the dome - margin."""
    rows = np.arange(p.shape[1])[None, :]
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(p) & (rows >= (top + start * (dome - top))[:, None]) & \
            (rows <= (dome - margin)[:, None])
    if values is not None:
        p = np.where(np.isfinite(values), values, p)
    ext = np.max(np.where(valid, p, -np.inf), axis=1)
    return np.where(np.isfinite(ext), ext, np.nan)


def _edge_refine(Is: np.ndarray, x: np.ndarray, level: np.ndarray, inward: int, K: int = 7,
                 out: int = 4) -> np.ndarray:
    """Sub-pixel lateral lung edge per row.

    Scanning inwards (``inward`` = +1 on the image left, -1 on the image right) from ``out`` pixels
    outside the mask edge ``x`` (n, H; -1 = no lung in that row): the edge is the crossing of ``level``
    from the last pixel above it (chest wall) to the first pixel below it (aerated lung).  Without a
    wall pixel above ``level`` in the window the mask edge is kept.
    """
    n, H, W = Is.shape
    ii = np.arange(n)[:, None, None]
    rr = np.arange(H)[None, :, None]
    offs = np.arange(-out, K)[None, None, :] * inward
    idx = np.clip(x[:, :, None] + offs, 0, W - 1)
    v = Is[ii, rr, idx]
    above = v >= level[:, None, None]
    seen = np.maximum.accumulate(above, axis=2)
    cand = seen & ~above
    ok = cand.any(2)
    j = np.maximum(np.where(ok, np.argmax(cand, axis=2), out), 1)
    va = np.take_along_axis(v, (j - 1)[:, :, None], 2)[:, :, 0]
    vb = np.take_along_axis(v, j[:, :, None], 2)[:, :, 0]
    f = np.where(ok, np.clip((va - level[:, None]) / np.maximum(va - vb, 1e-3), 0, 1), 1.0)
    pos = x + inward * ((j - 1 - out) + f - 0.5)
    return np.where(x >= 0, pos, np.nan)


def _components(cand: np.ndarray, Is: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Lung components of a candidate mask: the large ones, plus small dark pockets between them."""
    n = cand.shape[0]
    lab, nl = ndi.label(cand, _S2)
    if nl == 0:
        return np.zeros_like(cand)
    # labels are numbered in raster order, so each image owns a contiguous label range
    lab_max = np.maximum.accumulate(lab.reshape(n, -1).max(1))
    owner = np.minimum(np.searchsorted(lab_max, np.arange(nl + 1), side="left"), n - 1)
    on = lab[cand]
    area = np.bincount(on, minlength=nl + 1)
    mean_i = np.bincount(on, weights=Is[cand], minlength=nl + 1) / np.maximum(area, 1)
    amax = np.zeros(n)
    np.maximum.at(amax, owner[1:], area[1:])
    box = np.array([(o[1].start, o[1].stop, o[2].start, o[2].stop) if o is not None else (0, 0, 0, 0)
                    for o in ndi.find_objects(lab)]).reshape(-1, 4)
    box = np.vstack([[0, 0, 0, 0], box])
    mean_w = area / np.maximum(box[:, 1] - box[:, 0], 1)  # thin strips along the body wall are no lung
    major = (area >= 40) & (area >= 0.1 * amax[owner]) & (mean_w >= 6)
    major[0] = False
    big = np.nonzero(major)[0]
    r0 = np.full(n, 10**6)
    r1 = np.full(n, -1)
    c0 = np.full(n, 10**6)
    c1 = np.full(n, -1)
    np.minimum.at(r0, owner[big], box[big, 0])
    np.maximum.at(r1, owner[big], box[big, 1])
    np.minimum.at(c0, owner[big], box[big, 2])
    np.maximum.at(c1, owner[big], box[big, 3])
    rc = (box[:, 0] + box[:, 1]) / 2
    cc = (box[:, 2] + box[:, 3]) / 2
    o = owner
    between = (cc >= c0[o]) & (cc <= c1[o]) & (rc > r0[o] + 0.25 * (r1[o] - r0[o]))
    dark = mean_i < (lo + _F32(0.3) * (hi - lo))[o]
    keep = major | ((area >= 25) & dark & between)
    keep[0] = False
    return keep[lab]


# --------------------------------------------------------------------------- #
# the analysis of one batch of (n, 256, 256) uint8 images
# --------------------------------------------------------------------------- #
def _analyse(img: np.ndarray, debug: bool = False) -> dict[str, np.ndarray]:
    """Measurements (work-resolution pixels, 128 px = the image width) of a (n, 256, 256) uint8 batch."""
    S = READER_SETTINGS
    n = img.shape[0]
    W = _WORK
    a = img[:, 0::2, :].astype(np.uint16) + img[:, 1::2, :]
    I = (a[:, :, 0::2] + a[:, :, 1::2]).astype(_F32) * _F32(0.25)
    del a
    Is = ndi.uniform_filter(I, (1, 3, 3))
    cols = np.arange(W)
    rows = np.arange(W)
    # --- 1. intensity anchors ------------------------------------------------------------------- #
    c = Is[:, 20:100, 20:108].reshape(n, -1)
    kk = [c.shape[1] // 10, (9 * c.shape[1]) // 10]
    part = np.partition(c, kk, axis=1)
    lo, hi = part[:, kk[0]], part[:, kk[1]]
    flat = Is.reshape(n, -1)
    k2 = flat.shape[1] // 50
    bgl = np.partition(flat, k2, axis=1)[:, k2]
    span = np.maximum(hi - lo, 1.0)
    thrA = lo + _F32(S["lung_fraction"]) * span
    thrB = lo + _F32(S["hazy_lung_fraction"]) * span
    tbg = (bgl + lo) / 2
    # --- 2. lung masks ---------------------------------------------------------------------------- #
    near_bg = Is <= tbg[:, None, None]
    near_bg[:, :1, :] = near_bg[:, -1:, :] = near_bg[:, :, :1] = near_bg[:, :, -1:] = True
    near_bg = _dilate(near_bg, 3)
    candA = (Is < thrA[:, None, None]) & ~near_bg
    # thin vertical strips (the body's soft margin) are no lung: horizontal opening
    op = ndi.minimum_filter1d(candA.view(np.uint8), 4, axis=2, origin=-1)
    candA = ndi.maximum_filter1d(op, 4, axis=2, origin=0).view(bool) & candA
    lungA = _components(candA, Is, lo, hi)
    # provisional midline: the column with least lung between the lungs
    colhist = ndi.uniform_filter1d(lungA.sum(1).astype(_F32), 5, axis=1)
    band = slice(int(W * 0.35), int(W * 0.65))
    c0 = np.argmin(colhist[:, band], axis=1) + band.start
    is_l = cols[None, None, :] < c0[:, None, None]  # image left = the patient's right
    xlA = _first_true(lungA & is_l, 2)
    xrA = _last_true(lungA & ~is_l, 2)
    xl_s = _edge_refine(Is, xlA, thrA, +1)
    xr_s = _edge_refine(Is, xrA, thrA, -1)
    both = (xlA >= 0) & (xrA >= 0)
    # --- 3. midline (robust line through the mid-points of the lateral edges), thorax ---------- #
    top = np.where(both.any(1), _first_true(both, 1), 0)
    bot = np.where(both.any(1), _last_true(both, 1), W - 1)
    hgt = np.maximum(bot - top, 1)
    mid = np.where(both, (xl_s + xr_s) / 2, np.nan)
    rr = rows[None, :].astype(float)
    selA = (rr >= (top + 0.2 * hgt)[:, None]) & (rr < (top + 0.5 * hgt)[:, None])
    selB = (rr >= (top + 0.5 * hgt)[:, None]) & (rr < (top + 0.8 * hgt)[:, None])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mA = np.nanmedian(np.where(selA, mid, np.nan), 1)
        mB = np.nanmedian(np.where(selB, mid, np.nan), 1)
    mA = np.where(np.isfinite(mA), mA, c0)
    mB = np.where(np.isfinite(mB), mB, mA)
    yA, yB = top + 0.35 * hgt, top + 0.65 * hgt
    slope = np.clip((mB - mA) / (yB - yA), -0.2, 0.2)
    mbar, ybar = (mA + mB) / 2, (yA + yB) / 2
    mline = mbar[:, None] + slope[:, None] * (rows[None, :] - ybar[:, None])  # (n, H)
    half_r = _kth_largest(mline - xl_s, 3)  # patient's right = image left
    half_l = _kth_largest(xr_s - mline, 3)
    thorax = half_r + half_l - 2 * S["thorax_edge_offset_px"]
    # --- haze-tolerant mask for the heart borders: grown from the clear lung, laterally bounded - #
    LL = _ffill_rows(np.where(xlA >= 0, xlA, 0).astype(float), xlA >= 0)
    RR = _ffill_rows(np.where(xrA >= 0, xrA, 0).astype(float), xrA >= 0)
    inside = (cols[None, None, :] >= np.nan_to_num(LL, nan=W)[:, :, None] + 2) & \
             (cols[None, None, :] <= np.nan_to_num(RR, nan=-1)[:, :, None] - 2)
    anyA = lungA.any(2)
    topA = _first_true(anyA, 1)
    botA = _last_true(anyA, 1)
    inside &= (rows[None, :] <= (botA + 0.3 * (botA - topA))[:, None])[:, :, None]
    candB = (Is < thrB[:, None, None]) & ~near_bg & inside
    labB, nlB = ndi.label(candB, _S2)
    hit = np.zeros(nlB + 1, bool)
    hit[labB[lungA]] = True
    hit[0] = False
    lungB = hit[labB] | lungA
    mc = np.clip(np.round(mline).astype(int), 1, W - 2)
    is_lm = cols[None, None, :] < mc[:, :, None]
    leftB = lungB & is_lm  # image left: the patient's right lung
    rightB = lungB & ~is_lm & (cols[None, None, :] > mc[:, :, None])
    ml = _last_true(leftB, 2)
    mr = _first_true(rightB, 2)
    rowl, rowr = leftB.any(2), rightB.any(2)
    top_r, top_l = _first_true(rowl, 1), _first_true(rowr, 1)
    bot_r, bot_l = _last_true(rowl, 1), _last_true(rowr, 1)
    pr = np.where(ml >= 0, mline - ml - 0.5, np.nan)
    pl = np.where(mr >= 0, mr - mline - 0.5, np.nan)
    # --- 4. domes and heart ---------------------------------------------------------------------- #
    dist = mbar[:, None] - cols[None, :]  # > 0 on the image left
    colbot_r = _last_true(leftB, 1)
    colbot_l = _last_true(rightB, 1)
    big = 10**6
    with np.errstate(invalid="ignore"):
        sel_r = (dist >= 0.55 * half_r[:, None]) & (dist <= 0.95 * half_r[:, None]) & (colbot_r >= 0)
        sel_l = (-dist >= 0.55 * half_l[:, None]) & (-dist <= 0.95 * half_l[:, None]) & (colbot_l >= 0)
    dome_r = np.min(np.where(sel_r, colbot_r, big), 1).astype(float)
    dome_l = np.min(np.where(sel_l, colbot_l, big), 1).astype(float)
    dome_r[dome_r >= big] = np.nan
    dome_l[dome_l >= big] = np.nan
    delta = 0.054 * np.fmax(half_r, half_l)  # the left dome lies ~0.04 thorax units below the right
    dome_l = np.fmax(dome_l, dome_r + delta)
    dome_r = np.fmax(dome_r, dome_l - delta)
    # the border itself: from the midline outwards, the first pixel below the heart level (a
    # consolidation next to the heart is darker than the heart, so it does not widen it)
    dark_h = Is < (lo + _F32(S["heart_level"]) * span)[:, None, None]
    # (searched from 5 px off the midline: the trachea is darker than the heart level too)
    mlh = _last_true(dark_h & (cols[None, None, :] < mc[:, :, None] - 5), 2)
    mrh = _first_true(dark_h & (cols[None, None, :] > mc[:, :, None] + 5), 2)
    vr = np.where(mlh >= 0, np.minimum(mline - mlh - 0.5, pr), np.nan)
    vl = np.where(mrh >= 0, np.minimum(mrh - mline - 0.5, pl), np.nan)
    ea_r, ang_r = _heart_extent(pr, top_r, bot_r, vr)
    ea_l, ang_l = _heart_extent(pl, top_l, bot_l, vl)
    ed_r = _heart_above(pr, top_r, dome_r, vr)
    ed_l = _heart_above(pl, top_l, dome_l, vl)
    with np.errstate(invalid="ignore"):
        heart_r = np.where(ang_r >= dome_r - 8, ea_r, ed_r)
        heart_l = np.where(ang_l >= dome_l - 8, ea_l, ed_l)
    heart_r = heart_r + S["heart_edge_offset_px"]
    heart_l = heart_l + S["heart_edge_offset_px"]
    heart = heart_r + heart_l
    # --- 5. lung fields, zones, opacity ---------------------------------------------------------- #
    Iop = ndi.uniform_filter(Is, (1, 3, 3))
    nA = lungA.sum((1, 2))
    ref = np.where(lungA, Is, 0).sum((1, 2)) / np.maximum(nA, 1)  # mean aerated-lung level
    U = (Iop - ref[:, None, None]) / np.maximum(hi - ref, 1.0)[:, None, None]
    opaque = U > S["opacity_level"]
    out: dict[str, np.ndarray] = {}
    rowsf = rows[None, :].astype(float)
    hilar = []
    # both apices lie at the same level: the higher one also bounds the other lung (an apical
    # consolidation must not shorten its lung)
    apex_c = np.where((top_r >= 0) & (top_l >= 0), np.minimum(top_r, top_l), np.maximum(top_r, top_l))
    for side, xlat, med, medh, dome_s, bot_s, half_s, inward in (
            ("right", xl_s, ml, mlh, dome_r, bot_r, half_r, +1),
            ("left", xr_s, mr, mrh, dome_l, bot_l, half_l, -1)):
        has_lat = np.isfinite(xlat)
        lat = _ffill_rows(np.nan_to_num(xlat), has_lat)
        lat = np.where(np.isfinite(lat), lat, _bfill_rows(np.nan_to_num(xlat), has_lat))
        has_med = med >= 0
        m1 = _ffill_rows(med.astype(float), has_med)
        m2 = _bfill_rows(med.astype(float), has_med)
        with np.errstate(invalid="ignore"):
            medf = np.where(has_med, med, np.where(np.isfinite(m1) & np.isfinite(m2), (m1 + m2) / 2,
                                                   np.fmax(m1, m2) if inward > 0 else np.fmin(m1, m2)))
        # the field reaches the heart / mediastinal border itself (through a juxtacardiac opacity)
        medf = np.where(medh >= 0, medh, medf)
        base = np.where(np.isfinite(dome_s), dome_s, bot_s).astype(float)
        apex = apex_c.astype(float)
        ok = (apex_c >= 0) & np.isfinite(base) & (base > apex + 6)
        h = np.where(ok, base - apex, np.nan)
        lo_c = np.where(inward > 0, lat, medf)
        hi_c = np.where(inward > 0, medf, lat)
        midc = (lat + medf) / 2
        with np.errstate(invalid="ignore"):
            incol = (cols[None, None, :] >= lo_c[:, :, None]) & (cols[None, None, :] <= hi_c[:, :, None])
            inner = (cols[None, None, :] - midc[:, :, None]) * inward >= 0
            zfrac = (rowsf - apex[:, None]) / h[:, None]  # 0 at the apex, 1 at the dome
            inrows = (zfrac >= 0) & (zfrac <= 1)
        # the field's interior: 2 px away from its borders (blurred heart, wall and dome edges)
        field = _erode(np.ascontiguousarray(incol & inrows[:, :, None]), 2)
        fr = field.sum(2).astype(float)
        opr = (field & opaque).sum(2).astype(float)
        innr = field & inner
        fin = innr.sum(2).astype(float)
        uin = np.where(innr, U, 0).sum(2)
        with np.errstate(invalid="ignore"):
            for zi, zname in enumerate(ZONES):
                zr = (zfrac >= zi / 3) & ((zfrac < (zi + 1) / 3) | ((zi == 2) & (zfrac <= 1)))
                tot = np.where(zr, fr, 0).sum(1)
                out[f"opacity_{side}_{zname}"] = np.where(
                    tot > 10, np.where(zr, opr, 0).sum(1) / np.maximum(tot, 1), np.nan)
            zr = zfrac >= 1 / 3
            tot = np.where(zr & inrows, fin, 0).sum(1)
            hilar.append(np.where(tot > 10, np.where(zr & inrows, uin, 0).sum(1) / np.maximum(tot, 1), np.nan))
            out[f"dome_height_{side}"] = h / half_s
            out[f"lung_height_{side}"] = np.where((apex_c >= 0) & (bot_s >= 0), (bot_s - apex_c) / half_s, np.nan)
    # --- 6. edema, vascular sharpness, noise ------------------------------------------------------ #
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out["perihilar_haze"] = np.nanmean(np.vstack(hilar), 0) if n else np.zeros(0)
    out["edema_score"] = (ref - bgl) / np.maximum(hi - bgl, 1.0)
    hp = np.abs(I - Is)
    inner_lung = _erode(lungA, 1)
    nl_ = inner_lung.sum((1, 2))
    lung_hp = np.where(inner_lung, hp, 0).sum((1, 2)) / np.maximum(nl_, 1)
    lowest = np.fmax(bot_r, bot_l)
    mcol = mline[:, -1][:, None, None]
    dcol = np.abs(cols[None, None, :] - mcol)
    ab = (rows[None, :, None] > (lowest + 6)[:, None, None]) & (rows[None, :, None] < W - 6) & \
         (dcol > 12) & (dcol < (0.7 * np.fmin(half_r, half_l))[:, None, None])
    nab = ab.sum((1, 2))
    noise_hp = np.where(nab > 50, np.where(ab, hp, 0).sum((1, 2)) / np.maximum(nab, 1), np.nan)
    out["vascular_sharpness"] = lung_hp / np.maximum(noise_hp, 0.1)
    out["noise"] = noise_hp * S["noise_factor"]
    # --- geometry, quality ------------------------------------------------------------------------ #
    out.update(heart=heart, heart_r=heart_r, heart_l=heart_l, thorax=thorax,
               contrast=(hi - lo) / 255.0, exposure=ref / 255.0,
               rotation_deg=-np.degrees(np.arctan(slope)),
               lung_area_fraction=lungB.sum((1, 2)) / float(W * W),
               lungs_found=(lungB.sum((1, 2)) >= S["min_lung_fraction"] * W * W) & np.isfinite(thorax))
    if debug:
        out.update(I=I, Is=Is, U=U, lungA=lungA, lungB=lungB, mline=mline, ml=ml, mr=mr, xl=xl_s, xr=xr_s,
                   dome_r=dome_r, dome_l=dome_l, ang_r=ang_r, ang_l=ang_l, top_r=top_r, top_l=top_l,
                   bot_r=bot_r, bot_l=bot_l)
    return out


# --------------------------------------------------------------------------- #
# decoding
# --------------------------------------------------------------------------- #
def _to_uint8_square(a: np.ndarray, size: int) -> np.ndarray:
    """A 2-D image as (size, size) uint8 (grey levels rescaled if not uint8, resized if needed)."""
    from PIL import Image

    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] in (3, 4):  # colour: luminance
        a = a[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {a.shape}")
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        if not np.all(np.isfinite(a)):
            raise ValueError("non-finite pixel values")
        lo_, hi_ = float(a.min()), float(a.max())
        a = np.zeros(a.shape, np.uint8) if hi_ <= lo_ else np.rint((a - lo_) / (hi_ - lo_) * 255).astype(np.uint8)
    if a.shape != (size, size):
        a = np.asarray(Image.fromarray(a).resize((size, size), Image.BILINEAR))
    return a


def _load_one(item, size: int) -> tuple[np.ndarray | None, int, str]:
    """(image, original width, reason) -- image None when it cannot be read."""
    try:
        if isinstance(item, (str, Path)):
            from PIL import Image

            with Image.open(item) as im:
                im.load()
                # 16-bit / float grey images are rescaled, not clipped (as convert("L") would)
                arr = np.asarray(im) if im.mode in ("I", "I;16", "I;16B", "I;16L", "F") else np.asarray(im.convert("L"))
        else:
            arr = np.asarray(item)
            if arr.ndim == 3 and arr.shape[2] not in (3, 4):
                raise ValueError(f"expected a 2-D grey image, got shape {arr.shape}")
        width = int(arr.shape[1])
        return _to_uint8_square(arr, size), width, ""
    except Exception as exc:  # an unreadable file is a missing value, never an exception
        return None, 0, f"cannot decode: {type(exc).__name__}"


def _iter_batches(images, size: int):
    """Yield (start index, uint8 batch (k, size, size), widths, reasons) in chunks of _CHUNK."""
    if isinstance(images, np.ndarray) and images.ndim == 3 and images.dtype == np.uint8 \
            and images.shape[1:] == (size, size):
        for st in range(0, images.shape[0], _CHUNK):
            b = np.ascontiguousarray(images[st:st + _CHUNK])
            yield st, b, np.full(b.shape[0], size), [""] * b.shape[0]
        return
    seq = list(images) if not isinstance(images, np.ndarray) else [images[i] for i in range(images.shape[0])]
    for st in range(0, len(seq), _CHUNK):
        part = [_load_one(x, size) for x in seq[st:st + _CHUNK]]
        batch = np.zeros((len(part), size, size), np.uint8)
        widths = np.zeros(len(part), int)
        reasons = []
        for i, (arr, w, why) in enumerate(part):
            if arr is not None:
                batch[i] = arr
                widths[i] = w
            reasons.append(why)
        yield st, batch, widths, reasons


def _view_kind(v) -> str | None:
    """'AP' / 'PA' (also AP AXIAL, PA LLD, ...), 'LATERAL' (LATERAL, LL, RL, LAO, RAO, SWIMMERS, ...) or None."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    u = str(v).strip().upper()
    if u.startswith("AP"):
        return "AP"
    if u.startswith("PA"):
        return "PA"
    if "LAT" in u or u in ("LL", "RL", "LAO", "RAO", "LPO", "RPO", "SWIMMERS"):
        return "LATERAL"
    return None


# --------------------------------------------------------------------------- #
# public API
# --------------------------------------------------------------------------- #
def measure_cxr(images, view: list[str] | None = None, progress: bool = False) -> pd.DataFrame:
    """Measure frontal chest radiographs (see the module docstring for the method).

    Parameters
    ----------
    images
        ``uint8`` array ``(n, H, W)`` or a list of image file paths (JPG/PNG; arrays allowed too).  Any
        size is resized to 256 x 256 for the analysis; pixel measurements are reported in the image's
        own width.
    view
        Optional view position per image (the DICOM ViewPosition: ``"AP"``, ``"PA"``, ...; None when
        unknown).  AP / PA change the CTR decision threshold and ``ctr_pa_equiv``, not the measurements;
        a lateral view (LATERAL, LL, ...) is not read (``readable`` False).  The ``view`` column holds
        ``"AP"``, ``"PA"``, ``"LATERAL"`` or None.
    progress
        Show a tqdm progress bar over batches of 256 images.

    Returns
    -------
    One row per image, columns ``readable`` (False when the file cannot be opened or decoded, is blank,
    or shows no lung field: the caller counts those as missing), ``unreadable_reason``, ``view``,
    ``ctr``, ``ctr_pa_equiv``, ``heart_width_px``, ``thorax_width_px``, ``heart_right_px``,
    ``heart_left_px``, ``heart_obscured``, ``opacity_{right,left}_{upper,middle,lower}``,
    ``opacity_max``, ``edema_score``, ``perihilar_haze``, ``vascular_sharpness``,
    ``lung_height_{right,left}``, ``cp_blunting_{right,left}`` and the image-quality measures
    ``contrast``, ``noise``, ``rotation_deg``, ``exposure``, ``lung_area_fraction``.  Deterministic.
    """
    S = READER_SETTINGS
    size = int(S["size"])
    if isinstance(images, np.ndarray) and images.ndim != 3:
        raise ValueError(f"images: expected an (n, H, W) array or a list of paths / arrays, got shape {images.shape}")
    images, n, view = _checked_views(images, view)
    if view is not None:
        view = [_view_kind(v) for v in view]
    rows: list[dict] = []
    batches = _iter_batches(images, size)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, total=math.ceil(n / _CHUNK), desc="measure_cxr", unit="batch")
    for st, batch, widths, reasons in batches:
        k = batch.shape[0]
        p1, p99 = np.percentile(batch.reshape(k, -1)[:, ::7], [1, 99], axis=1)
        blank = (p99 - p1) < S["min_contrast"]
        vws = view[st:st + k] if view is not None else [None] * k
        lateral = np.array([v == "LATERAL" for v in vws], bool)
        ok = np.array([r == "" for r in reasons], bool) & ~blank & ~lateral
        res = _analyse(batch[ok]) if ok.any() else None
        j = 0
        for i in range(k):
            vw = vws[i]
            if lateral[i]:
                rows.append({"readable": False, "view": vw, "unreadable_reason": "not a frontal view"})
                continue
            if not ok[i]:
                rows.append({"readable": False, "view": vw,
                             "unreadable_reason": reasons[i] or "blank image (no contrast)"})
                continue
            r = {key: val[j] for key, val in res.items()}
            j += 1
            if not bool(r["lungs_found"]):
                rows.append({"readable": False, "view": vw, "unreadable_reason": "lung fields not identified"})
                continue
            px = widths[i] / _WORK  # work pixels -> the image's own pixels
            ctr = r["heart"] / r["thorax"] if r["thorax"] > 0 else np.nan
            mag = S["ap_heart_magnification"] if vw == "AP" else 1.0
            hts = {s: r[f"lung_height_{s}"] for s in SIDES}
            obscured = bool(np.nanmin([r["dome_height_right"], r["dome_height_left"], np.inf])
                            < S["heart_obscured_height"]) or not np.isfinite(ctr)
            row = {
                "readable": True, "unreadable_reason": "", "view": vw,
                "ctr": ctr, "ctr_pa_equiv": ctr / mag,
                "heart_width_px": r["heart"] * px, "thorax_width_px": r["thorax"] * px,
                "heart_right_px": r["heart_r"] * px, "heart_left_px": r["heart_l"] * px,
                "heart_obscured": obscured,
            }
            for s in SIDES:
                for z in ZONES:
                    row[f"opacity_{s}_{z}"] = r[f"opacity_{s}_{z}"]
            row["opacity_max"] = np.nanmax([row[f"opacity_{s}_{z}"] for s in SIDES for z in ZONES] + [0.0])
            row.update(edema_score=r["edema_score"], perihilar_haze=r["perihilar_haze"],
                       vascular_sharpness=r["vascular_sharpness"])
            for s in SIDES:
                row[f"lung_height_{s}"] = hts[s]
            for s in SIDES:
                norm = S["normal_lung_height"][s]
                row[f"cp_blunting_{s}"] = float(np.clip(1 - hts[s] / norm, 0, 1)) if np.isfinite(hts[s]) else 1.0
            row.update(contrast=r["contrast"], noise=r["noise"], rotation_deg=r["rotation_deg"],
                       exposure=r["exposure"], lung_area_fraction=r["lung_area_fraction"])
            rows.append(row)
    df = pd.DataFrame(rows, columns=_MEASURE_COLUMNS)
    df["readable"] = df["readable"].astype(bool)
    df["heart_obscured"] = df["heart_obscured"].astype("boolean")
    num = [c for c in _MEASURE_COLUMNS if c not in ("readable", "unreadable_reason", "view", "heart_obscured")]
    df[num] = df[num].astype(float)
    return df


def _thresholds(thresholds: dict | None) -> dict:
    return merge_thresholds(DEFAULT_THRESHOLDS, thresholds)


def _consolidated_zones(m: pd.Series, th: dict) -> list[tuple[str, str, float]]:
    """(side, zone, opaque fraction) of the zones read as airspace opacity.

    With pulmonary edema (diffuse perihilar / basal haze) a zone needs a denser opacity, or one clearly
    asymmetric against the same zone of the other lung.
    """
    edema = m["edema_score"] > th["edema"]
    out = []
    for s in SIDES:
        o = "left" if s == "right" else "right"
        for z in ZONES:
            v = m[f"opacity_{s}_{z}"]
            if not np.isfinite(v) or v <= th["consolidation"]:
                continue
            if edema:
                c = m[f"opacity_{o}_{z}"]
                c = c if np.isfinite(c) else 0.0
                if not (v > th["consolidation_edema"] or v - c > th["consolidation_asymmetry"]):
                    continue
            out.append((s, z, float(v)))
    return out


def cxr_findings(measurements: pd.DataFrame, thresholds: dict | None = None) -> pd.DataFrame:
    """Boolean findings (:data:`FINDINGS` columns) per image from :func:`measure_cxr` output.

    Unreadable images get all-False rows (count them as missing).  :func:`cxr_report`'s IMPRESSION
    states exactly these findings, so ``findings_from_report(cxr_report(m)[i])`` equals row ``i``.
    Where the heart borders are obscured the measured CTR is a lower bound: the heart is called enlarged
    when even that exceeds the threshold, and is otherwise left unassessed (not enlarged).
    """
    th = _thresholds(thresholds)
    m = measurements
    ok = m["readable"].astype(bool).to_numpy()
    view = m["view"].astype(object).to_numpy()
    ctr_thr = np.where(view == "AP", th["ctr_ap"], th["ctr_pa"])
    ctr = m["ctr"].to_numpy(float)
    with np.errstate(invalid="ignore"):
        out = pd.DataFrame({
            # an obscured heart's visible width is a lower bound: above the threshold it is still enlarged
            "cardiomegaly": ctr > ctr_thr,
            "consolidation": [bool(_consolidated_zones(r, th)) if k else False
                              for k, r in zip(ok, _records(m))],
            "edema": m["edema_score"].to_numpy(float) > th["edema"],
            "pleural_effusion": (m[[f"cp_blunting_{s}" for s in SIDES]].to_numpy(float) > th["effusion"]).any(1),
        }, index=m.index)
    out.loc[~ok, :] = False
    return out.astype(bool)


def _records(frame: pd.DataFrame) -> list:
    """The rows of ``frame`` as dicts (read by key like the row Series they replace; one conversion per frame)."""
    return frame.to_dict("records") if frame.columns.is_unique else [r for _, r in frame.iterrows()]


def _effusion_size(b: float, th: dict) -> str:
    return "large" if b > th["effusion_large"] else "moderate" if b > th["effusion_moderate"] else "small"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def cxr_report(measurements: pd.DataFrame, thresholds: dict | None = None) -> list[str | None]:
    """Templated report per image: ``"FINDINGS: ... IMPRESSION: ..."`` (``None`` where unreadable).

    FINDINGS: view; image quality when limited; heart size with the cardiothoracic ratio (or that it
    cannot be assessed); airspace opacity by side and zone with its extent; diffuse haze (edema) with
    the measured descriptors; costophrenic angles.  IMPRESSION: the findings of :func:`cxr_findings`
    (consolidation with its zones, effusions with side and size), or that none is present.  Only
    measured things are stated.  Deterministic.
    """
    th = _thresholds(thresholds)
    f = cxr_findings(measurements, thresholds)
    out: list[str | None] = []
    for m, fi in zip(_records(measurements), _records(f)):
        if not bool(m["readable"]):
            out.append(None)
            continue
        vw = m["view"]
        s = [f"{vw} view." if vw in ("AP", "PA") else "Frontal view."]
        limits = []
        if np.isfinite(m["noise"]) and m["noise"] > 10:
            limits.append("noise")
        if m["contrast"] < 0.3:
            limits.append("low contrast")
        if abs(m["rotation_deg"]) > 5:
            limits.append("rotation")
        if limits:
            s.append(f"Image quality is limited ({_join(limits)}).")
        # heart
        obscured = True if pd.isna(m["heart_obscured"]) else bool(m["heart_obscured"])
        ctr = m["ctr"]
        if obscured and fi["cardiomegaly"]:
            s.append(f"The cardiac borders are partly obscured by basal opacity; the visible cardiac silhouette "
                     f"alone is enlarged (cardiothoracic ratio at least {ctr:.2f}).")
        elif obscured:
            s.append("The cardiac borders are obscured by basal opacity; heart size cannot be assessed.")
        elif fi["cardiomegaly"]:
            extra = " on this AP projection" if vw == "AP" else ""
            s.append(f"The heart is enlarged (cardiothoracic ratio {ctr:.2f}{extra}).")
        else:
            s.append(f"Heart size is within normal limits (cardiothoracic ratio {ctr:.2f}).")
        # lungs
        zones = _consolidated_zones(m, th)
        by_side: dict[str, list[tuple[str, float]]] = {}
        for side, zone, v in zones:
            by_side.setdefault(side, []).append((zone, v))
        for side in SIDES:
            if side in by_side:
                zs = by_side[side]
                pct = _join([f"{int(round(v * 100))}%" for _, v in zs])
                if len(zs) == 1:
                    s.append(f"Patchy airspace opacity in the {side} {zs[0][0]} zone (about {pct} of the zone).")
                else:
                    s.append(f"Patchy airspace opacity in the {side} {_join([z for z, _ in zs])} zones "
                             f"(about {pct} of the respective zones).")
        if fi["edema"]:
            desc = []
            if np.isfinite(m["perihilar_haze"]) and m["perihilar_haze"] > th["perihilar_haze"]:
                desc.append("with perihilar predominance")
            if np.isfinite(m["vascular_sharpness"]) and m["vascular_sharpness"] < th["vascular_blur"]:
                desc.append("and indistinct vascular markings" if desc else "with indistinct vascular markings")
            s.append(" ".join(["Diffuse hazy opacity of the lung fields"] + desc)
                     + f" (lung haze index {m['edema_score']:.2f}).")
        if not zones and not fi["edema"]:
            s.append("The lungs are clear.")
        # pleura
        eff = [(side, float(m[f"cp_blunting_{side}"])) for side in SIDES
               if m[f"cp_blunting_{side}"] > th["effusion"]]
        for side, b in eff:
            s.append(f"Blunting of the {side} costophrenic angle with a raised {side} lung base "
                     f"({int(round(b * 100))}% of the expected lung height lost).")
        if not eff:
            s.append("The costophrenic angles are sharp.")
        # impression
        imp = []
        if fi["cardiomegaly"]:
            imp.append("Cardiomegaly.")
        elif obscured:
            imp.append("Heart size cannot be assessed.")
        if zones:
            parts = [(side, [z for z, _ in by_side[side]]) for side in SIDES if side in by_side]
            if len(parts) == 1 and len(parts[0][1]) == 1:
                imp.append(f"{parts[0][0].capitalize()} {parts[0][1][0]} zone consolidation.")
            else:
                txt = [f"the {side} {_join(zs)} zone{'s' if len(zs) > 1 else ''}" for side, zs in parts]
                imp.append(f"Consolidation in {_join(txt)}.")
        if fi["edema"]:
            imp.append("Pulmonary edema.")
        if len(eff) == 2:
            (_, b1), (_, b2) = eff
            z1, z2 = _effusion_size(b1, th), _effusion_size(b2, th)
            imp.append(f"Bilateral pleural effusions ({z1} right, {z2} left)." if z1 != z2
                       else f"Bilateral {z1} pleural effusions.")
        elif eff:
            side, b = eff[0]
            imp.append(f"{_effusion_size(b, th).capitalize()} {side} pleural effusion.")
        if not (fi["cardiomegaly"] or zones or fi["edema"] or eff):
            imp.append("No consolidation, pulmonary edema or pleural effusion." if obscured
                       else "No cardiomegaly, consolidation, pulmonary edema or pleural effusion.")
        out.append("FINDINGS: " + " ".join(s) + " IMPRESSION: " + " ".join(imp))
    return out



def _checked_views(images, view):
    """``(images, n, view)``: the images as an array or a list, their number, and ``view`` as a list of one entry
    per image (or None); ValueError when the counts differ. Used by :func:`measure_cxr` and :func:`read_cxr`."""
    if not isinstance(images, np.ndarray):
        images = list(images)
    n = len(images)
    if view is not None:
        view = list(view)
        if len(view) != n:
            raise ValueError(f"view: expected {n} entries (one per image), got {len(view)}")
    return images, n, view

def read_cxr(images, view: list[str] | None = None, progress: bool = False,
             n_jobs: int | None = 1) -> tuple[list[str | None], pd.DataFrame]:
    """Measure and report: ``(reports, measurements)`` (reports ``None`` where unreadable).

    ``n_jobs``: worker processes (joblib; ``None`` or ``-1``: one per CPU core). Each worker reads whole batches of
    256 images -- the batches a single process reads -- so the result is the same whatever ``n_jobs``.
    """
    images, n, view = _checked_views(images, view)
    jobs = 1 if isinstance(images, np.ndarray) and images.ndim != 3 else worker_count(n_jobs, n, _CHUNK)
    if jobs <= 1:
        m = measure_cxr(images, view=view, progress=progress)
        return cxr_report(m), m
    from joblib import Parallel, delayed

    starts = range(0, n, _CHUNK)
    tasks = (delayed(read_cxr)(images[a:a + _CHUNK], None if view is None else view[a:a + _CHUNK])
             for a in starts)
    parts = Parallel(n_jobs=jobs, return_as="generator")(tasks)
    if progress:
        from tqdm import tqdm

        parts = tqdm(parts, total=len(starts), desc="read_cxr", unit="batch")
    reports: list[str | None] = []
    frames = []
    for r, m in parts:
        reports += r
        frames.append(m)
    return reports, pd.concat(frames, ignore_index=True)



# --------------------------------------------------------------------------- #
# parsing a report back into findings
# --------------------------------------------------------------------------- #
_NEG = re.compile(r"\b(no|not|without|absent|negative for|free of|rule[sd]? out|cannot be assessed)\b[^.;:]*$")
_PATTERNS = {
    "cardiomegaly": [r"cardiomegaly", r"enlarged (cardiac|heart)", r"heart (size )?is enlarged",
                     r"cardiac (silhouette|size) is enlarged", r"enlargement of the cardiac"],
    "consolidation": [r"consolidation", r"airspace (opacity|opacities|disease)", r"pneumonia"],
    "edema": [r"edema", r"oedema", r"pulmonary (vascular )?congestion"],
    "pleural_effusion": [r"pleural effusion", r"\beffusions?\b", r"blunting of the .*costophrenic",
                         r"costophrenic (angle )?blunting"],
}


def findings_from_report(text: str | None) -> dict[str, bool]:
    """Parse a chest X-ray report (this reader's template, or free text such as a VLM's) into findings.

    Reads the IMPRESSION section when there is one (else the whole text) and returns ``{finding: bool}``
    for :data:`FINDINGS`.  A mention is ignored when a negation (no, not, without, ...) precedes it in
    the same clause, so "No cardiomegaly, consolidation, pulmonary edema or pleural effusion." gives all
    False.  ``None`` or an empty text gives all False (count an unreadable image as missing, not as
    negative).
    """
    if not isinstance(text, str):
        return _findings(text)
    return dict(_findings_cached(text))


def _findings(text) -> dict[str, bool]:
    found = findings_in_text(text, _PATTERNS, _NEG, clause_split=r"[.;\n]", section="impression:")
    return {k: found.get(k, False) for k in FINDINGS}


@functools.lru_cache(maxsize=65536)
def _findings_cached(text: str) -> dict[str, bool]:
    """:func:`_findings` of a text, remembered: templated reports repeat (a copy is handed out)."""
    return _findings(text)
