"""Vectorised synthetic frontal chest X-ray phantoms.

The synthetic MIMIC-Eye cohort needs thousands of frontal chest radiographs
whose pixels follow each patient's latent findings, so that a classical
image-analysis reader can later measure the cardiothoracic ratio, opacity area
by lung zone, costophrenic-angle blunting and image quality from the pixels
alone.  :func:`render_cxr` draws such stylised radiographs: a body outline,
two aerated lungs with branching vascular markings, the mediastinum with the
trachea and aortic knob, a left-heavy heart shadow whose transverse width is
exactly ``ctr`` times the inner thoracic width (times the AP magnification),
diaphragm domes with costophrenic angles, a gastric bubble, posterior and
anterior ribs, clavicles, the spine, and the findings (consolidation, edema,
pleural effusions) on top.

Geometry is written in a normalised *anatomical* frame: ``X`` runs from -1
(image left, which is the patient's right, radiological convention) to +1
(image right, the patient's left), ``Y`` from -1 (top) to +1 (bottom); the
acquisition (in-plane rotation, scale, shift) maps that frame to the image.
Everything is evaluated with numpy broadcasting on a batch of images at once,
at half the output resolution (then bilinearly upsampled; detector noise is
added at full resolution), in float32; about 1 ms per 256 x 256 image on one
CPU core.  All randomness comes from the ``rng``
passed in and is drawn up front for the whole cohort, so the output depends
only on the rng state and the inputs, not on ``chunk``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FINDINGS", "ACQUISITION_KEYS", "render_cxr"]

FINDINGS = (
    "ctr",
    "consolidation",
    "consolidation_side",
    "consolidation_zone",
    "edema",
    "effusion_left",
    "effusion_right",
)

#: Keys of the ``acquisition`` dict returned by :func:`render_cxr`.
ACQUISITION_KEYS = (
    "rotation_deg",
    "shift_x",
    "shift_y",
    "scale",
    "contrast",
    "brightness",
    "noise_sd",
    "blur",
    "inspiration",
    "heart_magnification",
    "heart_width_px",
    "thorax_width_px",
    "consolidation_area_px",
)

_F32 = np.float32

# Reference lung geometry of the vascular-marking textures (anatomical units).
_TEX_WT, _TEX_YA, _TEX_YD = 0.75, -0.74, 0.32
_TEX_EXTENT = 1.25  # textures cover [-extent, extent]^2 of the reference frame
_N_TEX = 6  # vessel textures per call
_N_NOISE = 4  # detector-noise fields per call
_MICRO_PIXELS = 2**17  # pixels per internal work array (cache-sized)
_GRID = 14  # side of the coarse grids that smooth random fields are made from


# --------------------------------------------------------------------------- #
# input validation
# --------------------------------------------------------------------------- #
def _as_1d(name: str, value, n: int | None, dtype) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ValueError(f"findings[{name!r}] must be array-like: {exc}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name!r} must be a 1-D array, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(
            f"{name!r} has length {arr.shape[0]}, expected {n} (the length of 'ap')"
        )
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name!r} must be numeric or boolean, got dtype {arr.dtype}")
    arr = arr.astype(dtype)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name!r} contains non-finite values")
    return arr


def _validate(findings, ap, size, chunk):
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 32:
        raise ValueError(f"'size' must be an integer >= 32, got {size!r}")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"'chunk' must be a positive integer, got {chunk!r}")
    if not hasattr(findings, "keys") or not hasattr(findings, "__getitem__"):
        raise ValueError("'findings' must be a dict mapping each of FINDINGS to an array")
    apb = _as_1d("ap", ap, None, bool)
    n = apb.shape[0]
    out = {}
    for key in FINDINGS:
        if key not in findings:
            raise ValueError(
                f"findings is missing key {key!r}; expected all of {FINDINGS} "
                f"(1-D arrays of length {n}, the length of 'ap')"
            )
    for key in ("ctr", "consolidation", "edema", "effusion_left", "effusion_right"):
        out[key] = _as_1d(key, findings[key], n, np.float64)
    ctr = out["ctr"]
    if n and np.any((ctr < 0.2) | (ctr > 0.9)):
        raise ValueError(f"'ctr' must lie in [0.2, 0.9], got range [{ctr.min()}, {ctr.max()}]")
    for key in ("consolidation", "edema", "effusion_left", "effusion_right"):
        v = out[key]
        if np.any((v < -1e-6) | (v > 1 + 1e-6)):
            raise ValueError(
                f"{key!r} is a severity and must lie in [0, 1], got range [{v.min()}, {v.max()}]"
            )
        out[key] = np.clip(v, 0.0, 1.0)
    has = out["consolidation"] > 0
    for key in ("consolidation_side", "consolidation_zone"):
        raw = np.asarray(findings[key])
        if raw.ndim != 1 or raw.shape[0] != n:
            raise ValueError(
                f"{key!r} has shape {raw.shape}, expected a 1-D array of length {n} "
                "(the length of 'ap')"
            )
        if raw.dtype.kind not in "biuf":
            raise ValueError(f"{key!r} must be numeric, got dtype {raw.dtype}")
        v = raw.astype(np.float64)[has]  # only meaningful where there is consolidation
        if np.any(~np.isfinite(v) | (v != np.round(v)) | (v < 0) | (v > 2)):
            bad = np.unique(v[~np.isin(v, (0.0, 1.0, 2.0))]).tolist()
            raise ValueError(
                f"{key!r} must be 0, 1 or 2 where 'consolidation' > 0, got {bad}"
            )
        full = np.zeros(n, dtype=np.int64)
        full[has] = v.astype(np.int64)
        out[key] = full
    return out, apb, n


# --------------------------------------------------------------------------- #
# small vectorised helpers
# --------------------------------------------------------------------------- #
def _ramp(t: np.ndarray, w, inplace: bool = False) -> np.ndarray:
    """Anti-aliased step: 0 for t <= -w/2, 1 for t >= w/2, linear between."""
    out = t if inplace else np.empty_like(t)
    np.multiply(t, _F32(1.0) / w if np.isscalar(w) else (1.0 / w).astype(_F32), out=out)
    out += _F32(0.5)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def _col(a) -> np.ndarray:
    """Per-image parameter vector -> (B, 1, 1) float32 for broadcasting."""
    return np.asarray(a, dtype=_F32)[:, None, None]


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) matrix that smoothly upsamples a coarse grid (Gaussian weights)."""
    centers = (np.arange(n_in) + 0.5) / n_in
    pos = (np.arange(n_out) + 0.5) / n_out
    sig = 0.75 / n_in
    w = np.exp(-0.5 * ((pos[:, None] - centers[None, :]) / sig) ** 2)
    w /= w.sum(axis=1, keepdims=True)
    return w.astype(_F32)


def _smooth_field(coarse: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(B, g, g) coarse noise -> (B, r, r) smooth field, unit-ish variance."""
    f = m @ coarse @ m.T
    f *= _F32(2.2)  # the Gaussian smoothing shrinks the variance
    return f


def _blur121(img: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur over the last two axes (edge-replicating)."""
    out = img * _F32(0.5)
    out[:, 1:, :] += img[:, :-1, :] * _F32(0.25)
    out[:, :-1, :] += img[:, 1:, :] * _F32(0.25)
    out[:, 0, :] += img[:, 0, :] * _F32(0.25)
    out[:, -1, :] += img[:, -1, :] * _F32(0.25)
    res = out * _F32(0.5)
    res[:, :, 1:] += out[:, :, :-1] * _F32(0.25)
    res[:, :, :-1] += out[:, :, 1:] * _F32(0.25)
    res[:, :, 0] += out[:, :, 0] * _F32(0.25)
    res[:, :, -1] += out[:, :, -1] * _F32(0.25)
    return res


# --------------------------------------------------------------------------- #
# per-call random banks
# --------------------------------------------------------------------------- #
def _vessel_textures(rng: np.random.Generator, res: int) -> tuple[np.ndarray, np.ndarray]:
    """Branching pulmonary-vessel trees radiating from both hila.

    Returns (sharp, blurred) banks of shape (_N_TEX, res, res), values in [0, 1),
    sampled in the reference anatomical frame covering [-_TEX_EXTENT, _TEX_EXTENT]^2.
    The trees are grown level by level, vectorised over all branches of all textures.
    """
    from scipy.ndimage import gaussian_filter

    pix = 2 * _TEX_EXTENT / res
    n_roots, depth = 8, 6
    k_n = _N_TEX
    # roots: per texture, 8 per hilum, fanning from upwards-lateral to downwards-lateral
    side = np.repeat(np.array([-1.0, 1.0]), n_roots)[None, :].repeat(k_n, 0)  # (K, 16)
    hx = side * (0.19 + rng.uniform(-0.02, 0.02, (k_n, 2)).repeat(n_roots, 1))
    hy = np.where(side < 0, -0.04, -0.09) + rng.uniform(-0.02, 0.02, (k_n, 2)).repeat(n_roots, 1)
    ang = np.tile(np.linspace(-1.5, 1.45, n_roots), 2)[None, :] + rng.uniform(-0.1, 0.1, side.shape)
    x0, y0 = hx, hy
    dx, dy = side * np.cos(ang), np.sin(ang)
    length = np.full(side.shape, 0.17)
    width = np.full(side.shape, 0.022)
    xs, ys, ws, ks = [], [], [], []
    kidx = np.arange(k_n)[:, None]
    for level in range(depth + 1):
        x1, y1 = x0 + dx * length, y0 + dy * length
        m = max(2, int(np.ceil(length.max() / (0.4 * pix))))
        t = (np.arange(m) / m)[None, None, :]
        xs.append((x0[..., None] + (x1 - x0)[..., None] * t).ravel())
        ys.append((y0[..., None] + (y1 - y0)[..., None] * t).ravel())
        ws.append(np.broadcast_to(width[..., None], x0.shape + (m,)).ravel())
        ks.append(np.broadcast_to(kidx[..., None], x0.shape + (m,)).ravel())
        if level == depth:
            break
        # every branch splits in two, turning by +-(0.25..0.55) rad
        turn = rng.uniform(0.25, 0.55, x0.shape + (2,)) * np.array([-1.0, 1.0])
        ca, sa = np.cos(turn), np.sin(turn)
        ndx = dx[..., None] * ca - dy[..., None] * sa
        ndy = dx[..., None] * sa + dy[..., None] * ca
        length = (length[..., None] * rng.uniform(0.70, 0.88, turn.shape)).reshape(k_n, -1)
        width = (width[..., None] * rng.uniform(0.66, 0.78, turn.shape)).reshape(k_n, -1)
        x0 = np.repeat(x1, 2, axis=1)
        y0 = np.repeat(y1, 2, axis=1)
        dx, dy = ndx.reshape(k_n, -1), ndy.reshape(k_n, -1)
    x, y, w, k = (np.concatenate(a) for a in (xs, ys, ws, ks))
    ix = np.floor((x + _TEX_EXTENT) / pix).astype(np.int64)
    iy = np.floor((y + _TEX_EXTENT) / pix).astype(np.int64)
    ok = (ix >= 0) & (ix < res) & (iy >= 0) & (iy < res)
    lin = (k[ok] * res + iy[ok]) * res + ix[ok]
    w = w[ok]
    thick = w > 0.009
    # projected density of a vessel ~ its diameter: splat mass ~ width^2, then blur
    tot = k_n * res * res
    a = np.bincount(lin[thick], weights=w[thick] ** 2, minlength=tot).reshape(k_n, res, res)
    b = np.bincount(lin[~thick], weights=w[~thick] ** 2, minlength=tot).reshape(k_n, res, res)
    img = gaussian_filter(a, (0, 0.018 / pix, 0.018 / pix))
    img += 0.6 * gaussian_filter(b, (0, 0.007 / pix, 0.007 / pix))
    scale = np.array([np.percentile(im[im > 0], 99.0) for im in img])
    sharp = np.tanh(1.6 * img / (scale[:, None, None] + 1e-12))
    blurred = gaussian_filter(sharp, (0, 0.02 / pix, 0.02 / pix)) * 1.4
    return sharp.astype(_F32), blurred.astype(_F32)


def _noise_bank(rng: np.random.Generator, size: int) -> np.ndarray:
    """A few unit-variance detector-noise fields (white + slightly correlated)."""
    side = 2 * size
    white = rng.standard_normal((_N_NOISE, side, side), dtype=_F32)
    corr = _blur121(white)
    corr *= _F32(1.0 / corr.std())
    bank = white * _F32(0.8)
    bank += corr * _F32(0.6)
    bank *= _F32(1.0 / bank.std())
    return bank


# --------------------------------------------------------------------------- #
# per-image acquisition and anatomy draws
# --------------------------------------------------------------------------- #
def _draw(n: int, apb: np.ndarray, f: dict, rng: np.random.Generator, size: int) -> dict:
    ap = apb.astype(np.float64)
    pa = 1.0 - ap

    def tnorm(sd, lim):
        return np.clip(rng.normal(0.0, 1.0, n) * sd, -lim, lim)

    p: dict[str, np.ndarray] = {}
    # --- acquisition ------------------------------------------------------ #
    rot_lim = np.where(apb, 6.0, 3.0)
    p["rotation_deg"] = tnorm(rot_lim / 2.0, rot_lim)
    sh_lim = np.where(apb, 0.06, 0.035) * size
    p["shift_x"] = tnorm(sh_lim / 2.0, sh_lim)
    p["shift_y"] = tnorm(sh_lim / 2.0, sh_lim)
    p["scale"] = np.where(apb, rng.uniform(0.90, 1.05, n), rng.uniform(0.93, 1.04, n))
    p["contrast"] = rng.uniform(0.8, 1.25, n)
    p["brightness"] = rng.uniform(-0.035, 0.035, n)
    p["noise_sd"] = np.where(apb, rng.uniform(0.022, 0.050, n), rng.uniform(0.010, 0.026, n))
    p["blur"] = np.where(apb, rng.uniform(0.2, 0.8, n), rng.uniform(0.0, 0.4, n))
    p["inspiration"] = np.where(apb, rng.uniform(0.30, 0.72, n), rng.uniform(0.72, 1.0, n))
    p["heart_magnification"] = pa * 1.0 + ap * rng.uniform(1.10, 1.15, n)
    # --- anatomy (normalised anatomical units) --------------------------- #
    insp = p["inspiration"]
    p["wt"] = rng.uniform(0.70, 0.79, n) * (0.955 + 0.045 * insp)  # inner thoracic half-width
    p["wall"] = rng.uniform(0.07, 0.15, n)  # chest-wall thickness
    p["ya"] = -0.74 + rng.uniform(-0.03, 0.03, n)  # lung apex
    p["ydl"] = 0.51 - 0.21 * insp + rng.uniform(-0.02, 0.02, n)  # left dome top
    p["ydr"] = p["ydl"] - rng.uniform(0.02, 0.06, n)  # right dome higher
    p["kd"] = rng.uniform(1.1, 1.5, n)  # dome curvature
    p["ax"] = rng.uniform(0.44, 0.52, n)  # lateral curvature of the cage
    p["heart_left_frac"] = rng.uniform(0.60, 0.70, n)
    p["heart_tilt"] = rng.uniform(0.20, 0.45, n)
    p["aorta"] = rng.uniform(0.04, 0.08, n)
    p["bubble"] = rng.uniform(0.0, 1.0, n) ** 0.7 * (rng.uniform(0, 1, n) < 0.8)
    p["rib_phase"] = rng.uniform(-0.2, 0.2, n)
    p["tex"] = rng.integers(0, _N_TEX, n).astype(np.float64)
    # --- findings-specific randomness ------------------------------------ #
    p["cons_dx"] = rng.uniform(-0.05, 0.05, n)
    p["cons_dy"] = rng.uniform(-0.04, 0.04, n)
    p["kerley_phase"] = rng.uniform(0.0, 1.0, n)
    p["noise_k"] = rng.integers(0, _N_NOISE, n).astype(np.float64)
    p["noise_oy"] = rng.integers(0, size + 1, n).astype(np.float64)
    p["noise_ox"] = rng.integers(0, size + 1, n).astype(np.float64)
    p["coarse"] = rng.standard_normal((n, 2, _GRID, _GRID)).astype(_F32)
    # --- derived truth --------------------------------------------------- #
    thorax = 2.0 * p["wt"]
    heart = f["ctr"] * thorax * p["heart_magnification"]
    p["heart_w"] = heart
    px_per_unit = p["scale"] * size / 2.0
    p["heart_width_px"] = heart * px_per_unit
    p["thorax_width_px"] = thorax * px_per_unit
    return p


# --------------------------------------------------------------------------- #
# the renderer for one chunk
# --------------------------------------------------------------------------- #
def _render_chunk(p: dict, f: dict, banks: dict, size: int, r: int, out: np.ndarray) -> np.ndarray:
    """Render one batch into ``out`` (uint8, (B, size, size)); return consolidation areas."""
    B = p["scale"].shape[0]
    pix = _F32(2.0 / r)  # internal pixel in normalised units
    edge = pix * _F32(1.2)

    # ---------------- coordinates: image -> anatomical frame -------------- #
    th = np.deg2rad(p["rotation_deg"])
    c, s_ = np.cos(th), np.sin(th)
    sc = p["scale"]
    sx = p["shift_x"] * 2.0 / size
    sy = p["shift_y"] * 2.0 / size
    g = ((np.arange(r, dtype=np.float64) + 0.5) * (2.0 / r) - 1.0).astype(_F32)
    u = g[None, None, :]
    v = g[None, :, None]
    X = _col(c / sc) * u + (_col(s_ / sc) * v + _col(-(c * sx + s_ * sy) / sc))
    Y = _col(-s_ / sc) * u + (_col(c / sc) * v + _col((s_ * sx - c * sy) / sc))
    S = np.abs(X)  # distance from the midline
    neg = X < 0  # image left = patient's right

    wt, ax = _col(p["wt"]), _col(p["ax"])
    ya = _col(p["ya"])
    ydl, ydr = p["ydl"], p["ydr"]
    yd_side = np.where(neg, _col(ydr), _col(ydl))  # dome top of this side
    kd = _col(p["kd"])

    # ---------------- body outline --------------------------------------- #
    bw = wt + _col(p["wall"])
    t = np.clip((ya + _F32(0.35) - Y) * _F32(1 / 0.55), 0, 1)  # axillae/shoulders: wider
    t *= t
    t *= _F32(0.15)
    t += bw
    t -= S
    body = np.clip(t * _F32(1 / 0.09), 0, 1)  # soft skin margin (tissue thins out)
    # shoulder line sloping down laterally from the neck; the neck above it
    t = np.clip((S - _F32(0.24)) * _F32(1 / 0.75), 0, 1)
    t *= t
    t *= _F32(0.22)
    t += ya - _F32(0.22)
    np.subtract(Y, t, out=t)
    sh = _ramp(t, _F32(0.07), inplace=True)
    np.maximum(sh, _ramp(_F32(0.26) - S, edge * 3), out=sh)
    body *= sh
    del sh, t
    # humeral heads at the top corners
    hh = S - (bw + _F32(0.03))
    hh *= hh
    t = Y - (ya + _F32(0.02))
    t *= t
    hh += t
    del t
    np.sqrt(hh, out=hh)
    np.subtract(_F32(0.13), hh, out=hh)
    humerus = _ramp(hh, edge * 2, inplace=True)

    # ---------------- lungs: cage ellipse x diaphragm x mediastinum ------- #
    xc = wt - ax
    yc = yd_side + _F32(0.05)
    dx = (S - xc) / ax
    dy = Y - yc
    ay = np.where(dy < 0, yc - ya, _F32(0.6))
    dy /= ay
    dx *= dx
    dy *= dy
    fcage = dx + dy  # < 1 inside the thoracic cage
    del dx, dy, ay
    cage = np.sqrt(fcage)
    np.subtract(1.0, cage, out=cage)
    cage *= ax
    _ramp(cage, edge, inplace=True)

    ydome = S - _F32(0.38)
    ydome *= ydome
    ydome *= kd
    ydome += yd_side
    lung = _ramp(ydome - Y, edge)
    lung *= cage

    # mediastinum half-width (aortic knob on the patient's left = image right)
    yk = (Y + _F32(0.34)) * _F32(1 / 0.07)
    yk *= yk
    np.negative(yk, out=yk)
    np.exp(yk, out=yk)
    knob = yk
    knob *= np.where(neg, _F32(0.0), _col(p["aorta"]))
    medw = knob
    medw += _F32(0.085)
    medw += np.clip((Y + _F32(0.55)) * _F32(0.12), 0, 0.05)  # widens towards the heart
    med = _ramp(medw - S, edge)
    del medw, knob
    lung *= _F32(1.0) - med

    # ---------------- heart ---------------------------------------------- #
    w = p["heart_w"] / 2.0
    fl = p["heart_left_frac"]
    phi = p["heart_tilt"]
    b = 0.18 + 0.34 * w
    sp, cp = np.sin(phi), np.cos(phi)
    a = np.sqrt(np.maximum(w**2 - (b * sp) ** 2, 1e-4) / cp**2)
    off = (a**2 - b**2) * sp * cp / w  # extreme points' vertical offsets
    xh = p["heart_w"] * fl - w  # centre: left-heavy
    yh = ydl - off - 0.08
    hu = X - _col(xh)
    hv = Y - _col(yh)
    # rotate by -phi (long axis points down and to the image right)
    e1 = hu * _col(cp / a) + hv * _col(sp / a)
    e2 = hv * _col(cp / b) - hu * _col(sp / b)
    del hu, hv
    e1 *= e1
    e2 *= e2
    e1 += e2
    del e2
    np.sqrt(e1, out=e1)
    np.subtract(1.0, e1, out=e1)
    e1 *= _col(w)
    heart = _ramp(e1, edge, inplace=True)

    # ---------------- aerated lung ("air") and its modifiers -------------- #
    air = lung * (_F32(1.0) - _F32(0.9) * heart)
    # dense central shadow (mediastinum + heart) and the abdomen below the domes:
    # the heart's lower border is silhouetted against the diaphragm/liver
    thick = np.maximum(med, heart)
    np.maximum(thick, _ramp(Y - ydome, edge * 2), out=thick)
    thick *= body
    # upper zones overlapped by muscle / clavicles: a little less dark
    air *= np.clip((Y - ya) * _F32(0.6) + _F32(0.78), 0, 1)

    # gastric bubble under the left dome
    bub = p["bubble"]
    if np.any(bub > 0):
        bx = (X - _F32(0.36)) * _F32(1 / 0.11)
        by = (Y - (_col(ydl) + _F32(0.11))) * _F32(1 / 0.065)
        bx *= bx
        by *= by
        bx += by
        del by
        np.sqrt(bx, out=bx)
        np.subtract(1.0, bx, out=bx)
        bx *= _F32(0.08)
        gastric = _ramp(bx, edge * 2, inplace=True)
        gastric *= _col(bub)
        gastric *= _F32(1.0) - lung  # only below the dome
    else:
        gastric = None

    # ---------------- vascular markings (texture in the anatomical frame) - #
    tpix = 2 * _TEX_EXTENT / banks["tex_res"]
    tres = banks["tex_res"]
    lung_h = ((ydl + ydr) / 2.0 - p["ya"])
    sxr = _TEX_WT / p["wt"]
    syr = (_TEX_YD - _TEX_YA) / lung_h
    ix = X * _col(sxr / tpix) + _F32(_TEX_EXTENT / tpix)
    iy = (Y - ya) * _col(syr / tpix) + _F32((_TEX_YA + _TEX_EXTENT) / tpix)
    ix = np.clip(ix, 0, tres - 1, out=ix).astype(np.int32)
    iy = np.clip(iy, 0, tres - 1, out=iy).astype(np.int32)
    iy *= np.int32(tres)
    iy += ix
    del ix
    k_tex = p["tex"].astype(np.int64)
    iy += (k_tex * tres * tres).astype(np.int32)[:, None, None]
    tex = banks["sharp"].reshape(-1)[iy]

    # ---------------- findings ------------------------------------------- #
    cons_full = np.zeros((B,), dtype=np.float64)
    sev_c = f["consolidation"]
    idx = np.nonzero(sev_c > 0)[0]
    coarse = p["coarse"]
    if idx.size:
        Xi, Yi, Si = X[idx], Y[idx], S[idx]
        sev = sev_c[idx]
        side = f["consolidation_side"][idx]
        zone = f["consolidation_zone"][idx]
        ydi = np.where(side == 1, ydl[idx], np.where(side == 0, ydr[idx], (ydl[idx] + ydr[idx]) / 2))
        yai = p["ya"][idx]
        h = ydi - yai
        # zones: equal thirds of the apex-to-dome height (0 lower, 1 middle, 2 upper)
        ztop = np.where(zone == 2, -10.0, yai + h * np.where(zone == 1, 1 / 3, 2 / 3))
        zbot = np.where(zone == 0, 10.0, yai + h * np.where(zone == 1, 2 / 3, 1 / 3))
        zc = yai + h * np.select([zone == 0, zone == 1], [0.80, 0.5], 0.2) + p["cons_dy"][idx]
        cxs = p["wt"][idx] - p["ax"][idx] * 0.95 + p["cons_dx"][idx]
        rx = 0.09 + 0.22 * sev
        ry = np.minimum(0.07 + 0.16 * sev, h / 3.0 * 0.75)
        ex = (Si - _col(cxs)) * _col(1 / rx)
        ey = (Yi - _col(zc)) * _col(1 / ry)
        ex *= ex
        ey *= ey
        ex += ey
        del ey
        np.negative(ex, out=ex)
        env = np.exp(ex, out=ex)
        field = _smooth_field(coarse[idx, 0], banks["interp"])
        field *= _F32(0.30)
        field += env
        del env
        opac = _ramp(field - _F32(0.5), _F32(0.3), inplace=False)
        del field
        # side selection (0 right lung = image left, 1 left lung = image right, 2 both)
        sgn = np.where(side == 0, -1.0, 1.0)
        bias = np.where(side == 2, 10.0, 0.0)
        opac *= _ramp(Xi * _col(sgn) + _col(bias * 0.05), edge * 2, inplace=False)
        opac *= _ramp(Yi - _col(ztop), _F32(0.05))
        opac *= _ramp(_col(zbot) - Yi, _F32(0.05))
        opac *= lung[idx]
        area = (opac > 0.5).sum(axis=(1, 2)) * (size / r) ** 2
        cons_full[idx] = area
        opac *= _col(0.55 + 0.42 * sev)
        # air bronchograms: vessels are replaced by dark air-filled bronchi
        air[idx] *= _F32(1.0) - opac
        tex[idx] -= opac * tex[idx] * _F32(1.6)

    sev_e = f["edema"]
    idx = np.nonzero(sev_e > 0)[0]
    if idx.size:
        Yi, Si = Y[idx], S[idx]
        E = sev_e[idx]
        yhil = (p["ya"][idx] + (ydl[idx] + ydr[idx]) / 2) / 2 + 0.12
        hx = (Si - _F32(0.2)) * _F32(1 / 0.32)
        hy = (Yi - _col(yhil)) * _col(1 / (0.32 + 0.06 * E))
        hx *= hx
        hy *= hy
        hx += hy
        del hy
        np.negative(hx, out=hx)
        haze = np.exp(hx, out=hx)  # perihilar "bat wing"
        haze += _ramp(Yi - _col(ydl[idx] - 0.30), _F32(0.35)) * _F32(0.45)  # basal
        patch = _smooth_field(coarse[idx, 1], banks["interp"])
        patch *= _F32(0.18)
        patch += _F32(1.0)
        haze *= patch
        del patch
        haze *= _col(0.85 * E**0.8)
        np.clip(haze, 0, 0.85, out=haze)
        air[idx] *= _F32(1.0) - haze
        # vascular blurring: sharp markings fade into indistinct thicker ones
        blurred = banks["blurred"].reshape(-1)[iy[idx]]
        tex[idx] = tex[idx] * _col(1 - 0.7 * E) + blurred * _col(0.9 * E)
        del blurred
        # Kerley B lines: short horizontal lines at the lateral bases
        kl = np.clip((E - 0.55) / 0.25, 0, 1)
        if np.any(kl > 0):
            fr = Yi * _F32(1 / 0.045) + _col(p["kerley_phase"][idx])
            fr -= np.floor(fr)
            fr -= _F32(0.5)
            np.abs(fr, out=fr)
            lines = _ramp(fr - _F32(0.34), _F32(0.12), inplace=True)
            lines *= _ramp(fcage[idx] - _F32(0.72), _F32(0.08))
            lines *= _ramp(Yi - _col(yhil + 0.12), _F32(0.1))
            lines *= _col(0.9 * kl)
            air[idx] *= _F32(1.0) - lines
        del haze

    for key, sgn in (("effusion_right", -1.0), ("effusion_left", 1.0)):
        sev_f = f[key]
        idx = np.nonzero(sev_f > 0)[0]
        if not idx.size:
            continue
        Xi, Yi, Si = X[idx], Y[idx], S[idx]
        e = sev_f[idx]
        yd = (ydr if sgn < 0 else ydl)[idx]
        wti = p["wt"][idx]
        ycp = yd + p["kd"][idx] * (wti - 0.38) ** 2  # costophrenic angle
        ylat = ycp - e * (ycp - (p["ya"][idx] + 0.12)) * 0.85  # fluid top at the wall
        m = 0.12 + 0.20 * e  # meniscus depth
        sn = np.clip((Si - _F32(0.08)) * _col(1 / (wti - 0.08)), 0, 1)
        np.subtract(1.0, sn, out=sn)
        sn *= sn
        sn *= _col(m)
        sn += _col(ylat)  # fluid surface: lowest medially, curving up at the wall
        fluid = _ramp(Yi - sn, _F32(0.035), inplace=True)
        del sn
        fluid *= _ramp(Xi * _F32(sgn) - _F32(0.02), edge)
        fluid *= cage[idx]  # confined to the pleural space of this hemithorax
        fluid *= _F32(1.0) - med[idx]
        fluid *= _F32(0.97)
        apv = p["heart_magnification"][idx] > 1.0  # AP: supine layering adds a veil
        veil = _col(0.25 * e * apv) * np.clip((Yi - _col(p["ya"][idx])) * _F32(0.8), 0, 1)
        veil *= _ramp(Xi * _F32(sgn), edge)
        np.maximum(fluid, veil, out=fluid)
        air[idx] *= _F32(1.0) - fluid
        tex[idx] *= _F32(1.0) - fluid
        thick[idx] = np.maximum(thick[idx], fluid)

    # ---------------- bones ---------------------------------------------- #
    # posterior ribs: arcs from the spine, curving downwards laterally
    gr = S * _F32(0.55)
    gr -= _F32(0.12)
    gr *= S
    q = Y - gr
    q -= ya
    q += _F32(0.05)
    q *= _F32(1 / 0.118)
    q -= q * q * _F32(0.012)  # spacing widens slightly downwards
    q += _col(p["rib_phase"])
    q -= np.floor(q)
    q -= _F32(0.5)
    np.abs(q, out=q)
    ribs = _ramp(q - _F32(0.35), _F32(0.06), inplace=True)  # band ~30% of the period
    # anterior ribs: lateral part only, descending medially, fainter
    q = S * _F32(-0.62)
    q += Y
    q -= ya
    q *= _F32(1 / 0.13)
    q += _col(p["rib_phase"])
    q -= np.floor(q)
    q -= _F32(0.5)
    np.abs(q, out=q)
    arib = _ramp(q - _F32(0.36), _F32(0.08), inplace=True)
    arib *= _ramp(S - _F32(0.30), _F32(0.15))
    arib *= _F32(0.45)
    ribs += arib
    del arib, q, gr
    rib_region = _ramp(_F32(1.15) - fcage, _F32(0.12))
    rib_region *= _ramp(S - _F32(0.07), edge)
    rib_region *= _ramp(Y - (ya - _F32(0.06)), _F32(0.06))
    rib_region *= _ramp(ydome + _F32(0.12) - Y, _F32(0.12))
    vis = _F32(1.0) - heart
    vis *= lung
    vis *= _F32(0.6)
    vis += _F32(0.4)
    rib_region *= vis
    np.multiply(thick, _F32(-0.6), out=vis)
    vis += _F32(1.0)  # ribs are faint over the heart, mediastinum, abdomen, fluid
    rib_region *= vis
    del vis
    ribs *= rib_region
    del rib_region

    # clavicles
    cl = S - _F32(0.3)
    cl *= cl
    cl *= _F32(0.2)
    cl += ya + _F32(0.15)
    cl -= S * _F32(0.14)
    cl -= Y
    np.abs(cl, out=cl)
    clav = _ramp(_F32(0.032) - cl, edge, inplace=True)
    clav *= _ramp(S - _F32(0.075), edge)
    clav *= _ramp(_F32(0.66) - S, _F32(0.05))

    # spine with faint vertebral segmentation
    spine = _ramp(_F32(0.085) - S, edge * 3)
    vq = Y * _F32(1 / 0.09)
    vq -= np.floor(vq)
    vq -= _F32(0.5)
    np.abs(vq, out=vq)
    vq *= _F32(0.3)
    vq += _F32(0.85)
    spine *= vq
    del vq

    # trachea (air column) down to the carina
    trach = _ramp(_F32(0.04) - S, edge)
    trach *= _ramp(ya + _F32(0.50) - Y, _F32(0.06))

    # ---------------- compose density ------------------------------------ #
    D = body * _F32(0.58)
    D += _F32(0.04)
    D += thick * _F32(0.10)
    D += spine * _F32(0.04)
    D -= trach * _F32(0.12)
    D += ribs * _F32(0.075)
    D += clav * _F32(0.13)
    D += humerus * _F32(0.12)
    if gastric is not None:
        D -= gastric * _F32(0.28)
    tex *= _F32(0.16)
    np.subtract(_F32(0.40), tex, out=tex)
    air *= tex
    D -= air
    np.clip(D, 1e-4, 1.0, out=D)

    # ---------------- acquisition: blur, contrast, noise ----------------- #
    bl = _col(p["blur"])
    Db = _blur121(D)
    Db -= D
    Db *= bl
    D += Db
    del Db
    np.log(D, out=D)
    D *= _col(p["contrast"])
    np.exp(D, out=D)
    D += _col(p["brightness"])
    _finish(D, p, banks, size, r, out)
    return cons_full


def _quantise_into(img: np.ndarray, noise: np.ndarray, sd: np.ndarray, out: np.ndarray) -> None:
    img += noise * sd
    img *= _F32(255.0)
    img += _F32(0.5)
    np.clip(img, 0.0, 255.0, out=img)
    out[...] = img  # truncation == rounding after the +0.5


def _finish(D: np.ndarray, p: dict, banks: dict, size: int, r: int, out: np.ndarray) -> None:
    """Upsample (B, r, r) intensities to (B, size, size), add noise, write uint8 into out."""
    B = D.shape[0]
    ks = p["noise_k"].astype(np.int64)
    oy = p["noise_oy"].astype(np.int64)
    ox = p["noise_ox"].astype(np.int64)
    sd = _col(p["noise_sd"])
    if r == size:
        bank = banks["noise"]
        noise = np.empty((B, size, size), dtype=_F32)
        for i in range(B):
            noise[i] = bank[ks[i], oy[i] : oy[i] + size, ox[i] : ox[i] + size]
        _quantise_into(D, noise, sd, out)
        return
    # exact bilinear 2x upsampling computed as its four polyphase components at
    # the render resolution (cheap, cache friendly), interleaved only at the end
    h = r
    bankp = banks["noise_phases"]  # (K, 2, 2, size, size)
    noise = np.empty((B, 2, 2, h, h), dtype=_F32)
    for i in range(B):
        y0, x0 = oy[i] // 2, ox[i] // 2
        noise[i] = bankp[ks[i], :, :, y0 : y0 + h, x0 : x0 + h]
    out5 = out.reshape(B, h, 2, h, 2)
    for a in (0, 1):
        R = D * _F32(0.75)
        if a == 0:  # output row 2i sits a quarter pixel above source row i
            R[:, 1:] += D[:, :-1] * _F32(0.25)
            R[:, 0] += D[:, 0] * _F32(0.25)
        else:
            R[:, :-1] += D[:, 1:] * _F32(0.25)
            R[:, -1] += D[:, -1] * _F32(0.25)
        for c in (0, 1):
            P = R * _F32(0.75)
            if c == 0:
                P[:, :, 1:] += R[:, :, :-1] * _F32(0.25)
                P[:, :, 0] += R[:, :, 0] * _F32(0.25)
            else:
                P[:, :, :-1] += R[:, :, 1:] * _F32(0.25)
                P[:, :, -1] += R[:, :, -1] * _F32(0.25)
            _quantise_into(P, noise[:, a, c], sd, out5[:, :, a, :, c])


# --------------------------------------------------------------------------- #
# public API
# --------------------------------------------------------------------------- #
def render_cxr(
    findings: dict[str, np.ndarray],
    ap: np.ndarray,
    rng: np.random.Generator,
    size: int = 256,
    chunk: int = 128,
    progress: bool = False,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Render synthetic frontal chest radiographs that follow latent findings.

    Parameters
    ----------
    findings
        Dict with (at least) the keys of :data:`FINDINGS`, each a 1-D array of
        length ``n`` (extra keys are ignored):

        - ``ctr`` (float, 0.2-0.9): true cardiothoracic ratio, transverse heart
          width / inner thoracic width (0.38-0.50 normal, up to ~0.70 with
          cardiomegaly).  The drawn heart width is ``ctr * thorax_width *
          heart_magnification``.
        - ``consolidation`` (float 0-1): severity of an airspace opacity, 0 = none;
          its area and density grow with severity.
        - ``consolidation_side`` (int): 0 = right lung, 1 = left lung, 2 = both.
          Radiological convention: the patient's right lung is on the image's
          left.  Only checked where ``consolidation > 0``.
        - ``consolidation_zone`` (int): 0 = lower, 1 = middle, 2 = upper zone,
          the zones being equal thirds of the apex-to-dome height of the lung.
          Only checked where ``consolidation > 0``.
        - ``edema`` (float 0-1): bilateral perihilar and basal haze ("bat wing"),
          blurred vascular markings, Kerley-B-like lines above ~0.6.
        - ``effusion_left`` / ``effusion_right`` (float 0-1): pleural fluid of the
          patient's left (image right) / right (image left) hemithorax: a
          homogeneous opacity at the base with a concave-up meniscus that blunts
          the costophrenic angle; its height grows with severity (1 reaches about
          85 % of the way from the costophrenic angle to the apex).
    ap
        Boolean array of length ``n``: True = AP (portable, supine-ish: heart
        magnified 10-15 % relative to the thorax, lower inspiration, more
        rotation, shift, blur and noise, effusions add a layering veil),
        False = PA.
    rng
        Source of all randomness (acquisition, anatomy, textures, noise).  The
        output is a deterministic function of the rng state and the inputs and
        does not depend on ``chunk``.
    size
        Output side in pixels (>= 32).  Even sizes >= 128 are rendered at half
        resolution and bilinearly upsampled before noise is added.
    chunk
        Images per outer step (one tick of the progress bar).  Inside a chunk the
        images are rendered in cache-sized micro-batches of at most ``chunk``
        images (about 2**17 render pixels each), so the float32 work memory stays
        at a few tens of MB whatever ``chunk`` is; the result does not depend
        on it.
    progress
        Show a tqdm progress bar over the chunks.

    Returns
    -------
    images
        ``uint8`` array ``(n, size, size)``; standard radiograph rendering: air
        and aerated lung dark, soft tissue, heart, fluid and bone bright.
    acquisition
        Dict of float64 arrays of length ``n`` (keys :data:`ACQUISITION_KEYS`):

        - ``rotation_deg``: in-plane rotation, degrees (|.| <= 3 PA, <= 6 AP).
        - ``shift_x``, ``shift_y``: translation of the anatomy, output pixels.
        - ``scale``: magnification of the anatomy (1 = the nominal field of view).
        - ``contrast``: gamma applied to the normalised density (>1 darker mid-tones).
        - ``brightness``: additive offset of the normalised intensity.
        - ``noise_sd``: SD of the additive detector noise, fraction of full scale
          (multiply by 255 for grey levels).
        - ``blur``: strength (0-1) of a [1 2 1] blur at the render resolution.
        - ``inspiration``: 0-1, depth of inspiration (low in AP); the domes sit
          higher when it is low.
        - ``heart_magnification``: 1.0 for PA, 1.10-1.15 for AP.
        - ``heart_width_px``: the drawn transverse heart width (right + left
          extents from the midline), output pixels.
        - ``thorax_width_px``: the drawn inner thoracic width (between the inner
          rib margins at the widest point), output pixels.
          ``heart_width_px / thorax_width_px = ctr * heart_magnification``.
        - ``consolidation_area_px``: area of the consolidation opacity above half
          of its maximum density, output pixels (0 without consolidation).
    """
    f, apb, n = _validate(findings, ap, size, chunk)
    size = int(size)
    chunk = int(chunk)
    r = size // 2 if (size % 2 == 0 and size >= 128) else size
    p = _draw(n, apb, f, rng, size)
    tex_res = int(round(r * 1.15))
    sharp, blurred = _vessel_textures(rng, tex_res)
    noise = _noise_bank(rng, size)
    banks = {
        "sharp": sharp,
        "blurred": blurred,
        "tex_res": tex_res,
        "noise": noise,
        # polyphase layout (K, row phase, col phase, size, size) for the 2x path
        "noise_phases": np.ascontiguousarray(
            noise.reshape(_N_NOISE, size, 2, size, 2).transpose(0, 2, 4, 1, 3)
        ),
        "interp": _interp_matrix(r, _GRID),
    }
    images = np.empty((n, size, size), dtype=np.uint8)
    cons_area = np.zeros(n, dtype=np.float64)
    # Work arrays are kept cache-sized (~2**17 pixels): numpy streams far faster
    # through L2/L3-resident temporaries than through chunk-sized ones.
    micro = int(max(1, min(chunk, round(_MICRO_PIXELS / (r * r)))))
    starts = range(0, n, chunk)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, total=len(starts), desc="render_cxr", unit="chunk")
    for st in starts:
        for m0 in range(st, min(n, st + chunk), micro):
            sl = slice(m0, min(n, st + chunk, m0 + micro))
            pc = {k: v[sl] for k, v in p.items()}
            fc = {k: v[sl] for k, v in f.items()}
            cons_area[sl] = _render_chunk(pc, fc, banks, size, r, images[sl])
    p["consolidation_area_px"] = cons_area
    acquisition = {k: np.asarray(p[k], dtype=np.float64) for k in ACQUISITION_KEYS}
    return images, acquisition
