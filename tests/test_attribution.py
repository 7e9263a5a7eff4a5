"""Chapter 08's lab (:mod:`mmlib.attribution`): switching a knob changes only what it claims to; the fast path
(tables in memory, the loader's fields derived from them) equals the full path (files written and loaded); with
every knob off the signed estimands cover 0, and a planted bias is found with its sign by the estimand that
conditions on the truth; the tables have the expected shape."""
from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mmlib import attribution as A
from mmlib import metrics, train
from mmlib.data import load_cohort
from mmlib.data.races import race_binary_of
from mmlib.data.synth import generate
from mmlib.schema import MODALITIES, display_name

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


def _lab(name: str, settings, fields_of: dict, truth_of: dict, stays: pd.DataFrame, target: str, mods,
         patients: int):
    """A :class:`mmlib.attribution.Lab` of one cohort from each setting's loader fields (``fields_of``) and latent
    truth (``truth_of``) on chapter 01's ``stays`` (split, race_binary, gender), with numeric stand-ins for the
    embeddings and the structured fields the probe reads; stays some setting leaves without a target are left out."""
    frame = pd.DataFrame({"split": stays["split"].astype(str), "race": stays["race_binary"].astype(str),
                          "gender": stays["gender"].astype(str)}, index=stays.index)
    frame["race_gender"] = frame["race"] + " " + frame["gender"]
    per = {}
    for s in settings:
        if s.label == A.RETRAINED:
            per[s.label] = replace(per[A.ALL_OFF], setting=s)
            continue
        fields = fields_of[s.label]
        x, mask = _numeric_inputs(fields, mods)
        y = fields["targets"][target].to_numpy(float)
        data = train.FusionData(name, target, mods, x, mask, y, frame, pd.DataFrame(),
                                truth=A._truth(truth_of[s.label], target, stays.index, name))
        per[s.label] = A.LabCohort(name, s, data, {m: pd.Index([]) for m in mods},
                                   structured=A.structured_fields(fields, stays.index))
    keep = np.ones(len(stays), bool)
    for lc in per.values():
        keep &= ~np.isnan(lc.data.y)
    for label, lc in per.items():
        if label != A.RETRAINED:
            lc.data = A._subset(lc.data, keep)
    per[A.RETRAINED].data = per[A.ALL_OFF].data
    return A.Lab({name: per}, settings, {name: int((~keep).sum())}, 0.0, {}, {name: patients},
                 {name: int((frame["split"] == "test").sum())})


@pytest.fixture(scope="module")
def small_lab(tmp_path_factory):
    """An MDS-ED lab of 2,400 stays (all off, retrained, under-triage and label bias strong, as built) through the
    real generator, loader, field derivation, training, resamples and estimands; numeric stand-ins for the
    embeddings (arrival, vitals, labs); the structured probe beside the paper's model."""
    root = tmp_path_factory.mktemp("biglab")
    path, _ = generate("mds_ed", {"n": 2400, "seed": 11}, data_dir=root, progress=False)
    base = load_cohort("mds_ed", path, progress=False)
    gen = A.generator_params(base)
    settings = A.lab_settings(gen["bias_knobs"], ["under_triage", "label_bias"], scales=(3.0,))
    fields_of, truth_of = {}, {}
    for s in settings:
        if s.label != A.RETRAINED:
            tables, truth_of[s.label] = A.simulate("mds_ed", gen, s.knob_dict)
            fields_of[s.label] = A.cohort_fields(base, tables)
    lab = _lab("mds_ed", settings, fields_of, truth_of, base.stays, base.primary_target, ["arrival", "vitals", "labs"],
               2400)
    cfg = train.TrainConfig(max_epochs=15, patience=3)
    runs = A.train_lab(lab, ["paper"], [0], cfg, n_jobs=1, probe=True)
    return lab, runs, A.evaluate(lab, runs, n_boot=200)


def test_all_off_intervals_cover_zero(small_lab):
    _, _, ev = small_lab
    null = A.null_table(ev)
    rows = null[null["estimand"].isin([A.ESTIMANDS[k] for k in ("risk_shift|truth", "label_shift|truth",
                                                                "tpr_signed|truth", "dp_signed|recorded")])]
    assert len(rows[rows["model"].isin(["paper", A.DATA_MODEL])]) == 4 and len(rows[rows["model"] == A.PROBE]) == 3
    assert (rows["covers 0"] == "yes").all(), rows
    probe = null[null["model"] == A.PROBE]
    assert (probe["training SD (one model)"] == 0).all(), "the probe is deterministic: retraining adds no noise"


def test_planted_effects_are_recovered_with_their_sign(small_lab):
    """Under-triage ×3 lowers the model's risk at equal need for non-White stays, label bias ×3 the recorded label at
    equal need: both with the injected (negative) sign and a 95% CI excluding 0, as the knob's paired effect and as
    the strong cohort's own estimate; the model, which cannot see race, does not inherit the label bias."""
    _, _, ev = small_lab
    full = A.recovery_table(ev, 3.0)
    rec = full[full["model"].isin(["paper", A.DATA_MODEL])].set_index("knob")
    assert rec.loc["under_triage", "estimand"] == A.ESTIMANDS["risk_shift|truth"]
    assert rec.loc["label_bias", "estimand"] == A.ESTIMANDS["label_shift|truth"]
    for knob in ("under_triage", "label_bias"):
        assert rec.loc[knob, "recovered"] == "yes" and rec.loc[knob, "audit sees it"] == "yes", rec.loc[knob]
        assert rec.loc[knob, "null covered"] == "yes"
    t = ev.table[ev.table["model"].isin(["paper", A.DATA_MODEL])]
    shift = t[(t.setting == "under_triage ×3") & (t.estimand == "risk_shift|truth")].iloc[0]
    assert shift.value < 0 and shift.ci_high < 0 and shift.ci_low <= shift.value <= shift.ci_high
    assert shift.change_high < 0 and shift.se_train > 0, "the interval includes the training noise"
    inherited = t[(t.setting == "label_bias ×3") & (t.estimand == "risk_shift|truth")].iloc[0]
    assert inherited.change_low <= 0 <= inherited.change_high
    # the structured probe reads under-triage from the fields (the acuity), with its sign
    probe = full[(full["model"] == A.PROBE)].set_index("knob")
    assert probe.loc["under_triage", "recovered"] == "yes" and probe.loc["under_triage", "estimand"] == \
        A.ESTIMANDS["risk_shift|truth"]
    side = A.recovery_by_path(full)
    assert list(side.columns) == ["the structured fields (probe)", "the notes (paper)"]
    assert side.loc[("MIMIC-IV-Ext-MDS-ED", "under_triage"), "the structured fields (probe)"].endswith("(recovered)")


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
    assert set(wide.index.get_level_values("model")) == {"paper", A.PROBE, A.DATA_MODEL}
    power = A.power_table(ev, {"ci": 400, "demo": 4500, "full": None}, A.test_share(lab))
    assert {"slope per ×1", "se (all off)", "demo: smallest scale", "demo: test stays", "test stays for ×1"} <= set(power.columns)
    row = power[(power.knob == "under_triage") & (power.estimand == A.ESTIMANDS["risk_shift|truth"])
                & (power.model == "paper")].iloc[0]
    assert row["slope per ×1"] < 0 and np.isfinite(row["demo: smallest scale"])
    assert row["ci: smallest scale"] > row["demo: smallest scale"], "a smaller cohort detects only larger effects"
    assert len(A.mde_curve(power)) > 0
    page = A.power_display(power, "demo", ["paper", A.DATA_MODEL])
    assert list(page.index.names) == ["cohort", "knob", "estimand"] and page.index.is_unique
    assert list(page.columns) == ["response per ×1 [95% CI]", "smallest scale (demo)", "test stays for ×1"]
    assert page.loc[("MIMIC-IV-Ext-MDS-ED", "under_triage", A.ESTIMANDS["risk_shift|truth"]),
                    "smallest scale (demo)"].startswith("×")
    assert "probe" not in " ".join(page.index.get_level_values("estimand")), "other models go to the CSV only"
    assert "smallest scale (ci)" not in A.power_display(power, "workshop", ["paper"]).columns, "no size, no column"
    text = A.answers(ev, A.recovery_table(ev, 3.0), A.null_table(ev), power, 3.0, profile="demo", lead_model="paper")
    assert "under_triage" in text and "recovered" in text and "With every knob off" in text
    path = next(p for p in text.split("\n\n") if p.startswith("**Through the fields or through the notes? MIMIC-IV-Ext-MDS-ED**"))
    assert "`under_triage` ×3: through the structured fields the risk shift moves by" in path
    assert "`label_bias`" not in path, "label bias acts on the outcome, not on the fields"
    bare = [text[max(0, m.start() - 60):m.end() + 20] for m in
            re.finditer(r"(?<![`\w])(" + "|".join(A.KNOBS) + r")(?![`\w])", text)]
    assert not bare, f"knobs are parameter names, marked as code in the sentences: {bare[:5]}"
    assert A.setting_in_prose("unequal_access ×3") == "`unequal_access` ×3" and A.setting_in_prose("all off") == "all off"


@pytest.fixture(scope="module")
def null_replicates():
    """Twelve independent null MDS-ED labs of about 500 patients each (one 6,000-patient simulation with every knob
    off, its stays dealt to twelve disjoint labs, 40% of them test stays), each with under-triage ×3 planted on the
    same stays: the loader's derivation from the tables in memory, the structured probe as the model, the lab's
    resamples and estimands."""
    from mmlib.data.mds_ed import cohort_from_table

    n, reps, target = 6000, 12, "deterioration_icu_24h"
    gen = {"n": n, "seed": 21}
    settings = A.lab_settings({}, ["under_triage"], scales=(3.0,))
    settings = [s for s in settings if s.label != A.AS_BUILT]
    derived, truths = {}, {}
    for s in settings:
        if s.label != A.RETRAINED:
            tables, truths[s.label] = A.simulate("mds_ed", gen, s.knob_dict)
            derived[s.label] = cohort_from_table(A._as_read(tables["mds_ed.csv"], target), 1.5, target,
                                                 split_fractions=(0.5, 0.1, 0.4))
    stays = derived[A.ALL_OFF]["stays"]
    stays = stays.assign(race_binary=stays["race_raw"].map(race_binary_of))
    out = []
    for k in range(reps):
        ids = stays.index[k::reps]
        fields_of = {label: {"modalities": {m: f.reindex(ids) for m, f in d["modalities"].items()},
                             "availability": d["availability"].reindex(ids).fillna(False).astype(bool),
                             "targets": d["stays"][d["targets"]].reindex(ids)}
                     for label, d in derived.items()}
        lab = _lab("mds_ed", settings, fields_of, truths, stays.loc[ids], target, ["arrival", "vitals", "labs"], n)
        preds, log = A.train_probe(lab)
        runs = A.LabRuns(preds, log, 0.0)
        out.append(A.evaluate(lab, runs, n_boot=200, seed=k, min_events=5))
    return out


def test_null_lab_intervals_cover_zero_at_their_nominal_rate(null_replicates):
    """Issue 14's null cohort, book level: with every knob off, the lab's signed intervals (TPR and DP gaps against
    the recorded label, the TPR gap against the truth, the risk shift at equal need, and the data's label shift)
    cover 0 at about their nominal 95% over independent labs, and each contains its estimate; the paper's max - min
    gaps, which cannot be below 0, do not (their interval sits above 0)."""
    rows = pd.concat([ev.table[ev.table["setting"] == A.ALL_OFF] for ev in null_replicates])
    signed = rows[rows["estimand"].isin(["tpr_signed|recorded", "dp_signed|recorded", "tpr_signed|truth",
                                         "risk_shift|truth", "label_shift|truth"])]
    assert len(signed) == 5 * len(null_replicates), signed.groupby("estimand").size()
    covers = (signed["ci_low"] <= 0) & (0 <= signed["ci_high"])
    assert 0.85 <= covers.mean() <= 1.0, signed.assign(covers=covers)[["estimand", "value", "ci_low", "ci_high", "covers"]]
    by = covers.groupby(signed["estimand"]).mean()
    assert (by >= 0.75).all(), by
    inside = (signed["ci_low"] <= signed["value"]) & (signed["value"] <= signed["ci_high"])
    assert inside.all(), signed[~inside]
    paper = rows[rows["estimand"].isin(["tpr_diff|recorded", "dp_diff|recorded"])]
    assert (paper["value"] >= 0).all() and ((paper["ci_low"] <= 0) & (0 <= paper["ci_high"])).mean() < 0.5


def test_planted_effect_is_recovered_with_its_sign_across_labs(null_replicates):
    """Under-triage ×3 planted on the same stays: the probe's risk shift at equal need moves down (the injected
    sign) in most labs, clearly in some, and never clearly up; the mean change is well below 0."""
    ch = pd.concat([ev.table[(ev.table["setting"] == "under_triage ×3") & (ev.table["estimand"] == "risk_shift|truth")
                             & (ev.table["model"] == A.PROBE)] for ev in null_replicates])
    assert len(ch) == len(null_replicates)
    assert (ch["change"] < 0).mean() >= 0.8, ch[["change", "change_low", "change_high"]]
    assert (ch["change_high"] < 0).mean() >= 0.25 and not (ch["change_low"] > 0).any(), ch
    assert ch["change"].mean() < -2 * ch["change"].std() / np.sqrt(len(ch))


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


def test_attribution_forests_and_power_figures_are_chapter_08s_loops(small_lab):
    """plots.attribution_forests and plots.power_figures (chapter 08) draw, cohort by cohort, the figures chapter 08
    drew in its loops: the same titles, captions and pixels."""

    import matplotlib

    matplotlib.use("Agg")
    from mmlib import plots

    from figure_bytes import png  # tests/figure_bytes.py

    lab, _, ev = small_lab
    table = A.display_first(ev.table)
    forests = plots.attribution_forests(table, list(lab.cohorts), A.FOREST_ESTIMANDS, ["paper"])
    before = [plots.attribution_forest(table, n, A.FOREST_ESTIMANDS, ["paper"],
                                       title=f"{display_name(n)}: change from all knobs off (non-White − White), 95% CI")
              for n in lab.cohorts]
    sizes = {"ci": 400, "demo": 4500, "full": None}
    power = A.power_table(ev, sizes, A.test_share(lab))
    curve = A.mde_curve(power[power["model"].isin(["paper", A.DATA_MODEL])], power=0.8)
    figs = plots.power_figures(curve, sizes, A.test_share(lab), power=0.8, model="paper", strong=3.0,
                               knobs=["under_triage", "label_bias"])
    for n in lab.cohorts:
        marks = {p: v * A.test_share(lab)[n] for p, v in sizes.items() if v}
        before.append(plots.power_curves(curve[curve["cohort"] == display_name(n)], marks, strong=3.0,
                                         knobs=["under_triage", "label_bias"],
                                         title=f"{display_name(n)}: smallest injected effect detected with 80% power "
                                               "(paper model; data-level measures)"))
    assert len(forests) == len(figs) == len(lab.cohorts) >= 1
    for new, old in zip(forests + figs, before):
        assert plots.figure_text(new) == plots.figure_text(old) and png(new) == png(old)
