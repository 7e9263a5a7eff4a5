"""Vectorised 12-lead ECG simulator for the synthetic MIMIC-IV-Ext-MDS-ED cohort.

The heart is modelled as a single time-varying electrical dipole ``D(t)`` in body coordinates
``x`` (to the patient's left), ``y`` (inferior, towards the feet) and ``z`` (anterior).  Every
wave of a beat -- P, septal Q, R, terminal S, T and the ST-segment injury current -- has its own
3-D direction and a Gaussian-like time course.  R is made of two overlapping lobes with slightly
different directions (a crude rotation of the QRS loop); they separate into a notched complex in
LBBB-like records.  A lead is the projection of the dipole onto a lead vector:

* limb leads I and II are projections onto the frontal plane at 0 deg and 60 deg; III, aVR, aVL
  and aVF are *derived* exactly from I and II (Einthoven / Goldberger): ``III = II - I``,
  ``aVR = -(I + II)/2``, ``aVL = I - II/2``, ``aVF = II - I/2`` -- noise included, as in a real
  electrocardiograph;
* V1-V6 are projections onto (mostly horizontal) precordial lead vectors taken from Dower's
  Frank-to-12-lead transform, from right-anterior (V1) to left-lateral (V6), which gives the usual
  R-wave progression: rS in V1, transition around V3-V4, tall R in V5-V6.

One beat template is built per record (at the output rate, the narrow Gaussians widened by an
anti-aliasing width with their area kept) and placed at every beat onset by FFT convolution of a
(weighted) impulse train with the 3-channel dipole template, so a chunk of records costs a handful
of array operations and there is no Python loop over beats.  On a 2-core CPU 15,000 ten-second
100 Hz records take ~4-5 s (~4 s of CPU time).

Public API: :data:`ECG_PARAMS`, :func:`simulate_ecg` (records in the lead order :data:`mmlib.schema.LEADS`,
at :data:`mmlib.schema.FS` Hz by default).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft as _fft
from tqdm import tqdm

from ..schema import FS, LEADS

__all__ = ["ECG_PARAMS", "sinus_params", "simulate_ecg"]

ECG_PARAMS = ("heart_rate", "af", "qrs_ms", "st_mv", "st_territory", "lvh", "axis_deg")


def sinus_params(n: int, **overrides) -> dict[str, np.ndarray]:
    """Parameters of ``n`` normal sinus records for :func:`simulate_ecg` (70 bpm, QRS 90 ms, axis 60 deg, no ST
    change, no LVH), each of ``overrides`` (a name of :data:`ECG_PARAMS`) broadcast to ``n``: a starting
    point for experiments with the simulator and for its tests."""
    p = {
        "heart_rate": np.full(n, 70.0),
        "af": np.zeros(n, dtype=bool),
        "qrs_ms": np.full(n, 90.0),
        "st_mv": np.zeros(n),
        "st_territory": np.ones(n, dtype=int),
        "lvh": np.zeros(n),
        "axis_deg": np.full(n, 60.0),
    }
    unknown = sorted(set(overrides) - set(p))
    if unknown:
        raise ValueError(f"sinus_params: unknown parameters {unknown}; expected some of {list(ECG_PARAMS)}")
    for key, value in overrides.items():
        p[key] = np.broadcast_to(np.asarray(value, dtype=p[key].dtype), (n,)).copy()
    return p

# ----------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------
# Independent channels that are actually simulated (everything else is derived from I and II).
_IND = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
_IND_POS = np.array([LEADS.index(name) for name in _IND])

_LIMB = np.array([[1.0, 0.0, 0.0], [0.5, math.sqrt(3.0) / 2.0, 0.0]])  # I (0 deg), II (60 deg)
# Precordial lead vectors: Dower's Frank-XYZ -> V1..V6 coefficients (Frank Z flipped so that +z is
# anterior), scaled to the limb-lead units used here.  They are mostly horizontal (V1 right-anterior,
# V2 anterior, ... V6 left-lateral, slightly posterior), with a small inferior component, and larger
# than the limb-lead vectors because the chest electrodes sit close to the heart.
_V_SCALE = 1.35
_PRECORDIAL = _V_SCALE * np.array(
    [
        [-0.515, 0.157, 0.917],
        [0.044, 0.164, 1.387],
        [0.882, 0.098, 1.277],
        [1.213, 0.127, 0.601],
        [1.125, 0.127, 0.086],
        [0.831, 0.076, -0.230],
    ]
)
_LEAD_VEC = np.concatenate([_LIMB, _PRECORDIAL])  # (8, 3), order of _IND

# 12 x 8 linear map from the independent channels to the 12 standard leads.
_DERIVE = np.zeros((12, 8))
for _k, _name in enumerate(_IND):
    _DERIVE[LEADS.index(_name), _k] = 1.0
_DERIVE[LEADS.index("III"), :2] = [-1.0, 1.0]
_DERIVE[LEADS.index("aVR"), :2] = [-0.5, -0.5]
_DERIVE[LEADS.index("aVL"), :2] = [1.0, -0.5]
_DERIVE[LEADS.index("aVF"), :2] = [-0.5, 1.0]

# ST territories: 0 anterior, 1 inferior, 2 lateral -> facing leads and injury-current direction.
_TERRITORY_LEADS = (
    ("V1", "V2", "V3", "V4"),
    ("II", "III", "aVF"),
    ("I", "aVL", "V5", "V6"),
)
_TERRITORY_DIR = np.array(
    [
        [0.3, -0.6, 0.8],  # anterior, slightly superior -> reciprocal depression in III/aVF
        [-0.17, 0.98, -0.2],  # inferior (~100 deg), slightly posterior -> reciprocal in aVL, I, V1-V2
        [0.94, -0.34, 0.05],  # high lateral (~ -20 deg) -> reciprocal in III/aVF and V1
    ]
)
_TERRITORY_MASK = np.zeros((3, 12))
for _t, _names in enumerate(_TERRITORY_LEADS):
    for _name in _names:
        _TERRITORY_MASK[_t, LEADS.index(_name)] = 1.0 / len(_names)

# Template window around the beat fiducial (the QRS centre), in seconds.
_T_PRE = 0.45
_T_POST = 1.05


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------
def _validate(params: dict, fs: int, seconds: float, chunk: int) -> dict[str, np.ndarray]:
    if not isinstance(params, dict):
        raise ValueError(f"params: expected a dict with keys {ECG_PARAMS}, got {type(params).__name__}")
    missing = [k for k in ECG_PARAMS if k not in params]
    if missing:
        raise ValueError(f"params: missing key(s) {missing}; expected all of {ECG_PARAMS}")
    if not (isinstance(fs, (int, np.integer)) and 50 <= fs <= 2000):
        raise ValueError(f"fs: expected an integer sampling rate in [50, 2000] Hz, got {fs!r}")
    if not (np.isfinite(seconds) and 1.0 <= float(seconds) <= 600.0):
        raise ValueError(f"seconds: expected a record length in [1, 600] s, got {seconds!r}")
    if not (isinstance(chunk, (int, np.integer)) and chunk >= 1):
        raise ValueError(f"chunk: expected a positive integer, got {chunk!r}")

    out: dict[str, np.ndarray] = {}
    n = None
    for key in ECG_PARAMS:
        try:
            arr = np.asarray(params[key])
            if key == "af":
                if arr.dtype != bool:
                    arr_f = arr.astype(float)
                    if not np.all(np.isin(arr_f, (0.0, 1.0))):
                        raise ValueError
                    arr = arr_f.astype(bool)
            elif key == "st_territory":
                arr_f = arr.astype(float)
                if arr.size and not np.all(np.isin(arr_f, (0.0, 1.0, 2.0))):
                    raise ValueError(
                        "st_territory: expected integers 0 (anterior), 1 (inferior) or 2 (lateral), "
                        f"got values {np.unique(arr_f)[:10]}"
                    )
                arr = arr_f.astype(np.int64)
            else:
                arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            if str(exc).startswith(key):
                raise
            expected = "booleans (or 0/1)" if key == "af" else "numbers"
            raise ValueError(f"{key}: expected a 1-D array of {expected}, got {params[key]!r:.80}") from None
        if arr.ndim != 1:
            raise ValueError(f"{key}: expected a 1-D array, got shape {arr.shape}")
        if n is None:
            n = arr.shape[0]
        elif arr.shape[0] != n:
            raise ValueError(
                f"{key}: expected length {n} (the length of heart_rate), got length {arr.shape[0]}"
            )
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ValueError(f"{key}: expected finite values, got NaN/inf")
        out[key] = arr

    checks = (
        ("heart_rate", 20.0, 250.0, "bpm"),
        ("qrs_ms", 40.0, 300.0, "ms"),
        ("st_mv", -3.0, 3.0, "mV"),
        ("lvh", 0.0, 5.0, "(0 = normal, 1 = LVH voltage)"),
    )
    for key, lo, hi, unit in checks:
        v = out[key]
        if v.size and (v.min() < lo or v.max() > hi):
            bad = v[(v < lo) | (v > hi)][:5]
            raise ValueError(f"{key}: expected values in [{lo:g}, {hi:g}] {unit}, got e.g. {bad}")
    return out


# ----------------------------------------------------------------------------------------------
# Building blocks (all vectorised over a chunk of c records)
# ----------------------------------------------------------------------------------------------
def _gauss(tau: np.ndarray, centre: np.ndarray, sigma: np.ndarray, amp: np.ndarray, s_aa: float):
    """Gaussian wave (c, L); sigma widened by the anti-aliasing width with its area preserved."""
    s_eff = np.sqrt(sigma**2 + s_aa**2)
    a = amp * sigma / s_eff
    return a[:, None] * np.exp(-0.5 * ((tau[None, :] - centre[:, None]) / s_eff[:, None]) ** 2)


def _asym_gauss(tau, centre, s_left, s_right, amp, s_aa):
    sl = np.sqrt(s_left**2 + s_aa**2)[:, None]
    sr = np.sqrt(s_right**2 + s_aa**2)[:, None]
    d = tau[None, :] - centre[:, None]
    s = np.where(d < 0, sl, sr)
    return amp[:, None] * np.exp(-0.5 * (d / s) ** 2)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _beat_times(rng, hr, af, seconds, t_lo, t_hi):
    """Beat fiducial times (c, M) in s covering [t_lo, t_hi]; columns beyond t_hi are NaN."""
    c = hr.shape[0]
    rr0 = 60.0 / hr
    m = int(math.ceil((t_hi - t_lo + 1.0 + rr0.max()) / (0.6 * rr0.min()))) + 4 if c else 1
    k = np.arange(m)[None, :]
    # sinus: respiratory sinus arrhythmia (smaller at high rates) + small beat-to-beat jitter
    f_resp = rng.uniform(0.18, 0.33, c)
    a_resp = rng.uniform(0.01, 0.05, c) * np.clip(90.0 / hr, 0.3, 1.0)
    phi = rng.uniform(0.0, 2 * np.pi, c)
    jit = rng.normal(0.0, 0.006, (c, m))
    t_approx = t_lo + k * rr0[:, None]
    rr_sinus = rr0[:, None] * (1.0 + a_resp[:, None] * np.sin(2 * np.pi * f_resp[:, None] * t_approx + phi[:, None]) + jit)
    # AF: irregularly irregular -- independent intervals = AV-nodal refractory floor + gamma-distributed
    # wait (overall RR coefficient of variation 0.15-0.30); the floor is 300 ms, or 0.7 x the mean RR
    # at ventricular rates above 140 bpm
    cv = rng.uniform(0.15, 0.30, c)
    floor = np.minimum(0.3, 0.7 * rr0)
    cv_g = cv * rr0 / (rr0 - floor)
    shape = 1.0 / cv_g**2
    g = rng.standard_gamma(shape[:, None], (c, m)) / shape[:, None]
    rr_af = floor[:, None] + (rr0 - floor)[:, None] * g
    rr = np.where(af[:, None], rr_af, rr_sinus)
    t0 = t_lo - 1.0 - rng.uniform(0.0, 1.0, c) * rr0  # 1 s of slack for the rescaling below
    t = t0[:, None] + np.concatenate([np.zeros((c, 1)), np.cumsum(rr[:, :-1], axis=1)], axis=1)
    # rescale the intervals about the first in-record beat so that the realised mean RR over the beats
    # inside [0, seconds) equals 60 / heart_rate, then slide the sequence (within the slack the
    # neighbouring intervals allow) so that exactly those beats stay inside the record
    rows = np.arange(c)
    for _ in range(3):
        inside = (t >= 0.0) & (t < seconds)
        first = np.argmax(inside, axis=1)
        last = m - 1 - np.argmax(inside[:, ::-1], axis=1)
        cnt = last - first
        ok = inside.any(axis=1) & (cnt >= 1) & (first >= 1) & (last <= m - 2)
        tf = t[rows, first]
        span = np.where(ok, t[rows, last] - tf, 1.0)
        scale = np.where(ok, rr0 * cnt / span, 1.0)
        t = tf[:, None] + scale[:, None] * (t - tf[:, None])
        span = span * scale
        rr_prev = tf - t[rows, np.maximum(first - 1, 0)]
        rr_next = t[rows, np.minimum(last + 1, m - 1)] - (tf + span)
        lo = np.maximum(0.0, seconds - span - rr_next)
        hi = np.minimum(rr_prev, seconds - span) - 1e-6
        ok &= lo <= hi
        t = t + np.where(ok, np.clip(tf, lo, hi) - tf, 0.0)[:, None]
    # the margins cover [t_lo, t_hi] in practice; extend regularly in the (astronomically rare) other case
    early = t[:, 0] > t_lo
    if np.any(early):
        extra = int(math.ceil(np.max((t[early, 0] - t_lo) / rr0[early]))) + 1
        t = np.concatenate([t[:, :1] - rr0[:, None] * np.arange(extra, 0, -1)[None, :], t], axis=1)
    short = t[:, -1] < t_hi
    if np.any(short):
        extra = int(math.ceil(np.max((t_hi - t[short, -1]) / rr0[short]))) + 1
        t = np.concatenate([t, t[:, -1:] + rr0[:, None] * np.arange(1, extra + 1)[None, :]], axis=1)
    t = np.where(t <= t_hi, t, np.nan)
    return t


def _simulate_chunk(rng, p, fs, seconds, n_samp):
    """Simulate one chunk: returns (independent channels (c, n_samp, 8) float32, truth dict)."""
    hr, af, qrs_ms = p["heart_rate"], p["af"], p["qrs_ms"]
    st_mv, terr, lvh, axis = p["st_mv"], p["st_territory"], p["lvh"], p["axis_deg"]
    c = hr.shape[0]
    s_aa = 0.45 / fs
    rr0 = 60.0 / hr
    D = qrs_ms / 1000.0
    wide = np.clip((qrs_ms - 105.0) / 30.0, 0.0, 1.0)
    morph = np.where(qrs_ms >= 120.0, np.where(rng.random(c) < 0.5, 1, 2), 0).astype(np.int8)
    lbbb = (morph == 1).astype(float) * wide
    rbbb = (morph == 2).astype(float) * wide

    L_pre = int(round(_T_PRE * fs))
    L = L_pre + int(round(_T_POST * fs)) + 1
    tau = (np.arange(L) - L_pre) / fs

    def jit(scale, size=c):
        return rng.normal(1.0, scale, size)

    gain = np.exp(rng.normal(0.0, 0.12, c))  # body habitus / electrode impedance

    # ---------------- QRS -----------------
    qrs_on = -0.5 * D
    q_c, q_s = -0.30 * D, 0.08 * D
    r_s = 0.11 * D * jit(0.05)
    s_c, s_s = 0.28 * D, 0.09 * D * jit(0.05)
    lvh_f = 1.0 + 1.0 * lvh
    a_q = 0.11 * jit(0.25) * (1.0 - lbbb)
    a_r = 0.95 * jit(0.12) * lvh_f
    a_s = (0.30 * jit(0.2) * (1.0 - 0.5 * lbbb) + 0.25 * rbbb) * lvh_f
    s_c = s_c + 0.04 * D * rbbb
    s_s = s_s * (1.0 + 0.5 * rbbb)
    d_q = _unit(np.array([-0.55, 0.25, 0.8]) + rng.normal(0.0, 0.12, (c, 3)))
    d_s = np.array([-0.45, -0.35, -0.7])[None, :] * (1 - rbbb[:, None]) + np.array([-0.75, 0.05, 0.65])[None, :] * rbbb[:, None]
    d_s = _unit(d_s + rng.normal(0.0, 0.12, (c, 3)))
    # R: two overlapping lobes whose directions differ (early: more anterior, late: more posterior), a
    # crude rotation of the QRS loop that gives the rS -> RS -> Rs progression across V1-V6; they
    # merge into one peak when narrow and separate into a broad notched "M" in LBBB-like complexes.
    # Lobe amplitude chosen so that the peak stays ~a_r.
    delta = r_s * (0.35 + 1.05 * lbbb)
    a_lobe = a_r / (1.0 + np.exp(-2.0 * (delta / r_s) ** 2))
    z_r = -0.5 * jit(0.25) - 0.25 * lbbb - 0.2 * np.minimum(lvh, 2.0)  # LV mass: more posterior
    sq2pi = math.sqrt(2 * math.pi)
    other = ((a_q * q_s * sq2pi)[:, None] * d_q + (a_s * s_s * sq2pi)[:, None] * d_s)[:, :2]
    r_area = 2.0 * a_lobe * r_s * sq2pi  # frontal magnitude of the R vector's area
    ax = np.deg2rad(axis)
    u = np.stack([np.cos(ax), np.sin(ax)], axis=1)
    uv = np.sum(u * other, axis=1)
    kk = -uv + np.sqrt(np.maximum(uv**2 - np.sum(other**2, axis=1) + r_area**2, 0.0))
    r_front = (kk[:, None] * u - other) / r_area[:, None]  # |r_front| = 1 unless Q+S dominate
    d_r = np.concatenate([r_front, z_r[:, None]], axis=1)
    loop = np.array([0.0, 0.0, 0.3])[None, :] * (1.0 + 0.5 * lbbb[:, None])
    d_r1 = d_r + loop
    d_r2 = d_r - loop

    # ---------------- P wave (sinus only) -----------------
    pr = np.clip(rng.uniform(0.13, 0.19, c) - 0.0004 * np.maximum(hr - 80.0, 0.0), 0.11, 0.22)
    p_dur = rng.uniform(0.085, 0.11, c)
    p_s = p_dur / 5.0
    p_c = qrs_on - pr + p_dur / 2.0
    a_p = 0.16 * jit(0.2) * (~af)
    d_p = _unit(np.array([0.5, 0.85, 0.2]) + rng.normal(0.0, 0.1, (c, 3)))

    # ---------------- T wave, QT (Bazett-like) -----------------
    qtc = rng.normal(0.41, 0.018, c)
    qt = np.clip(qtc * np.sqrt(rr0), 0.2, 0.65) + 0.8 * np.maximum(D - 0.095, 0.0)
    t_end = qrs_on + qt
    t_sr = 0.042 * np.sqrt(rr0 / 0.857) * jit(0.08)
    t_sr = np.minimum(t_sr, 0.06)
    t_sl = 1.7 * t_sr
    t_c = t_end - 2.5 * t_sr
    a_t = 0.36 * jit(0.2)
    # wide QRS: secondary repolarisation change (T discordant to the terminal/main QRS forces)
    d_t = np.array([0.6, 0.55, 0.45])[None, :] * (1.0 - 0.6 * wide[:, None]) - 0.6 * (
        lbbb[:, None] * np.array([0.5, 0.3, -0.6]) + rbbb[:, None] * np.array([-0.5, 0.0, 0.6])
    )
    d_t = _unit(d_t + rng.normal(0.0, 0.12, (c, 3)))

    # ---------------- ST injury current -----------------
    j_pt = 0.5 * D
    st_shape = _sigmoid((tau[None, :] - (j_pt - 0.012)[:, None]) / 0.006) * _sigmoid(
        (t_end[:, None] - 0.02 - tau[None, :]) / 0.02
    )
    # per-record lead vectors (precordial electrode-placement jitter), then ST amplitude such that the
    # mean deviation over the facing leads is st_mv
    v_jit = np.ones((c, 8))
    v_jit[:, 2:] = np.exp(rng.normal(0.0, 0.08, (c, 6)))
    lead_vec = _LEAD_VEC[None, :, :] * v_jit[:, :, None]  # (c, 8, 3)
    d_st = _unit(_TERRITORY_DIR[terr] + rng.normal(0.0, 0.06, (c, 3)))
    proj12 = np.einsum("kj,cjd,cd->ck", _DERIVE, lead_vec, d_st)  # (c, 12)
    facing = np.sum(proj12 * _TERRITORY_MASK[terr], axis=1)
    a_st = st_mv / facing

    # ---------------- assemble dipole template -----------------
    shapes = np.stack(
        [
            _gauss(tau, p_c, p_s, a_p * gain, s_aa),
            _gauss(tau, q_c, q_s, a_q * gain, s_aa),
            _gauss(tau, -delta, r_s, a_lobe * gain, s_aa),
            _gauss(tau, +delta, r_s, a_lobe * gain, s_aa),
            _gauss(tau, s_c, s_s, a_s * gain, s_aa),
            _asym_gauss(tau, t_c, t_sl, t_sr, a_t * gain, s_aa),
            st_shape * a_st[:, None],
        ],
        axis=2,
    )  # (c, L, 7)
    dirs = np.stack([d_p, d_q, d_r1, d_r2, d_s, d_t, d_st], axis=1)  # (c, 7, 3)
    dip = np.matmul(shapes, dirs)  # (c, L, 3) dipole template
    lead_t = np.ascontiguousarray(lead_vec.transpose(0, 2, 1))  # (c, 3, 8)

    # clean-template measurements for the truth table
    t12 = np.matmul(np.matmul(dip, lead_t), _DERIVE.T)  # (c, L, 12)
    i_base = np.clip(np.round((qrs_on - 0.02) * fs).astype(int) + L_pre, 0, L - 1)
    i_st = np.clip(np.round((j_pt + 0.06) * fs).astype(int) + L_pre, 0, L - 1)
    rows = np.arange(c)
    st_level = t12[rows, i_st, :] - t12[rows, i_base, :]
    qrs_win = (tau[None, :] >= qrs_on[:, None]) & (tau[None, :] <= j_pt[:, None])
    base = t12[rows, i_base, :][:, None, :]
    qrs_part = np.where(qrs_win[:, :, None], t12 - base, 0.0)
    r_amp = qrs_part.max(axis=1)
    s_amp = -qrs_part.min(axis=1)
    iv1, iv5, iv6 = LEADS.index("V1"), LEADS.index("V5"), LEADS.index("V6")
    sokolow = s_amp[:, iv1] + np.maximum(r_amp[:, iv5], r_amp[:, iv6])
    net_i = qrs_part[:, :, 0].sum(axis=1)
    net_avf = qrs_part[:, :, LEADS.index("aVF")].sum(axis=1)
    axis_real = np.rad2deg(np.arctan2(net_avf / (math.sqrt(3) / 2), net_i))

    # ---------------- beats and impulse train -----------------
    t_lo = -(_T_POST + 1.0 / fs)
    t_hi = seconds + _T_PRE + 1.0 / fs
    bt = _beat_times(rng, hr, af, seconds, t_lo, t_hi)  # (c, M), NaN-padded
    b0 = int(math.ceil((_T_POST + 2.0 / fs) * fs))
    n_imp = b0 + n_samp + L_pre + 2
    bidx = np.round(np.nan_to_num(bt, nan=-1e9) * fs).astype(np.int64) + b0
    valid = (bidx >= 0) & (bidx < n_imp) & np.isfinite(bt)
    # beat-to-beat amplitude modulation (respiration moves the heart a little)
    w = 1.0 + rng.uniform(0.0, 0.06, c)[:, None] * np.sin(
        2 * np.pi * rng.uniform(0.18, 0.33, c)[:, None] * np.nan_to_num(bt) + rng.uniform(0, 2 * np.pi, c)[:, None]
    )
    imp = np.zeros((c, n_imp), dtype=np.float32)
    rr_i, cc_i = np.nonzero(valid)
    imp[rr_i, bidx[rr_i, cc_i]] = w[rr_i, cc_i]

    # every beat = the record's template placed at its onset: FFT convolution of the impulse train
    # with the 3-channel dipole template (cheaper than convolving the 8 lead templates)
    nfft = _fft.next_fast_len(n_imp + L - 1, real=True)
    spec = _fft.rfft(imp, n=nfft, axis=1, workers=-1)[:, :, None]
    spec = spec * _fft.rfft(dip.astype(np.float32), n=nfft, axis=1, workers=-1)
    dsig = _fft.irfft(spec, n=nfft, axis=1, workers=-1)[:, b0 + L_pre : b0 + L_pre + n_samp, :]
    del spec

    # ---------------- AF fibrillatory waves -----------------
    tt = np.arange(n_samp) / fs
    if np.any(af):
        ia = np.nonzero(af)[0]
        k = ia.size
        f0 = rng.uniform(4.0, 8.0, k)
        df = rng.uniform(0.3, 1.0, k)
        f_mod = rng.uniform(0.05, 0.3, k)[:, None] * tt + rng.uniform(0, 1.0, k)[:, None]
        f_inst = np.clip(f0[:, None] + df[:, None] * np.sin(2 * np.pi * f_mod), 3.5, 9.0)
        phase = 2 * np.pi * np.cumsum(f_inst, axis=1) / fs + rng.uniform(0, 2 * np.pi, k)[:, None]
        a_mod = rng.uniform(0.1, 0.5, k)[:, None] * tt + rng.uniform(0, 1.0, k)[:, None]
        am = rng.uniform(0.03, 0.09, k)[:, None] * (1.0 + 0.35 * np.sin(2 * np.pi * a_mod))
        fw = am * (np.sin(phase) + 0.3 * np.sin(2 * phase + rng.uniform(0, 2 * np.pi, k)[:, None]))
        d_f = _unit(np.array([-0.3, 0.7, 0.9]) + rng.normal(0.0, 0.2, (k, 3)))  # largest in V1, II/III/aVF
        dsig[ia] += (fw[:, :, None] * d_f[:, None, :]).astype(np.float32)

    # dipole -> the 8 independent leads
    sig = np.matmul(dsig, lead_t.astype(np.float32))  # (c, n_samp, 8) float32

    # ---------------- baseline wander (< 0.5 Hz) -----------------
    # random smooth drift on a cosine basis with frequencies k/(2*seconds) < 0.5 Hz and a 1/f-like
    # spectrum: a component common to all electrodes (respiration) plus electrode-specific drift
    kb = np.arange(1, max(2, int(math.floor(0.5 * 2 * seconds - 1e-9)) + 1))
    basis = np.cos(np.pi * kb[None, :] * (tt[:, None] + rng.uniform(0, seconds)) / seconds).astype(np.float32)
    sd_k = 1.0 / kb
    a_c = rng.uniform(0.0, 0.05, c)[:, None, None]
    a_i = rng.uniform(0.0, 0.04, (c, 8))[:, :, None]
    coef = a_c * rng.standard_normal((c, 1, kb.size)) * rng.uniform(0.3, 1.0, (c, 8, 1))
    coef = (coef + a_i * rng.standard_normal((c, 8, kb.size))) * sd_k
    sig += np.matmul(basis[None], coef.astype(np.float32).transpose(0, 2, 1))

    # ---------------- noise -----------------
    noise_sd = rng.uniform(0.004, 0.02, c)
    sig += rng.standard_normal((c, n_samp, 8), dtype=np.float32) * noise_sd.astype(np.float32)[:, None, None]
    muscle = rng.random(c) < 0.15
    if np.any(muscle):
        im = np.nonzero(muscle)[0]
        k = im.size
        # surface EMG after the 100 Hz anti-aliasing: broadband noise with the low frequencies removed
        # (white noise minus its 5-sample moving average, i.e. mostly > ~15 Hz at fs = 100)
        wn = rng.standard_normal((k, n_samp + 4, 8), dtype=np.float32)
        cs = np.cumsum(wn, axis=1, dtype=np.float32)
        ma = (cs[:, 4:] - np.concatenate([np.zeros((k, 1, 8), np.float32), cs[:, :-5]], axis=1)) / np.float32(5.0)
        emg = wn[:, 2:-2] - ma
        start = rng.uniform(-1.0, seconds - 1.0, k)
        dur = rng.uniform(1.0, 4.0, k)
        env = _sigmoid((tt[None, :] - start[:, None]) / 0.15) * _sigmoid((start[:, None] + dur[:, None] - tt[None, :]) / 0.15)
        lead_w = np.array([1.0, 1.0, 0.5, 0.4, 0.4, 0.4, 0.5, 0.6])
        amp = rng.uniform(0.01, 0.035, k)
        sig[im] += emg * ((amp[:, None] * env)[:, :, None] * lead_w).astype(np.float32)

    # ---------------- truth -----------------
    in_win = np.isfinite(bt) & (bt >= 0.0) & (bt < seconds)
    n_beats = in_win.sum(axis=1)
    bt_in = np.where(in_win, bt, np.nan)
    rr_in = np.diff(bt_in, axis=1)  # NaN wherever a neighbour is outside the window
    with np.errstate(invalid="ignore", divide="ignore"):
        cnt = np.isfinite(rr_in).sum(axis=1)
        mean_rr = np.where(cnt > 0, np.nansum(rr_in, axis=1) / np.maximum(cnt, 1), np.nan)
        var_rr = np.where(cnt > 1, np.nansum((rr_in - mean_rr[:, None]) ** 2, axis=1) / np.maximum(cnt - 1, 1), np.nan)
        rr_cv = np.sqrt(var_rr) / mean_rr
    r_idx = np.where(in_win, np.clip(np.round(np.nan_to_num(bt) * fs), 0, n_samp - 1), -1).astype(np.int32)
    # compact: in-window beats first (they are contiguous and ordered), padding -1
    order = np.argsort(~in_win, axis=1, kind="stable")
    r_idx = np.take_along_axis(r_idx, order, axis=1)

    truth = {
        "n_beats": n_beats.astype(np.int32),
        "mean_rr_ms": 1000.0 * mean_rr,
        "heart_rate": 60.0 / mean_rr,
        "rr_cv": rr_cv,
        "r_peak_idx": r_idx,
        "qrs_ms": qrs_ms.copy(),
        "qrs_morphology": morph,
        "pr_ms": np.where(af, np.nan, 1000.0 * pr),
        "qt_ms": 1000.0 * qt,
        "qtc_ms": 1000.0 * qt / np.sqrt(mean_rr),
        "st_level_mv": st_level,
        "sokolow_mv": sokolow,
        "qrs_axis_deg": axis_real,
        "amplitude_gain": gain,
        "noise_sd_mv": noise_sd,
        "muscle_noise": muscle,
    }
    return sig, truth


# ----------------------------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------------------------
def simulate_ecg(
    params: dict[str, np.ndarray],
    rng: np.random.Generator,
    fs: int = FS,
    seconds: float = 10.0,
    chunk: int = 512,
    progress: bool = False,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Simulate ``n`` resting 12-lead ECGs.

    Parameters
    ----------
    params
        Dict with one 1-D array of length ``n`` per key in :data:`ECG_PARAMS` (extra keys are ignored):

        ``heart_rate``   mean ventricular rate in beats/min (typical 30-200; accepted 20-250).  The
                         intervals are rescaled so that the realised mean RR between the beats inside
                         the record equals ``60/heart_rate`` (to float precision, except in rare edge
                         cases with very irregular AF: within a few %).
        ``af``           bool, atrial fibrillation: irregularly irregular RR (independent intervals: a
                         refractory floor of min(300 ms, 0.7 x mean RR) plus a gamma-distributed wait,
                         coefficient of variation 0.15-0.30), no P waves, fibrillatory
                         baseline waves of 4-8 Hz and 0.03-0.09 mV (largest in V1 and II/III/aVF).
                         ``False`` means sinus rhythm: respiratory RR variability of 1-5 %, P waves
                         with a PR interval of 110-220 ms.
        ``qrs_ms``       QRS duration in ms (normal ~80-100; >= 120 for bundle-branch block or
                         hyperkalaemia; accepted 40-300).  All QRS components are stretched in time
                         (the half-amplitude width of the R wave grows with it); from 120 ms on the
                         morphology is that of a bundle-branch block (partly developed at 120 ms,
                         fully from 135 ms), chosen at random per record: LBBB-like (no septal q, broad notched "M" R in I, aVL,
                         V5-V6, deep QS in V1) or RBBB-like (broad terminal rightward-anterior force:
                         rSR' in V1, slurred S in I and V6), both with partly discordant T waves.
        ``st_mv``        ST deviation in mV at J point + 60 ms, positive = elevation (accepted -3..3),
                         defined as the mean over the leads facing ``st_territory``.
        ``st_territory`` int, 0 = anterior (V1-V4), 1 = inferior (II, III, aVF), 2 = lateral (I, aVL,
                         V5, V6).  The injury current is a dipole, so the opposite leads show a smaller
                         reciprocal deviation of opposite sign (anterior -> III/aVF, inferior -> aVL/I,
                         lateral -> III/aVF/V1).  Ignored where ``st_mv`` is 0.
        ``lvh``          float >= 0 scaling QRS voltage by ``1 + lvh`` and turning the QRS vector
                         a little more posterior (0 = normal: Sokolow-Lyon SV1 + max(RV5, RV6) ~2.4 mV
                         on average, > 3.5 mV in ~7 %; 1 = LVH voltage: ~5 mV on average, > 3.5 mV
                         in ~80 % of narrow-QRS records, depending on axis and body habitus).
        ``axis_deg``     frontal QRS axis in degrees (normal -30..90); realised as the direction of the
                         net QRS area in leads I and aVF.
    rng
        ``numpy.random.Generator``; the output is a deterministic function of its state, the parameters,
        ``fs``, ``seconds`` and ``chunk`` (records are drawn chunk by chunk).
    fs
        Sampling rate in Hz (default 100, the MIMIC-IV-ECG-derived 100 Hz layout).
    seconds
        Record length in seconds (default 10).
    chunk
        Number of records simulated at once (working memory ~ ``chunk * 0.3`` MB at 100 Hz / 10 s,
        on top of the float32 output of ``n * 48`` kB).
    progress
        Show a tqdm progress bar over the chunks.

    Returns
    -------
    signals
        float32 array ``(n, int(fs*seconds), 12)`` in mV, leads in the order of :data:`LEADS`.  The limb
        leads satisfy ``III = II - I``, ``aVR = -(I + II)/2``, ``aVL = I - II/2``, ``aVF = II - I/2``
        exactly (computed from the stored float32 I and II).  Includes baseline wander (< 0.5 Hz,
        up to ~0.15 mV), white noise (SD 0.004-0.02 mV) and, in ~15 % of records, a 1-4 s burst of
        muscle noise.
    truth
        Dict of per-record arrays (length ``n`` unless stated):

        ``n_beats``        int, number of beats whose QRS centre lies in the record;
        ``mean_rr_ms``     realised mean RR interval (ms) between those beats;
        ``heart_rate``     realised rate ``60000/mean_rr_ms`` (bpm);
        ``rr_cv``          realised coefficient of variation of those RR intervals;
        ``r_peak_idx``     int32 ``(n, max_beats)``: sample index of every QRS centre (the R peak in
                           leads with an upright monophasic QRS), ordered, padded with -1;
        ``qrs_ms``         QRS duration (ms, = input); ``qrs_morphology`` int8: 0 normal, 1 LBBB-like,
                           2 RBBB-like (only when ``qrs_ms >= 120``);
        ``pr_ms``          PR interval (ms, NaN in AF); ``qt_ms`` QT interval (ms); ``qtc_ms`` Bazett QTc;
        ``st_level_mv``    float ``(n, 12)``: noise-free level at J + 60 ms minus the PR-segment level
                           (20 ms before QRS onset) per lead, as a reader should measure it;
        ``sokolow_mv``     noise-free SV1 + max(RV5, RV6) (mV);
        ``qrs_axis_deg``   realised frontal QRS axis (net QRS area in I and aVF, degrees);
        ``amplitude_gain`` per-record global amplitude factor (log-normal, SD 0.12);
        ``noise_sd_mv``    white-noise SD; ``muscle_noise`` bool, whether a muscle-noise burst was added.

    Raises
    ------
    ValueError
        Missing key, non-1-D or wrong-length array, non-finite values, ``heart_rate`` outside 20-250 bpm,
        ``qrs_ms`` outside 40-300 ms, ``st_territory`` not in {0, 1, 2}, ``lvh`` < 0, or bad
        ``fs``/``seconds``/``chunk``.  The message starts with the offending parameter's name.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    p = _validate(params, fs, seconds, chunk)
    n = p["heart_rate"].shape[0]
    n_samp = int(fs * seconds)
    signals = np.empty((n, n_samp, 12), dtype=np.float32)
    parts: list[dict[str, np.ndarray]] = []
    starts = range(0, n, chunk)
    for i0 in tqdm(starts, total=len(starts), disable=not progress, desc="ECG", unit="chunk"):
        i1 = min(i0 + chunk, n)
        sub = {k: v[i0:i1] for k, v in p.items()}
        ind32, tr = _simulate_chunk(rng, sub, fs, float(seconds), n_samp)
        out = signals[i0:i1]
        out[:, :, _IND_POS] = ind32
        lead_i, lead_ii = ind32[:, :, 0], ind32[:, :, 1]
        out[:, :, 2] = lead_ii - lead_i
        out[:, :, 3] = -(lead_i + lead_ii) / np.float32(2.0)
        out[:, :, 4] = lead_i - lead_ii / np.float32(2.0)
        out[:, :, 5] = lead_ii - lead_i / np.float32(2.0)
        parts.append(tr)

    truth: dict[str, np.ndarray] = {}
    if parts:
        width = max(t["r_peak_idx"].shape[1] for t in parts)
        for t in parts:
            r = t["r_peak_idx"]
            if r.shape[1] < width:
                t["r_peak_idx"] = np.pad(r, ((0, 0), (0, width - r.shape[1])), constant_values=-1)
        for key in parts[0]:
            truth[key] = np.concatenate([t[key] for t in parts], axis=0)
        # drop all-padding columns
        keep = np.any(truth["r_peak_idx"] >= 0, axis=0)
        truth["r_peak_idx"] = truth["r_peak_idx"][:, : max(int(keep.sum()), 1)]
    else:
        truth = {
            "n_beats": np.zeros(0, np.int32),
            "mean_rr_ms": np.zeros(0),
            "heart_rate": np.zeros(0),
            "rr_cv": np.zeros(0),
            "r_peak_idx": np.zeros((0, 1), np.int32),
            "qrs_ms": np.zeros(0),
            "qrs_morphology": np.zeros(0, np.int8),
            "pr_ms": np.zeros(0),
            "qt_ms": np.zeros(0),
            "qtc_ms": np.zeros(0),
            "st_level_mv": np.zeros((0, 12)),
            "sokolow_mv": np.zeros(0),
            "qrs_axis_deg": np.zeros(0),
            "amplitude_gain": np.zeros(0),
            "noise_sd_mv": np.zeros(0),
            "muscle_noise": np.zeros(0, bool),
        }
    return signals, truth
