"""Tests of the vectorised 12-lead ECG simulator (mmlib.data.ecg).

The waveform checks use simple, independent measurements (band-pass + scipy.signal.find_peaks R-peak
detection, beat-averaged complexes, widths at half amplitude) rather than the simulator's own
bookkeeping, so that they fail if the waveforms stop carrying the requested physiology.  Records that
are compared with each other are drawn from the same seed with identical parameters except the one
under test: the simulator draws the same random numbers for them, so only that parameter differs.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from mmlib.data.ecg import ECG_PARAMS, simulate_ecg
from mmlib.schema import FS, LEADS
from mmlib.data.ecg import sinus_params as make_params

L = {name: i for i, name in enumerate(LEADS)}


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def bandpass(x: np.ndarray, fs: int = FS, lo: float = 5.0, hi: float = 25.0) -> np.ndarray:
    sos = signal.butter(3, [lo, hi], btype="bandpass", fs=fs, output="sos")
    return signal.sosfiltfilt(sos, x)


def detect_r_peaks(x: np.ndarray, fs: int = FS) -> np.ndarray:
    """Simple R-peak detector on a lead with upright R waves (band-pass, then find_peaks)."""
    y = bandpass(x.astype(float), fs)
    height = 0.4 * np.percentile(y, 99.5)
    peaks, _ = signal.find_peaks(y, height=height, distance=int(0.25 * fs))
    return peaks


def rr_stats(peaks: np.ndarray, fs: int = FS) -> tuple[float, float]:
    rr = np.diff(peaks) / fs
    return 60.0 / rr.mean(), rr.std() / rr.mean()


def average_beat(x: np.ndarray, centres: np.ndarray, pre: int, post: int) -> np.ndarray:
    """Ensemble average of x[c - pre : c + post + 1] over the complete beats."""
    centres = centres[(centres >= pre) & (centres < len(x) - post)]
    return np.mean([x[c - pre : c + post + 1] for c in centres], axis=0)


def truth_peaks(truth: dict, i: int) -> np.ndarray:
    r = truth["r_peak_idx"][i]
    return r[r >= 0]


def half_amplitude_width(beat: np.ndarray, centre: int) -> float:
    """Width (samples) of the main QRS deflection at half its amplitude."""
    y = beat - beat[centre - 8 : centre - 5].mean()  # PR-segment baseline (-80..-60 ms)
    a = centre - 3 + int(np.argmax(np.abs(y[centre - 3 : centre + 4])))
    y = np.sign(y[a]) * y
    return float(signal.peak_widths(y, [a], rel_height=0.5)[0][0])


# ------------------------------------------------------------------------------------------------
# output format
# ------------------------------------------------------------------------------------------------
def test_api_constants():
    assert LEADS == ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    assert FS == 100
    assert ECG_PARAMS == ("heart_rate", "af", "qrs_ms", "st_mv", "st_territory", "lvh", "axis_deg")


def test_shape_dtype_and_truth():
    n = 7
    rng = np.random.default_rng(0)
    p = make_params(n, heart_rate=rng.uniform(40, 160, n), af=rng.random(n) < 0.5)
    sig, truth = simulate_ecg(p, np.random.default_rng(1), chunk=3)  # several chunks
    assert sig.shape == (n, 1000, 12)
    assert sig.dtype == np.float32
    assert np.all(np.isfinite(sig))
    assert 0.3 < np.abs(sig).max() < 10.0  # mV scale, not raw units
    assert truth["n_beats"].shape == (n,)
    assert truth["mean_rr_ms"].shape == (n,)
    # realised mean RR equals the requested rate; beat count consistent with it
    hr_real = 60000.0 / truth["mean_rr_ms"]
    sinus = ~p["af"]
    np.testing.assert_allclose(hr_real[sinus], p["heart_rate"][sinus], atol=0.5)
    np.testing.assert_allclose(hr_real[~sinus], p["heart_rate"][~sinus], rtol=0.1)
    # n beats span (n - 1) mean RR intervals < 10 s (in AF the gaps at the edges can be long)
    expected = p["heart_rate"] / 6.0
    assert np.all(truth["n_beats"] - 1 < expected + 1e-9)
    assert np.all(truth["n_beats"][sinus] - 1 >= np.floor(expected[sinus]) - 1)
    assert np.all(truth["n_beats"][~sinus] >= expected[~sinus] - 3)
    assert truth["r_peak_idx"].shape[0] == n
    assert np.array_equal((truth["r_peak_idx"] >= 0).sum(axis=1), truth["n_beats"])

    sig2, truth2 = simulate_ecg(make_params(2), np.random.default_rng(0), fs=250, seconds=2.5)
    assert sig2.shape == (2, 625, 12) and sig2.dtype == np.float32

    sig0, truth0 = simulate_ecg(make_params(0), np.random.default_rng(0))
    assert sig0.shape == (0, 1000, 12) and truth0["n_beats"].shape == (0,)


def test_progress_bar_runs(capsys):
    sig, _ = simulate_ecg(make_params(5), np.random.default_rng(0), chunk=2, progress=True)
    assert sig.shape == (5, 1000, 12)
    assert "ECG" in capsys.readouterr().err


def test_limb_lead_identities_exact():
    n = 6
    rng = np.random.default_rng(3)
    p = make_params(n, af=rng.random(n) < 0.5, axis_deg=rng.uniform(-60, 120, n), qrs_ms=rng.uniform(80, 160, n))
    sig, _ = simulate_ecg(p, np.random.default_rng(4))
    i, ii = sig[..., L["I"]], sig[..., L["II"]]
    np.testing.assert_allclose(sig[..., L["III"]], ii - i, rtol=0, atol=1e-6)
    np.testing.assert_allclose(sig[..., L["aVR"]], -(i + ii) / 2, rtol=0, atol=1e-6)
    np.testing.assert_allclose(sig[..., L["aVL"]], i - ii / 2, rtol=0, atol=1e-6)
    np.testing.assert_allclose(sig[..., L["aVF"]], ii - i / 2, rtol=0, atol=1e-6)
    # and the leads are not trivially zero / identical
    assert np.std(sig[..., L["III"]]) > 0.05 and np.std(sig[..., L["aVL"]]) > 0.02


def test_deterministic_given_seed():
    p = make_params(5, af=[True, False, True, False, False], qrs_ms=[90, 140, 90, 100, 150])
    a, ta = simulate_ecg(p, np.random.default_rng(42))
    b, tb = simulate_ecg(p, np.random.default_rng(42))
    c, _ = simulate_ecg(p, np.random.default_rng(43))
    assert a.tobytes() == b.tobytes()
    for key in ta:
        np.testing.assert_array_equal(ta[key], tb[key])
    assert not np.array_equal(a, c)
    assert np.mean(np.abs(a - c)) > 0.01


# ------------------------------------------------------------------------------------------------
# rhythm
# ------------------------------------------------------------------------------------------------
def test_heart_rate_recoverable_from_lead_ii():
    rates = np.array([40.0, 55.0, 70.0, 85.0, 100.0, 120.0, 140.0, 160.0, 180.0, 195.0])
    sig, truth = simulate_ecg(make_params(rates.size, heart_rate=rates), np.random.default_rng(7))
    for k, hr in enumerate(rates):
        peaks = detect_r_peaks(sig[k, :, L["II"]])
        hr_det, _ = rr_stats(peaks)
        assert abs(hr_det - hr) <= 5.0, (hr, hr_det)
        assert abs(hr_det - 60000.0 / truth["mean_rr_ms"][k]) <= 5.0
        # detected peaks sit on the simulator's QRS centres
        tp = truth_peaks(truth, k)
        inner = tp[(tp > 5) & (tp < 995)]
        dist = np.abs(peaks[:, None] - inner[None, :]).min(axis=0)
        assert np.all(dist <= 2), (hr, dist)


def test_heart_rate_recoverable_in_af():
    rates = np.array([60.0, 80.0, 100.0, 120.0, 140.0])
    sig, truth = simulate_ecg(make_params(rates.size, heart_rate=rates, af=True), np.random.default_rng(8))
    for k, hr in enumerate(rates):
        peaks = detect_r_peaks(sig[k, :, L["II"]])
        hr_det, _ = rr_stats(peaks)
        # every detected peak is a true QRS and every true QRS away from the edges is detected
        tp = truth_peaks(truth, k)
        assert np.all(np.abs(peaks[:, None] - tp[None, :]).min(axis=1) <= 2)
        inner = tp[(tp >= 5) & (tp < 995)]
        assert np.all(np.abs(peaks[:, None] - inner[None, :]).min(axis=0) <= 2)
        # with irregular RR a beat missed at the very edge of the record changes the mean RR, so compare
        # with the true beats between the first and the last detected one
        hr_true, _ = rr_stats(tp[(tp >= peaks[0] - 2) & (tp <= peaks[-1] + 2)])
        assert abs(hr_det - hr_true) <= 5.0, (hr, hr_det, hr_true)
        assert abs(60000.0 / truth["mean_rr_ms"][k] - hr) < 0.1 * hr  # realised rate ~ requested


def test_af_irregular_and_without_p_waves():
    n = 12
    p_sinus = make_params(n, heart_rate=np.linspace(60, 120, n))
    p_af = make_params(n, heart_rate=np.linspace(60, 120, n), af=True)
    s_sig, s_truth = simulate_ecg(p_sinus, np.random.default_rng(9))
    a_sig, a_truth = simulate_ecg(p_af, np.random.default_rng(10))
    cv_sinus = np.array([rr_stats(detect_r_peaks(s_sig[k, :, L["II"]]))[1] for k in range(n)])
    cv_af = np.array([rr_stats(detect_r_peaks(a_sig[k, :, L["II"]]))[1] for k in range(n)])
    assert np.median(cv_sinus) < 0.06
    assert np.median(cv_af) > 0.12
    assert np.median(cv_af) > 4 * np.median(cv_sinus)
    assert cv_af.min() > cv_sinus.max()
    # the truth table agrees with the measurement
    assert np.all(a_truth["rr_cv"] > s_truth["rr_cv"].max())

    # P wave: a positive bump 200-100 ms before the QRS centre in lead II in sinus rhythm only
    def p_bump(sig, truth, k):
        beat = average_beat(sig[k, :, L["II"]].astype(float), truth_peaks(truth, k), 30, 5)
        baseline = beat[0:5].mean()
        return beat[30 - 20 : 30 - 9].max() - baseline

    bumps_sinus = np.array([p_bump(s_sig, s_truth, k) for k in range(n)])
    bumps_af = np.array([p_bump(a_sig, a_truth, k) for k in range(n)])
    assert np.median(bumps_sinus) > 0.08
    assert np.median(bumps_af) < 0.5 * np.median(bumps_sinus)

    # fibrillatory waves: more 4-8 Hz power in the T-Q interval of AF records (lead V1)
    def fwave_power(sig, truth, k):
        x = bandpass(sig[k, :, L["V1"]].astype(float), lo=4.0, hi=9.0)
        tp = truth_peaks(truth, k)
        mask = np.ones(x.size, bool)
        for c in tp:  # keep the T-P interval only: drop P-QRS-T (-0.25 s .. +0.45 s around each QRS)
            mask[max(c - 25, 0) : c + 45] = False
        return np.mean(x[mask] ** 2) if mask.sum() > 20 else np.nan

    pw_sinus = np.nanmedian([fwave_power(s_sig, s_truth, k) for k in range(n // 2)])
    pw_af = np.nanmedian([fwave_power(a_sig, a_truth, k) for k in range(n // 2)])
    assert pw_af > 3 * pw_sinus


# ------------------------------------------------------------------------------------------------
# morphology
# ------------------------------------------------------------------------------------------------
def test_wide_qrs_is_wider():
    n = 8
    narrow, tn = simulate_ecg(make_params(n, qrs_ms=90.0), np.random.default_rng(11))
    wide, tw = simulate_ecg(make_params(n, qrs_ms=150.0), np.random.default_rng(11))
    for lead in ("II", "V5"):
        w_n = np.mean([half_amplitude_width(average_beat(narrow[k, :, L[lead]], truth_peaks(tn, k), 20, 20), 20) for k in range(n)])
        w_w = np.mean([half_amplitude_width(average_beat(wide[k, :, L[lead]], truth_peaks(tw, k), 20, 20), 20) for k in range(n)])
        assert 1.5 <= w_n <= 4.0, (lead, w_n)  # ~25 ms at half amplitude for a 90 ms QRS
        assert w_w > 1.4 * w_n and w_w - w_n > 1.2, (lead, w_n, w_w)  # > 12 ms wider at half amplitude
    # QRS energy lasts longer: samples where the band-passed |II| exceeds 20 % of its peak, per beat
    def active_ms(sig, truth, k):
        beat = average_beat(bandpass(sig[k, :, L["V5"]].astype(float)), truth_peaks(truth, k), 20, 20)
        a = np.abs(beat)
        return 10.0 * np.sum(a[5:36] > 0.2 * a.max())

    assert np.mean([active_ms(wide, tw, k) for k in range(n)]) > np.mean([active_ms(narrow, tn, k) for k in range(n)]) + 25
    assert set(np.unique(tw["qrs_morphology"])) <= {1, 2} and np.all(tn["qrs_morphology"] == 0)


def st_level(sig, truth, k, lead, qrs_ms):
    """Mean level 60-80 ms after the QRS (J point) minus the PR-segment level, beat-averaged."""
    beat = average_beat(sig[k, :, L[lead]].astype(float), truth_peaks(truth, k), 40, 40)
    half = int(round(qrs_ms / 2 / 10))
    j = 40 + half
    st = beat[j + 6 : j + 9].mean()  # J + 60 .. 80 ms
    pr = beat[40 - half - 3 : 40 - half].mean()  # 30 .. 10 ms before QRS onset
    return st - pr


@pytest.mark.parametrize("qrs_ms", [90.0, 140.0])
def test_inferior_st_elevation_with_reciprocal_change(qrs_ms):
    n = 6
    base, tb = simulate_ecg(make_params(n, qrs_ms=qrs_ms, st_mv=0.0, st_territory=1), np.random.default_rng(12))
    stemi, ts = simulate_ecg(make_params(n, qrs_ms=qrs_ms, st_mv=0.25, st_territory=1), np.random.default_rng(12))
    for lead in ("II", "III", "aVF"):
        d = np.mean([st_level(stemi, ts, k, lead, qrs_ms) - st_level(base, tb, k, lead, qrs_ms) for k in range(n)])
        assert 0.15 < d < 0.4, (lead, d)
        if qrs_ms < 100:  # absolute elevation over the PR segment with a normal QRS
            assert np.mean([st_level(stemi, ts, k, lead, qrs_ms) for k in range(n)]) > 0.15
    d_avl = np.mean([st_level(stemi, ts, k, "aVL", qrs_ms) - st_level(base, tb, k, "aVL", qrs_ms) for k in range(n)])
    d_facing = np.mean([st_level(stemi, ts, k, "III", qrs_ms) - st_level(base, tb, k, "III", qrs_ms) for k in range(n)])
    assert d_avl < -0.08  # reciprocal depression...
    assert abs(d_avl) < d_facing  # ...smaller than the elevation
    if qrs_ms < 100:
        # the truth table reports the elevation the waveform carries
        facing = ts["st_level_mv"][:, [L["II"], L["III"], L["aVF"]]].mean(axis=1) - tb["st_level_mv"][:, [L["II"], L["III"], L["aVF"]]].mean(axis=1)
        np.testing.assert_allclose(facing, 0.25, atol=0.02)


def test_anterior_and_lateral_territories():
    n = 4
    base, tb = simulate_ecg(make_params(n), np.random.default_rng(13))
    ant, ta = simulate_ecg(make_params(n, st_mv=0.3, st_territory=0), np.random.default_rng(13))
    lat, tl = simulate_ecg(make_params(n, st_mv=-0.2, st_territory=2), np.random.default_rng(13))

    def delta(sig, truth, lead):
        return np.mean([st_level(sig, truth, k, lead, 90.0) - st_level(base, tb, k, lead, 90.0) for k in range(n)])

    assert np.mean([delta(ant, ta, lead) for lead in ("V1", "V2", "V3", "V4")]) > 0.2
    assert delta(ant, ta, "III") < -0.05
    assert np.mean([delta(lat, tl, lead) for lead in ("I", "aVL", "V5", "V6")]) < -0.13
    assert delta(lat, tl, "III") > 0.05


def test_lvh_raises_qrs_voltage():
    n = 10
    norm, tn = simulate_ecg(make_params(n, lvh=0.0), np.random.default_rng(14))
    lvh, tl = simulate_ecg(make_params(n, lvh=1.0), np.random.default_rng(14))

    def r_and_s(sig, truth, k):
        v5 = average_beat(sig[k, :, L["V5"]].astype(float), truth_peaks(truth, k), 20, 20)
        v1 = average_beat(sig[k, :, L["V1"]].astype(float), truth_peaks(truth, k), 20, 20)
        return v5[15:26].max() - v5[12:15].mean(), v1[12:15].mean() - v1[15:26].min()

    rn, sn = np.array([r_and_s(norm, tn, k) for k in range(n)]).T
    rl, sl = np.array([r_and_s(lvh, tl, k) for k in range(n)]).T
    assert np.mean(rl) > 1.5 * np.mean(rn)
    assert np.mean(sl) > 1.5 * np.mean(sn)
    # Sokolow-Lyon (SV1 + RV5) measured on the waveform: above 3.5 mV on average with lvh = 1 only
    assert np.mean(sn + rn) < 3.0 and np.mean(sn + rn > 3.5) <= 0.2
    assert np.mean(sl + rl) > 3.5
    assert np.all(tl["sokolow_mv"] > tn["sokolow_mv"])


def test_axis_and_r_wave_progression():
    axes = np.array([-45.0, 0.0, 60.0, 120.0])
    sig, truth = simulate_ecg(make_params(axes.size, axis_deg=axes), np.random.default_rng(15))

    def net_qrs(k, lead):
        beat = average_beat(sig[k, :, L[lead]].astype(float), truth_peaks(truth, k), 20, 20)
        return np.sum(beat[15:26] - beat[12:15].mean())  # baseline: PR segment (-80..-60 ms)

    for k, ax in enumerate(axes):
        # frontal axis from the net QRS in I and aVF (aVF lead vector has length sqrt(3)/2)
        est = np.degrees(np.arctan2(net_qrs(k, "aVF") / (np.sqrt(3) / 2), net_qrs(k, "I")))
        assert abs(est - ax) < 20.0, (ax, est)
        assert abs(truth["qrs_axis_deg"][k] - ax) < 10.0
    # R-wave progression at a normal axis: rS in V1, dominant R in V5/V6
    k = 2
    assert net_qrs(k, "V1") < 0
    assert net_qrs(k, "V5") > 0 and net_qrs(k, "V6") > 0

    # the net QRS grows from V1 to V5 (transition between V2 and V5) and V1 shows a small r only
    assert net_qrs(k, "V1") < net_qrs(k, "V3") < net_qrs(k, "V5")
    v1 = average_beat(sig[k, :, L["V1"]].astype(float), truth_peaks(truth, k), 20, 20)
    v5 = average_beat(sig[k, :, L["V5"]].astype(float), truth_peaks(truth, k), 20, 20)
    r_v1 = v1[15:26].max() - v1[12:15].mean()
    s_v1 = v1[12:15].mean() - v1[15:26].min()
    assert r_v1 < 0.5 * s_v1
    assert r_v1 < 0.5 * (v5[15:26].max() - v5[12:15].mean())


def test_qt_scales_with_rr():
    _, slow = simulate_ecg(make_params(3, heart_rate=50.0), np.random.default_rng(16))
    _, fast = simulate_ecg(make_params(3, heart_rate=120.0), np.random.default_rng(16))
    assert np.all(slow["qt_ms"] > fast["qt_ms"] + 60)
    np.testing.assert_allclose(slow["qtc_ms"], fast["qtc_ms"], rtol=0.02)  # Bazett-corrected equal


# ------------------------------------------------------------------------------------------------
# input validation
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda p: p.pop("qrs_ms"), "qrs_ms"),
        (lambda p: p.pop("af"), "af"),
        (lambda p: p.__setitem__("st_mv", np.zeros(3)), r"st_mv.*length 4"),
        (lambda p: p.__setitem__("heart_rate", np.array([70.0, 300.0, 70.0, 70.0])), r"heart_rate.*20.*250"),
        (lambda p: p.__setitem__("heart_rate", np.array([70.0, 10.0, 70.0, 70.0])), "heart_rate"),
        (lambda p: p.__setitem__("st_territory", np.array([0, 1, 5, 2])), "st_territory"),
        (lambda p: p.__setitem__("lvh", np.array([0.0, -1.0, 0.0, 0.0])), "lvh"),
        (lambda p: p.__setitem__("axis_deg", np.array([0.0, np.nan, 0.0, 0.0])), "axis_deg"),
        (lambda p: p.__setitem__("qrs_ms", np.full((4, 1), 90.0)), r"qrs_ms.*1-D"),
        (lambda p: p.__setitem__("af", np.array(["yes", "no", "no", "no"])), "af"),
    ],
)
def test_bad_input_names_the_parameter(mutate, match):
    p = make_params(4)
    mutate(p)
    with pytest.raises(ValueError, match=match):
        simulate_ecg(p, np.random.default_rng(0))


def test_bad_options():
    with pytest.raises(ValueError, match="fs"):
        simulate_ecg(make_params(2), np.random.default_rng(0), fs=0)
    with pytest.raises(ValueError, match="seconds"):
        simulate_ecg(make_params(2), np.random.default_rng(0), seconds=-1.0)
    with pytest.raises(ValueError, match="chunk"):
        simulate_ecg(make_params(2), np.random.default_rng(0), chunk=0)
    with pytest.raises(ValueError, match="rng"):
        simulate_ecg(make_params(2), 0)
