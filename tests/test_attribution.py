"""Chapter 08's lab (:mod:`mmlib.attribution`): switching a knob changes only what it claims to; the fast path
(tables in memory, the loader's fields derived from them) equals the full path (files written and loaded); with
every knob off the signed estimands cover 0, and a planted bias is found with its sign by the estimand that
conditions on the truth; the tables have the expected shape."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmlib import attribution as A
from mmlib import metrics, train
from mmlib.data import load_cohort
from mmlib.data.synth import generate
from mmlib.schema import MODALITIES

OFF = {k: 0.0 for k in A.KNOBS}


def _strong(knob: str, scale: float = 3.0) -> dict:
    return OFF | {knob: scale}


# ------------------------------------------------------------------------------------ the knobs' reach
@pytest.mark.parametrize("cohort", ["mimic_eye", "mds_ed"])
def test_switching_a_knob_leaves_rendered_inputs_byte_identical(cohort):
    """Every knob draws from its own stream: the X-ray and ECG renderers' inputs (so the pixels and signals) are the
    same whatever the knobs, which is why chapter 08 reuses chapter 02's X-ray and ECG reports."""
    from mmlib.data.synth import mds_ed_tables, mimic_eye_tables
    from mmlib.data.latent import BiasKnobs

    make = mimic_eye_tables if cohort == "mimic_eye" else mds_ed_tables
    ref = make(250, 3, BiasKnobs(**OFF))
    for knob in A.KNOBS:
        st = make(250, 3, BiasKnobs(**_strong(knob)))
        pd.testing.assert_frame_equal(st.render, ref.render, check_exact=True)
        if cohort == "mds_ed":  # which ECG each row has, and when
            cols = ["general_data", "general_ecg_time", "general_ed_stay_id", "general_ecg_no_within_stay"]
            pd.testing.assert_frame_equal(st.tables["mds_ed.csv"][cols], ref.tables["mds_ed.csv"][cols])


# ---------------------------------------------------------------------------- fast path == full path
@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Small cohorts generated and loaded by the full path (files with images and ECGs, :func:`load_cohort`): the
    as-built knobs (every knob at 1) and every knob strong alone."""
    root = tmp_path_factory.mktemp("lab")
    out = {}
    for cohort in ("mimic_eye", "mds_ed"):
        for label, knobs in [("built", {}), *[(k, _strong(k)) for k in A.KNOBS]]:
            params = {"n": 120, "seed": 5, "bias_knobs": knobs} | ({"image_size": 64} if cohort == "mimic_eye" else {})
            path, _ = generate(cohort, params, data_dir=root, progress=False)
            out[(cohort, label)] = load_cohort(cohort, path, progress=False, bad_files="error")
    return out


@pytest.mark.parametrize("cohort", ["mimic_eye", "mds_ed"])
def test_fields_from_tables_equal_the_loaded_cohort(written, cohort):
    """For the as-built knobs and for every knob strong, the fields chapter 08 derives from the regenerated tables
    are what the loader reads from the written files: every modality's frame, availability and target."""
    base = written[(cohort, "built")]
    gen = A.generator_params(base)
    A.check_fields(base, A.cohort_fields(base, A.simulate(cohort, gen, gen["bias_knobs"])[0]))
    for knob in A.KNOBS:
        full = written[(cohort, knob)]
        fields = A.cohort_fields(base, A.simulate(cohort, gen, _strong(knob))[0])
        common = base.stays.index.intersection(full.stays.index)
        assert len(common) > 0.9 * len(base.stays)
        for m, frame in fields["modalities"].items():
            cols = [c for c in frame.columns if c != "study_time"]
            changed = A.changed_rows(frame.loc[common, cols], full.modalities[m].loc[common])
            assert not changed.any(), (knob, m, changed[changed].index[:3].tolist())
        assert (fields["availability"].loc[common] == full.availability.loc[common]).all().all(), knob
        y, yf = fields["targets"][base.primary_target].loc[common], full.stays.loc[common, base.primary_target]
        assert ((y == yf) | (y.isna() & yf.isna())).all(), knob


def test_new_texts_are_the_writers_texts_of_the_loaded_cohort(written):
    """Chapter 08 rewrites only the notes whose fields changed, reuses chapter 02's others, and reads an X-ray a
    setting gains: the result equals :func:`mmlib.text.cohort_texts` of the cohort loaded from the written files."""
    from mmlib.text import cohort_texts

    base = written[("mimic_eye", "built")]
    base_texts = cohort_texts(base)
    gen = A.generator_params(base)
    for knob in ("under_triage", "spo2_overread", "unequal_access"):
        full = written[("mimic_eye", knob)]
        texts, new, _ = A._new_texts(base, A.cohort_fields(base, A.simulate("mimic_eye", gen, _strong(knob))[0]),
                                     base_texts, A.TextOptions())
        want = cohort_texts(full)
        common = base.stays.index.intersection(full.stays.index)
        for m in MODALITIES["mimic_eye"]:
            assert texts.loc[common, m].equals(want.loc[common, m]), (knob, m)
        assert len(new["codes"]) == 0, "no knob changes the earlier-admission codes"
    off_texts, new, read = A._new_texts(base, A.cohort_fields(base, A.simulate("mimic_eye", gen, OFF)[0]),
                                        base_texts, A.TextOptions())
    assert read == len(new["cxr"]) > 0, "with access equal, X-rays the as-built cohort lacked are read"


# ------------------------------------------------------------------ estimands: null covered, bias recovered
def _numeric_inputs(fields: dict, modalities, dim: int = 12):
    """Stand-in embeddings for the statistical tests (the encoder is not what they test): each modality's numeric
    fields, standardised, missing as 0, padded to ``dim`` columns; absent modalities masked."""
    xs, masks = [], []
    for m in modalities:
        f = fields["modalities"][m].select_dtypes("number")
        v = ((f - f.mean()) / f.std().replace(0, 1)).fillna(0).to_numpy(float)[:, :dim]
        xs.append(np.pad(v, ((0, 0), (0, dim - v.shape[1]))))
        masks.append(fields["availability"][m].to_numpy(bool))
    x, mask = np.stack(xs, 1).astype(np.float32), np.stack(masks, 1)
    x[~mask] = 0
    return x, mask


@pytest.fixture(scope="module")
def small_lab(tmp_path_factory):
    """An MDS-ED lab of 2,400 stays (all off, retrained, under-triage and label bias strong, as built) through the
    real generator, loader, field derivation, training, resamples and estimands; numeric stand-ins for the
    embeddings (arrival, vitals, labs)."""
    root = tmp_path_factory.mktemp("biglab")
    path, _ = generate("mds_ed", {"n": 2400, "seed": 11}, data_dir=root, progress=False)
    base = load_cohort("mds_ed", path, progress=False)
    gen = A.generator_params(base)
    settings = A.lab_settings(gen["bias_knobs"], ["under_triage", "label_bias"], scales=(3.0,))
    mods = ["arrival", "vitals", "labs"]
    st = base.stays
    frame = pd.DataFrame({"split": st["split"].astype(str), "race": st["race_binary"].astype(str),
                          "gender": st["gender"].astype(str)}, index=st.index)
    frame["race_gender"] = frame["race"] + " " + frame["gender"]
    per = {}
    for s in settings:
        if s.label == A.RETRAINED:
            per[s.label] = A.LabCohort("mds_ed", s, per[A.ALL_OFF].data, {m: pd.Index([]) for m in mods})
            continue
        tables, truth = A.simulate("mds_ed", gen, s.knob_dict)
        fields = A.cohort_fields(base, tables)
        x, mask = _numeric_inputs(fields, mods)
        y = fields["targets"][base.primary_target].to_numpy(float)
        data = train.FusionData("mds_ed", base.primary_target, mods, x, mask, y, frame, pd.DataFrame(),
                                truth=A._truth(truth, base.primary_target, st.index, "mds_ed"))
        per[s.label] = A.LabCohort("mds_ed", s, data, {m: pd.Index([]) for m in mods})
    keep = np.ones(len(st), bool)
    for lc in per.values():
        keep &= ~np.isnan(lc.data.y)
    for label, lc in per.items():
        if label != A.RETRAINED:
            lc.data = A._subset(lc.data, keep)
    per[A.RETRAINED].data = per[A.ALL_OFF].data
    lab = A.Lab({"mds_ed": per}, settings, {"mds_ed": int((~keep).sum())}, 0.0, {}, {"mds_ed": 2400},
                {"mds_ed": int((frame["split"] == "test").sum())})
    cfg = train.TrainConfig(max_epochs=15, patience=3)
    runs = A.train_lab(lab, ["paper"], [0], cfg, n_jobs=1)
    return lab, runs, A.evaluate(lab, runs, n_boot=200)


def test_all_off_intervals_cover_zero(small_lab):
    _, _, ev = small_lab
    null = A.null_table(ev)
    rows = null[null["estimand"].isin([A.ESTIMANDS[k] for k in ("risk_shift|truth", "label_shift|truth",
                                                                "tpr_signed|truth", "dp_signed|recorded")])]
    assert len(rows) == 4
    assert (rows["covers 0"] == "yes").all(), rows


def test_planted_effects_are_recovered_with_their_sign(small_lab):
    """Under-triage ×3 lowers the model's risk at equal need for non-White stays, label bias ×3 the recorded label at
    equal need: both with the injected (negative) sign and a 95% CI excluding 0, as the knob's paired effect and as
    the strong cohort's own estimate; the model, which cannot see race, does not inherit the label bias."""
    _, _, ev = small_lab
    rec = A.recovery_table(ev, 3.0).set_index("knob")
    assert rec.loc["under_triage", "estimand"] == A.ESTIMANDS["risk_shift|truth"]
    assert rec.loc["label_bias", "estimand"] == A.ESTIMANDS["label_shift|truth"]
    for knob in ("under_triage", "label_bias"):
        assert rec.loc[knob, "recovered"] == "yes" and rec.loc[knob, "audit sees it"] == "yes", rec.loc[knob]
        assert rec.loc[knob, "null covered"] == "yes"
    t = ev.table
    shift = t[(t.setting == "under_triage ×3") & (t.estimand == "risk_shift|truth")].iloc[0]
    assert shift.value < 0 and shift.ci_high < 0 and shift.ci_low <= shift.value <= shift.ci_high
    assert shift.change_high < 0 and shift.se_train > 0, "the interval includes the training noise"
    inherited = t[(t.setting == "label_bias ×3") & (t.estimand == "risk_shift|truth")].iloc[0]
    assert inherited.change_low <= 0 <= inherited.change_high


def test_attribution_recovery_and_power_tables_have_their_shape(small_lab):
    lab, runs, ev = small_lab
    t = ev.table
    assert {"cohort", "setting", "knob", "scale", "model", "estimand", "group", "value", "ci_low", "ci_high", "se",
            "change", "change_low", "change_high"} <= set(t.columns)
    assert set(t["setting"]) == {s.label for s in lab.settings}
    off = t[t.setting == A.ALL_OFF]
    assert np.allclose(off["change"], 0) and (off["change_low"] == 0).all(), "all off minus itself is exactly 0"
    wide = A.attribution_table(ev)
    assert list(wide.index.names) == ["cohort", "model", "setting"]
    assert set(wide.index.get_level_values("setting")) == {"under_triage ×3", "label_bias ×3"}
    assert {A.ESTIMANDS["tpr_signed|recorded"], A.ESTIMANDS["risk_shift|truth"],
            A.ESTIMANDS["label_shift|truth"]} <= set(wide.columns)
    assert set(wide.index.get_level_values("model")) == {"paper", A.DATA_MODEL}
    power = A.power_table(ev, {"ci": 400, "demo": 4500, "full": None}, A.test_share(lab))
    assert {"slope per ×1", "se (all off)", "demo: smallest scale", "demo: test stays", "test stays for ×1"} <= set(power.columns)
    row = power[(power.knob == "under_triage") & (power.estimand == A.ESTIMANDS["risk_shift|truth"])].iloc[0]
    assert row["slope per ×1"] < 0 and np.isfinite(row["demo: smallest scale"])
    assert row["ci: smallest scale"] > row["demo: smallest scale"], "a smaller cohort detects only larger effects"
    assert len(A.mde_curve(power)) > 0
    text = A.answers(ev, A.recovery_table(ev, 3.0), A.null_table(ev), power, 3.0, profile="demo")
    assert "under_triage" in text and "recovered" in text and "With every knob off" in text


# ------------------------------------------------------------------------------------ hand-made estimands
def test_documentation_gap_and_label_shift_by_hand():
    groups = np.array(["White"] * 4 + ["non-White"] * 4)
    findings = np.array([[1, 0], [1, 1], [0, 0], [1, 0], [1, 0], [1, 1], [0, 0], [1, 0]], float)
    labels = np.array([[1, 0], [1, 1], [0, 0], [1, 0], [0, 0], [1, 0], [0, 0], [np.nan, 0]], float)
    # White: 4 of 4 true findings documented; non-White: 1 of 3 defined ones
    assert A.documentation_gap(labels, findings, groups, "non-White", "White")[0] == pytest.approx(1 / 3 - 1)
    rng = np.random.default_rng(0)
    n = 20000
    g = rng.choice(["White", "non-White"], n)
    need = rng.normal(0, 1, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(need - 0.8 * (g == "non-White"))))).astype(float)
    shift = metrics.label_shift(y, g, need, "non-White", "White")[0]
    assert -0.2 < shift < -0.1, "lower recorded outcome at equal need"
    y0 = (rng.random(n) < 1 / (1 + np.exp(-need))).astype(float)
    assert abs(metrics.label_shift(y0, g, need, "non-White", "White")[0]) < 0.02


def test_figures_have_titles_and_labelled_axes(small_lab):
    import matplotlib

    matplotlib.use("Agg")
    from mmlib import plots

    lab, _, ev = small_lab
    fig = plots.attribution_forest(ev.table, "mds_ed", A.FOREST_ESTIMANDS, ["paper"], title="forest")
    axes = [ax for ax in fig.axes if ax.get_xlabel()]
    assert fig._suptitle.get_text() == "forest" and len(axes) >= 4
    assert all("change (" in ax.get_xlabel() for ax in axes) and axes[0].get_ylabel()
    power = A.power_table(ev, {"ci": 400, "demo": 4500}, A.test_share(lab))
    fig2 = plots.power_curves(A.mde_curve(power), {"demo": 900}, strong=3.0, knobs=["under_triage", "label_bias"])
    assert fig2.axes[0].get_ylabel().startswith("smallest detectable") and fig2.axes[0].get_xlabel() == "test stays"
    assert any(line.get_label().startswith("risk shift") for line in fig2.axes[0].get_lines())
