"""Where does the unfairness come from? The bias knobs of the synthetic cohorts switched on one at a time,
the models retrained, and every gap measured against the recorded label and against the truth (chapter 08).

The synthetic cohorts are a lab whose truth is known: each bias knob of :class:`mmlib.data.latent.BiasKnobs`
distorts one thing the real data are known to distort (the pulse oximeter's reading, the triage acuity, the
X-ray labels, which modalities are recorded, the recorded outcome). Chapter 08 starts from a cohort with every
knob off and switches each knob on alone, at its default size (1) and strong (``strong_scale``, 3 by default),
next to the cohort as chapter 01 built it; for every setting it rebuilds what the knob changes, retrains the
fusion models on all modalities and measures

- the signed race gaps of the models' decisions (:data:`mmlib.metrics.SIGNED`) against the recorded label and
  against the label without label bias, and the paper's max - min gaps;
- the risk shift at equal true need (:func:`mmlib.metrics.risk_shift`): the group difference in predicted
  log-odds between stays of equal true need, the estimand the input knobs inject;
- the two effects no model can carry because they act on labels: the recorded label's shift at equal need
  (:func:`mmlib.metrics.label_shift`, label bias) and the documentation of true X-ray findings in the
  CheXpert labels (:func:`documentation_gap`, X-ray under-documentation).

What is rebuilt and what is reused (:class:`LabCohort`, :func:`build_lab`):

- **tables only**: a setting's cohort is the simulator's tables (:func:`mmlib.data.synth.mimic_eye_tables`,
  :func:`~mmlib.data.synth.mds_ed_tables`, and MIMIC-Eye's release around them,
  :func:`mmlib.data.synth_mimic_eye.release_tables`), regenerated in memory with the setting's knobs and the
  generator parameters chapter 01 used (its ``synthetic_params.json``). No X-ray or ECG is rendered and nothing
  is written: every knob draws from its own named random stream, so switching it changes only what it claims
  to, and the rendered inputs stay byte-identical (``tests/test_attribution.py`` checks this).
- **the loader's fields** of the changed tables are derived by the loader's own derivation from in-memory
  tables (:func:`cohort_fields`: :func:`mmlib.data.mimic_eye.cohort_from_tables`,
  :func:`mmlib.data.mds_ed.cohort_from_table`, which :func:`mmlib.data.load_cohort` runs on the files it reads);
  the as-built setting must give chapter 01's fields exactly, or the chapter stops (:func:`check_fields`: the
  regenerated tables are the ones chapter 01 wrote), and the full path -- files written, loaded and
  transcribed -- is compared with it in the tests;
- **texts** are written by :func:`mmlib.text.structured_notes` only for stays whose fields changed; every other
  text is chapter 02's. X-ray reports are chapter 02's; an X-ray that a setting has and chapter 01's cohort
  lacks (unequal access) is transcribed by :func:`mmlib.text.transcribe_cxr` from chapter 01's image file (the
  same pixels). ECG reports are chapter 02's (no knob changes an ECG or whether it is recorded; checked);
- **embeddings** of the new texts come from :func:`mmlib.embed.embed_texts` with chapter 02's encoder
  settings and shared cache (byte-identical to what chapter 02 would compute); every other row is chapter 02's;
- the **models** are :func:`mmlib.train.run_grid`'s; a setting whose inputs and labels are byte-identical to an
  earlier one's (e.g. X-ray under-documentation, which changes only X-ray labels no model is trained on) reuses
  its runs: retraining would give the same numbers;
- **resamples** are shared: every setting is evaluated on the same test stays with one stratified
  :class:`mmlib.metrics.Bootstrap` per cohort, so each change from all-off has a paired interval.

Stays: every setting keeps chapter 01's stays, split and demographics -- all of them, or ``stays`` of them drawn
once per cohort (:func:`lab_sample`, every split x race cell keeping its share), which is what bounds the
encoder's work on a CPU; a stay whose target a setting leaves undefined (a disposition that is neither admission
nor discharge home, an MDS-ED -999) is left out of every setting, so that all settings are compared on the same
stays (:attr:`Lab.dropped` counts them).

Uncertainty: every interval is a percentile interval of the test-set bootstrap (shared by the settings, so changes
are paired) to which the training noise of the models is added (:func:`evaluate`: its SD is measured by training
the all-off cohort again with :func:`retrain_seeds`). The recovery check (:func:`recovery_table`) reads each knob's
effect as the paired change from all off (what the lab can measure) and as the strong cohort's own estimate (what
an audit sees); the power analysis (:func:`power_table`) carries the SEs to the profiles' cohort sizes.

Used by chapter 08 only; the figures are :func:`mmlib.plots.attribution_forest` and :func:`mmlib.plots.power_curves`.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .data.latent import GROUP_EFFECTS, KNOB_DOCS, BiasKnobs
from .metrics import (REFERENCE, Bootstrap, ci95, estimable, label_shift, not_compared, risk_shift,
                      summarise_vectors)
from .schema import CXR_TARGETS, MODALITIES, PREDICTION_HOURS, TRUTH_OF_TARGET, display_name

#: The bias knobs, in :class:`~mmlib.data.latent.BiasKnobs` order.
KNOBS = tuple(BiasKnobs.__dataclass_fields__)
ALL_OFF = "all off"
#: All knobs off again, the models retrained with other seeds (:func:`retrain_seeds`): with all off's own trainings
#: they measure the training noise of one model, which the test-set bootstrap leaves out (:func:`evaluate`).
RETRAINED = "all off, retrained"
RETRAIN_SEED_OFFSET = 100


#: The cohort as chapter 01 built it (the profile's bias knobs).
AS_BUILT = "as built"


def retrain_seeds(seeds) -> list:
    """The seeds of the :data:`RETRAINED` setting: as many as ``seeds`` but at least two, from
    :data:`RETRAIN_SEED_OFFSET` on (so that all off's and these trainings give at least three)."""
    return [RETRAIN_SEED_OFFSET + i for i in range(max(2, len(list(seeds))))]

#: For each knob: what it distorts, the modality it enters through, the estimand that carries its injected effect
#: (group minus White; ``risk_shift``: the models' predicted log-odds at equal true need; ``label_shift``: the
#: recorded label at equal need; ``documentation_gap``: true X-ray findings documented in the labels) and the sign
#: that effect has when the knob is on (every knob disadvantages the groups of :data:`GROUP_EFFECTS`).
INJECTED = {
    "spo2_overread": {"enters": "vitals (SpO2 reads high)", "estimand": "risk_shift", "sign": -1},
    "under_triage": {"enters": "arrival (triage acuity)", "estimand": "risk_shift", "sign": -1},
    "cxr_underdocumentation": {"enters": "X-ray labels (CheXpert)", "estimand": "documentation_gap", "sign": -1},
    "unequal_access": {"enters": "which modalities are recorded", "estimand": "risk_shift", "sign": -1},
    "label_bias": {"enters": "the recorded outcome", "estimand": "label_shift", "sign": -1},
}

#: The estimands of the attribution table: (key, what it is measured against, label).
ESTIMANDS = {
    "tpr_signed|recorded": "signed TPR gap vs recorded label",
    "dp_signed|recorded": "signed DP (selection-rate) gap",
    "tpr_signed|truth": "signed TPR gap vs truth",
    "risk_shift|truth": "risk shift at equal need (log-odds)",
    "tpr_diff|recorded": "paper's TPR difference (max − min) vs recorded label",
    "dp_diff|recorded": "paper's DP difference (max − min)",
    "auroc|recorded": "AUROC vs recorded label",
    "label_shift|truth": "recorded label at equal need (probability)",
    "documentation_gap|truth": "true X-ray findings documented (probability)",
}
#: Estimands of the models (the others are of the data: the same for every model).
MODEL_ESTIMANDS = ("tpr_signed|recorded", "dp_signed|recorded", "tpr_signed|truth", "risk_shift|truth",
                   "tpr_diff|recorded", "dp_diff|recorded", "auroc|recorded")
DATA_ESTIMANDS = ("label_shift|truth", "documentation_gap|truth")
DATA_MODEL = "(data)"


# ------------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class Setting:
    """One cohort setting of the lab: ``label`` (``all off``, ``under_triage ×3``, ``as built``), the knob switched
    on alone (``None`` for all off and as built), its ``scale``, and every knob's scale (``knobs``)."""

    label: str
    knob: str | None
    scale: float
    knobs: tuple

    @property
    def knob_dict(self) -> dict:
        return dict(self.knobs)


def lab_settings(built_knobs: dict, knobs=KNOBS, scales=(1.0, 3.0)) -> list[Setting]:
    """The lab's settings: all knobs off (and again with other training seeds, :data:`RETRAINED`), each knob of
    ``knobs`` on alone at each of ``scales``, and the cohort as chapter 01 built it (``built_knobs``: its generator's
    bias knobs). Chapter 08."""
    bad = [k for k in knobs if k not in KNOBS]
    if bad:
        raise ValueError(f"parameter knobs: unknown {bad}; expected some of {list(KNOBS)}")
    if any(not isinstance(x, (int, float)) or not np.isfinite(x) or x <= 0 for x in scales):
        raise ValueError(f"parameter strong_scale: expected a number > 0 (the strong setting as a multiple of a "
                         f"knob's default size), got {list(scales)}")
    scales = sorted(set(float(x) for x in scales))
    off = {k: 0.0 for k in KNOBS}
    out = [Setting(ALL_OFF, None, 0.0, tuple(off.items())), Setting(RETRAINED, None, 0.0, tuple(off.items()))]
    for k in knobs:
        for s in scales:
            out.append(Setting(f"{k} ×{s:g}", k, float(s), tuple((off | {k: float(s)}).items())))
    built = BiasKnobs.from_dict(built_knobs).as_dict()
    out.append(Setting(AS_BUILT, None, float("nan"), tuple(built.items())))
    return out


def generator_params(cohort) -> dict:
    """The generator parameters chapter 01 made ``cohort`` with (its root's ``synthetic_params.json``). Raises for
    a real cohort: the lab regenerates synthetic cohorts only."""
    if not cohort.is_synthetic:
        raise ValueError(f"{display_name(cohort.name)} is real data: chapter 08 regenerates synthetic cohorts only")
    path = Path(cohort.root) / "synthetic_params.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; chapter 08 needs the generator parameters of chapter 01's "
                                "synthetic cohort (re-run chapter 01)")
    return json.loads(path.read_text())


def simulate(cohort_name: str, gen: dict, knobs: dict):
    """The simulator's tables of ``cohort_name`` with generator parameters ``gen`` and bias knobs ``knobs``, in
    memory, without rendering X-rays or ECGs: ``(tables, latent truth)``, the tables keyed by their path in the
    release, as the loader's derivation takes them (:func:`cohort_fields`). MIMIC-Eye: the release's per-patient
    tables (:func:`mmlib.data.synth_mimic_eye.release_tables`, over every patient) and
    ``spreadsheets/Hosp/patients.csv``; MDS-ED: ``mds_ed.csv``."""
    from .data.synth import mds_ed_tables, mimic_eye_tables
    from .data.synth_mimic_eye import release_tables
    from .schema import MIMIC_EYE_PATIENTS_CSV, MIMIC_EYE_SPREADSHEETS

    kn = BiasKnobs.from_dict(knobs)
    if cohort_name == "mimic_eye":
        st = mimic_eye_tables(gen["n"], gen["seed"], kn, gen.get("informativeness"), gen.get("race_mix"))
        rel = release_tables(st, gen["seed"], gen.get("image_size", 256))
        patients = rel["spreadsheets"][MIMIC_EYE_PATIENTS_CSV.removeprefix(MIMIC_EYE_SPREADSHEETS + "/")]
        return rel["tables"] | {MIMIC_EYE_PATIENTS_CSV: patients}, st.truth
    st = mds_ed_tables(gen["n"], gen["seed"], kn, gen.get("informativeness"), gen.get("race_mix"))
    return st.tables, st.truth


# --------------------------------------------------------------------------------- the loader's fields
def cohort_fields(cohort, tables: dict) -> dict:
    """The fields the loader gives the stays of chapter 01's ``cohort`` when the release holds ``tables`` (a
    setting's regenerated tables, :func:`simulate`), derived by the loader's own derivation --
    :func:`mmlib.data.mimic_eye.cohort_from_tables` (on the rows of the cohort's patients: the derivation is per
    patient) or :func:`mmlib.data.mds_ed.cohort_from_table` (on the table as the loader reads it back from the
    twin's CSV, :func:`_as_read`) -- with chapter 01's prediction time and splits: ``modalities``,
    ``availability`` and ``targets`` (every target column) for the stays of ``cohort``, and ``excluded``: the
    stays the derivation leaves out of this setting (e.g. a disposition that is neither admission nor home); they
    keep chapter 01's inputs (so no text of theirs is rewritten) and get no target, so :func:`build_lab` leaves
    them out of every setting. Raises when a knob changes a MIMIC-Eye patient's index stay or an MDS-ED stay's ECG
    record (chapter 02's reports would not be the setting's). Chapter 08."""
    from .data.mds_ed import cohort_from_table
    from .data.mimic_eye import cohort_from_tables

    ids = cohort.stays.index
    hours = float(cohort.info.get("prediction_hours", PREDICTION_HOURS[cohort.name]))
    where = f"{cohort.root} (regenerated by chapter 08)"
    if cohort.name == "mimic_eye":
        subjects = cohort.stays["subject_id"]
        out = cohort_from_tables({rel: df[df["subject_id"].isin(subjects)] for rel, df in tables.items()},
                                 np.sort(subjects.unique()), hours, where)
        moved = out["index_stays"].reindex(subjects).to_numpy() != ids.to_numpy()
        if moved.any():
            raise RuntimeError(f"chapter 08: the regenerated MIMIC-Eye release picks another index stay for "
                               f"{int(moved.sum())} patient(s) (e.g. subject {subjects[moved].iloc[0]}); a knob "
                               "changed more than its fields")
    else:
        out = cohort_from_table(_as_read(tables["mds_ed.csv"], cohort.primary_target), hours, cohort.primary_target,
                                cohort.info.get("split_fractions", (0.7, 0.1, 0.2)), where)
        rec = out["modalities"]["ecg"]["record"].reindex(ids)
        if (rec.notna() & (rec != cohort.modalities["ecg"]["record"])).any():
            raise RuntimeError("chapter 08: a knob changed which ECG a stay has; chapter 02's ECG reports cannot be "
                               "reused")
    kept = ids.isin(out["stays"].index)
    here, gone = ids[kept], ids[~kept]

    def fill(new: pd.DataFrame, old: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([new.loc[here], old.loc[gone]]).reindex(ids) if len(gone) else new.reindex(ids)

    return {"modalities": {m: fill(out["modalities"][m], cohort.modalities[m]) for m in MODALITIES[cohort.name]},
            "availability": fill(out["availability"], cohort.availability).astype(bool),
            "targets": out["stays"][out["targets"]].reindex(ids).astype(float), "excluded": gone}


def _as_read(df: pd.DataFrame, primary_target: str) -> pd.DataFrame:
    """MDS-ED's simulated table as :func:`mmlib.data.mds_ed.load_mds_ed` reads it back from the twin's CSV: the
    columns it reads, each float written as the twin writes it (numpy's ``str``,
    :func:`mmlib.data.synth_mds_ed.write_mds_ed`) and parsed by :func:`pandas.read_csv` (which can differ from the
    written value in the last bit), so that the derived fields are the loaded ones to the last bit. Chapter 08."""
    from io import StringIO

    from .data.mds_ed import table_columns

    cols, _, _ = table_columns(df.columns, primary_target, "mds_ed.csv (regenerated by chapter 08)")
    df = df[cols]
    floats = df.select_dtypes(include="float").columns
    block = df[floats].to_numpy(dtype=float)
    finite = np.isfinite(block)
    if finite.any():
        u, inv = np.unique(block[finite], return_inverse=True)  # each distinct value is parsed once
        parsed = pd.read_csv(StringIO("v\n" + "\n".join(u.astype(str).tolist())), dtype=float)["v"].to_numpy()
        block[finite] = parsed[inv]
    return pd.concat([df.drop(columns=floats), pd.DataFrame(block, index=df.index, columns=floats)], axis=1)[cols]


def changed_rows(a: pd.DataFrame, b: pd.DataFrame) -> pd.Series:
    """Whether each row of ``a`` differs from the same row of ``b`` in any column of ``a`` (missing equals missing;
    ``3`` equals ``3.0``). Both indexed alike. Chapter 08 rewrites the texts of those rows only."""
    b = b.reindex(index=a.index, columns=a.columns)
    out = np.zeros(len(a), dtype=bool)
    for c in a.columns:
        x, y = a[c], b[c]
        nx, ny = x.isna().to_numpy(), y.isna().to_numpy()
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            with np.errstate(invalid="ignore"):
                d = x.to_numpy(dtype=float) != y.to_numpy(dtype=float)
        else:
            xo, yo = x.astype(object).to_numpy().copy(), y.astype(object).to_numpy().copy()
            xo[nx], yo[ny] = None, None
            d = np.array([p != q for p, q in zip(xo, yo)], dtype=bool)
        out |= np.where(nx | ny, nx != ny, d)
    return pd.Series(out, index=a.index)


def check_fields(cohort, fields: dict) -> None:
    """Stop unless ``fields`` (derived from the as-built tables) are chapter 01's fields exactly: every modality's
    frame, the availability and the primary target, for every stay. This is the run-time guard that the
    derivation from the regenerated tables is chapter 01's cohort: the simulator regenerates the tables chapter 01
    wrote, and the fields are derived as chapter 01's loader derived them (chapter 08)."""
    problems = []
    for m, frame in fields["modalities"].items():
        cols = [c for c in frame.columns if c != "study_time"]
        bad = changed_rows(frame[cols], cohort.modalities[m])
        if bad.any():
            problems.append(f"{m} ({int(bad.sum())} stays, e.g. {bad.index[bad.to_numpy()][0]})")
    av = (fields["availability"][list(cohort.availability.columns)] != cohort.availability).any(axis=1)
    if av.any():
        problems.append(f"availability ({int(av.sum())} stays)")
    y = fields["targets"][cohort.primary_target]
    yb = cohort.stays[cohort.primary_target]
    if not ((y == yb) | (y.isna() & yb.isna())).all():
        problems.append(f"the target {cohort.primary_target}")
    if len(fields.get("excluded", [])):
        problems.append(f"{len(fields['excluded'])} stays excluded (e.g. {fields['excluded'][0]})")
    if problems:
        raise RuntimeError(f"chapter 08: re-deriving {display_name(cohort.name)} from its regenerated tables does not "
                           f"give chapter 01's cohort: {'; '.join(problems)}. The simulator or the loader changed "
                           "since chapter 01 ran (re-run chapter 01), or chapter 01 loaded it with other options")


# ------------------------------------------------------------------------------------------- the lab cohorts
@dataclass
class LabCohort:
    """One setting of one cohort, ready for the models: its :class:`mmlib.train.FusionData` (chapter 01's stays and
    split, the setting's embeddings, labels and truth), what was rebuilt (``new_texts``: modality -> stays whose
    text is new; ``embedded``: texts run through the encoder now; ``transcribed``: X-rays read now), the X-ray
    labels and true findings of its stays (MIMIC-Eye), the structured fields its notes are written from
    (``structured``: :func:`structured_fields`, what the probe of :func:`train_probe` reads) and a fingerprint of
    its inputs and labels."""

    cohort: str
    setting: Setting
    data: object
    new_texts: dict
    embedded: int = 0
    transcribed: int = 0
    cxr_labels: pd.DataFrame | None = None
    findings: pd.DataFrame | None = None
    seconds: float = 0.0
    structured: pd.DataFrame | None = None

    @property
    def fingerprint(self) -> str:
        d = self.data
        h = hashlib.sha256()
        for a in (d.x, d.mask, d.y, d.stays.index.to_numpy(), d.stays["split"].to_numpy().astype(str)):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]


@dataclass
class TextOptions:
    """How chapter 02 wrote and embedded its texts (chapter 08 writes and embeds new ones the same way): the
    X-ray backend and its options, the encoder and its options, the embedding cache, and ``include_race``."""

    cxr_backend: str = "offline"
    cxr_model_path: str | None = None
    cxr_prompt: str | None = None
    max_new_tokens: int = 256
    encoder: str = "all-MiniLM-L6-v2"
    max_length: int = 256
    batch_size: int = 64
    device: str | None = None
    include_race: bool = False
    cache: dict = field(default_factory=dict)


def _new_texts(cohort, fields: dict, base_texts: pd.DataFrame, opts: TextOptions,
               cxr_reports: dict | None = None) -> tuple[pd.DataFrame, dict, int]:
    """The setting's texts: chapter 02's where a stay's fields did not change, new ones (:mod:`mmlib.text`, the
    same writers and X-ray reader) where they did, ``None`` where the setting lacks the modality. Returns the texts,
    the stays whose text changed per modality (a new text, or none where chapter 01's cohort had one) and the
    number of X-rays transcribed now (``cxr_reports``: dicom id -> report, X-rays read by earlier settings, which
    this one adds to: a report depends on the image alone)."""
    from .text import structured_notes, transcribe_cxr

    texts = base_texts.copy()
    new, transcribed = {}, 0
    for m in MODALITIES[cohort.name]:
        avail = fields["availability"][m]
        frame = fields["modalities"][m]
        if m == "ecg":
            if (avail != cohort.availability[m]).any():
                raise RuntimeError("chapter 08: a knob changed whether an ECG is recorded; its report is not chapter 02's")
            new[m] = pd.Index([])
            continue
        if m == "cxr":
            gained = avail & ~cohort.availability[m]
            same_study = frame["dicom_id"].astype(object).where(avail) == cohort.modalities[m]["dicom_id"].astype(object)
            moved = avail & cohort.availability[m] & ~same_study
            lost = ~avail & cohort.availability[m]
            redo = gained | moved
            texts.loc[~avail, m] = None
            known = {} if cxr_reports is None else cxr_reports
            dicom = frame["dicom_id"].astype(object)
            read = redo & ~dicom.isin(list(known))
            if read.any():
                sub = replace(cohort, stays=cohort.stays[read], modalities={m: frame[read]},
                              availability=fields["availability"][read])
                reports, _ = transcribe_cxr(sub, opts.cxr_backend, opts.cxr_model_path, opts.cxr_prompt,
                                            opts.max_new_tokens, max(1, opts.batch_size // 4), opts.device,
                                            progress=False)
                known.update(zip(dicom[read], reports.to_numpy()))
                transcribed = int(read.sum())
            if redo.any():
                texts.loc[redo[redo].index, m] = dicom[redo].map(known).to_numpy()
            new[m] = (redo | lost)[redo | lost].index
            continue
        redo = changed_rows(frame, cohort.modalities[m]) | (avail != cohort.availability[m])
        if redo.any():
            sub = replace(cohort, stays=cohort.stays[redo], modalities={m: frame[redo]},
                          availability=fields["availability"][redo])
            texts.loc[redo[redo].index, m] = structured_notes(sub, m, include_race=opts.include_race).to_numpy()
        new[m] = redo[redo].index
    return texts, new, transcribed


def lab_cohort(cohort, base_data, base_texts: pd.DataFrame, setting: Setting, tables: dict, truth: pd.DataFrame,
               opts: TextOptions, cxr_reports: dict | None = None, fields: dict | None = None) -> LabCohort:
    """One setting of ``cohort`` (chapter 01's cohort, ``base_data`` its :class:`mmlib.train.FusionData` with
    chapter 02's embeddings, ``base_texts`` chapter 02's texts) from the setting's regenerated ``tables`` and latent
    ``truth`` (:func:`simulate`): the loader's fields (:func:`cohort_fields`), new texts where they changed, their
    embeddings, the recorded target and the truth (``cxr_reports``: X-ray reports already read, by dicom id;
    ``fields``: :func:`cohort_fields` of ``tables`` when already derived). Chapter 08."""
    from .embed import embed_texts

    t0 = time.perf_counter()
    fields = cohort_fields(cohort, tables) if fields is None else fields
    texts, new, transcribed = _new_texts(cohort, fields, base_texts, opts, cxr_reports)
    pos = pd.Series(np.arange(len(base_data.stays)), index=base_data.stays.index)
    x, mask = base_data.x.copy(), base_data.mask.copy()
    embedded = 0
    for j, m in enumerate(base_data.modalities):
        rows = new[m].intersection(pos.index)
        if not len(rows):
            continue
        have = texts.loc[rows, m].notna().to_numpy()
        p = pos.loc[rows].to_numpy()
        x[p[~have], j] = 0.0
        mask[p, j] = have
        if have.any():
            vecs, st = embed_texts(texts.loc[rows[have], m].tolist(), encoder=opts.encoder, max_length=opts.max_length,
                                   batch_size=opts.batch_size, device=opts.device, progress=False, **opts.cache)
            x[p[have], j] = vecs
            embedded += int(st["embedded"])
    idx = base_data.stays.index
    y = fields["targets"][base_data.target].reindex(idx).to_numpy(dtype=float)
    data = replace(base_data, x=x, mask=mask, y=y, truth=_truth(truth, base_data.target, idx, cohort.name))
    cxr_labels = findings = None
    if cohort.name == "mimic_eye":
        cxr_labels = fields["targets"][list(CXR_TARGETS.values())].reindex(idx)
        tr = truth.set_index("stay_id").reindex(idx)
        findings = pd.DataFrame({col: tr[f"finding_{label.lower().replace(' ', '_')}"].astype(float)
                                 for label, col in CXR_TARGETS.items()}, index=idx)
    return LabCohort(cohort.name, setting, data, new, embedded, transcribed, cxr_labels, findings,
                     time.perf_counter() - t0, structured_fields(fields, idx))


def _truth(truth: pd.DataFrame, target: str, idx: pd.Index, name: str) -> pd.DataFrame | None:
    """The truth frame of :class:`mmlib.train.FusionData` (``label`` without label bias, ``need``) for ``idx``."""
    if target not in TRUTH_OF_TARGET:
        return None
    label_col, need_col = TRUTH_OF_TARGET[target]
    key = "stay_id" if "stay_id" in truth.columns else "general_ed_stay_id"
    tr = truth.set_index(key).reindex(idx)
    return pd.DataFrame({"label": tr[label_col].astype(float), "need": tr[need_col].astype(float)}, index=idx)


@dataclass
class Lab:
    """Every setting of every cohort (:func:`build_lab`): ``cohorts[name][setting label]`` is a :class:`LabCohort`,
    all of one cohort restricted to the same stays (``dropped``: how many of the lab's stays some setting left
    without a target, left out of every setting); ``settings`` in order; ``seconds`` of building; per cohort the
    training stays kept, the generator's patients and chapter 01's test stays (``full_test``)."""

    cohorts: dict
    settings: list
    dropped: dict
    seconds: float
    train_stays: dict = field(default_factory=dict)
    patients: dict = field(default_factory=dict)
    full_test: dict = field(default_factory=dict)

    def reuse_table(self) -> pd.DataFrame:
        """One row per cohort and setting: stays, texts that differ from chapter 02's per modality (rewritten, or
        gone with the modality), texts embedded now (the others come from chapter 02 or the cache), X-rays read now,
        and which earlier setting's models it reuses (identical inputs and labels)."""
        rows = []
        for n, sets in self.cohorts.items():
            seen = {}
            for s in self.settings:
                lc = sets[s.label]
                fp = lc.fingerprint if s.label != RETRAINED else RETRAINED
                rows.append({"cohort": display_name(n), "setting": s.label, "stays": len(lc.data.stays),
                             **{f"{m} texts changed": len(v) for m, v in lc.new_texts.items()},
                             "embedded now": lc.embedded, "X-rays read now": lc.transcribed,
                             "models": f"same as {seen[fp]}" if fp in seen else "trained",
                             "seconds": round(lc.seconds, 1)})
                seen.setdefault(fp, s.label)
        return pd.DataFrame(rows).set_index(["cohort", "setting"]).fillna(0)


def lab_sample(stays: pd.DataFrame, size: int | None, seed: int = 0) -> pd.Index:
    """The stays of the lab: all of ``stays`` (a :class:`mmlib.train.FusionData` ``stays`` frame) when ``size`` is
    ``None`` or not smaller, else about ``size`` of them drawn with ``seed``, every split x race cell keeping its
    share (so the split fractions and the race mix are chapter 01's). The same in every setting (chapter 08)."""
    if size is not None and (not isinstance(size, int) or size < 50):
        raise ValueError(f"parameter lab_stays: expected null (every stay) or a whole number >= 50, got {size!r}")
    if size is None or size >= len(stays):
        return stays.index
    frac = size / len(stays)
    rng = np.random.default_rng(seed)
    keep = []
    for _, g in stays.groupby(["split", "race"], sort=True):
        keep.extend(rng.permutation(g.index.to_numpy())[:int(round(len(g) * frac))])
    return stays.index[stays.index.isin(keep)]


def _sub_cohort(c, ids: pd.Index):
    """Chapter 01's cohort ``c`` restricted to the stays ``ids`` (its root, info and flow kept)."""
    return replace(c, stays=c.stays.loc[ids], modalities={m: f.loc[ids] for m, f in c.modalities.items()},
                   availability=c.availability.loc[ids], truth=None if c.truth is None else c.truth.loc[ids])


def build_lab(cohorts: dict, data: dict, texts: dict, settings: list, opts: TextOptions,
              stays: int | None = None, seed: int = 0) -> Lab:
    """The lab (chapter 08): for every cohort of ``data`` (chapter 01's ``cohorts``, their
    :class:`~mmlib.train.FusionData` and chapter 02's ``texts``) and every setting, the regenerated tables
    (:func:`simulate`), checked on the as-built setting against chapter 01 (:func:`check_fields`), turned into a
    :class:`LabCohort`. ``stays`` (``None``: all of chapter 01's) keeps about that many stays of each cohort
    (:func:`lab_sample`, with ``seed``), the same in every setting; stays without a target in some setting are
    left out of all."""
    t0 = time.perf_counter()
    out, dropped, kept_train, patients, full_test = {}, {}, {}, {}, {}
    for n, full in data.items():
        gen = generator_params(cohorts[n])
        patients[n] = int(gen["n"])
        full_test[n] = int((full.stays["split"] == "test").sum())
        built = next(s for s in settings if s.label == AS_BUILT)
        if BiasKnobs.from_dict(gen.get("bias_knobs")).as_dict() != built.knob_dict:
            raise ValueError(f"{display_name(n)}: chapter 01 generated it with bias knobs {gen.get('bias_knobs')}, "
                             f"not {built.knob_dict}")
        ids = lab_sample(full.stays, stays, seed)
        base = _subset(full, full.stays.index.isin(ids))
        c = _sub_cohort(cohorts[n], ids)
        per, reports = {}, {}
        for s in settings:
            if s.label == RETRAINED:  # the same cohort as all off: only the training seeds differ
                per[s.label] = replace(per[ALL_OFF], setting=s, new_texts={m: pd.Index([]) for m in per[ALL_OFF].new_texts},
                                       embedded=0, transcribed=0, seconds=0.0)
                continue
            tables, truth = simulate(n, gen, s.knob_dict)
            fields = cohort_fields(c, tables)
            if s.label == AS_BUILT:
                check_fields(c, fields)
            per[s.label] = lab_cohort(c, base, texts[n].loc[ids], s, tables, truth, opts, reports, fields)
        keep = np.ones(len(base.stays), bool)
        for lc in per.values():
            keep &= ~np.isnan(lc.data.y)
            if lc.data.truth is not None:
                keep &= lc.data.truth[["label", "need"]].notna().all(axis=1).to_numpy()
        kept_train[n] = int((keep & (base.stays["split"].to_numpy() == "train")).sum())
        dropped[n] = int((~keep).sum())
        for label, lc in per.items():
            if label != RETRAINED:
                lc.data = _subset(lc.data, keep)
        per[RETRAINED].data = per[ALL_OFF].data
        out[n] = per
    return Lab(out, list(settings), dropped, time.perf_counter() - t0, kept_train, patients, full_test)


def _subset(d, keep: np.ndarray):
    """A :class:`mmlib.train.FusionData` restricted to the rows ``keep``."""
    return replace(d, x=d.x[keep], mask=d.mask[keep], y=d.y[keep].astype(np.float32), stays=d.stays[keep],
                   truth=None if d.truth is None else d.truth[keep])


# ------------------------------------------------------------------------------------------------ training
@dataclass
class LabRuns:
    """The lab's trained runs: ``predictions`` (:func:`mmlib.train.run_grid`'s rows, with ``setting``), one log row
    per fit, and ``seconds`` of training."""

    predictions: pd.DataFrame
    log: pd.DataFrame
    seconds: float


def train_lab(lab: Lab, models, seeds, cfg, n_jobs: int = 1, probe: bool = False) -> LabRuns:
    """Train ``models`` on all modalities for every setting and seed (:func:`mmlib.train.run_grid`, one fit per
    call, the fits of every setting spread over ``n_jobs`` worker processes; each fit is seeded and single-threaded,
    so the numbers do not depend on ``n_jobs``), once per distinct fingerprint: a setting whose inputs and labels
    equal an earlier one's gets its predictions (column ``trained_as`` names the setting that trained them); the
    :data:`RETRAINED` setting is trained again with :func:`retrain_seeds`; with ``probe``, the structured-feature
    probe of :func:`train_probe` is fitted in every setting too, as the model :data:`PROBE` (chapter 08)."""
    from joblib import Parallel, delayed

    from .train import run_grid

    t0 = time.perf_counter()
    jobs, owner = [], {}
    for n, per in lab.cohorts.items():
        for s in lab.settings:
            lc = per[s.label]
            fp = (n, lc.fingerprint if s.label != RETRAINED else RETRAINED)
            if fp in owner:
                continue
            owner[fp] = s.label
            for m in models:
                for k in (retrain_seeds(seeds) if s.label == RETRAINED else list(seeds)):
                    jobs.append((fp, s.label, lc.data, m, k))
    if cfg.torch_device().type != "cpu":
        n_jobs = 1
    done = Parallel(n_jobs=n_jobs)(delayed(run_grid)(d, [(m, list(d.modalities))], [k], cfg, n_jobs=1, progress=False)
                                   for _, _, d, m, k in jobs)
    by_fp, logs = {}, []
    for (fp, label, *_), g in zip(jobs, done):
        by_fp.setdefault(fp, []).append(g.predictions.assign(trained_as=label))
        logs.append(g.log.assign(setting=label))
    preds = [pd.concat(by_fp[(n, per[s.label].fingerprint if s.label != RETRAINED else RETRAINED)],
                       ignore_index=True).assign(setting=s.label)
             for n, per in lab.cohorts.items() for s in lab.settings]
    if probe:
        pp, pl = train_probe(lab, cfg.threshold, seeds)
        preds.append(pp)
        logs.append(pl)
    return LabRuns(pd.concat(preds, ignore_index=True), pd.concat(logs, ignore_index=True), time.perf_counter() - t0)


# ------------------------------------------------------------------------------- the structured-feature probe
#: The model name of the structured-feature probe (:func:`train_probe`).
PROBE = "structured probe"
#: The probe's L2 penalty (scikit-learn's ``C``: inverse strength) on standardised features.
PROBE_C = 0.1
#: Modalities whose notes are read from an image or a signal, not written from the loader's fields.
READ_MODALITIES = ("cxr", "ecg")
#: Columns of the fields that identify or locate a record rather than describe the patient (and ``codes``, the
#: earlier admissions' code list, a text the probe does not parse: its count ``n_prior_admissions`` is kept).
PROBE_SKIP = ("subject_id", "study_id", "dicom_id", "path", "record", "codes")


def structured_fields(fields: dict, index: pd.Index) -> pd.DataFrame:
    """The structured fields the notes are written from, one row per stay of ``index``: every column of each
    modality frame of ``fields`` (:func:`cohort_fields`) from which :mod:`mmlib.text` writes a note (all but
    :data:`READ_MODALITIES`), named ``modality: column`` (identifiers and times left out, :data:`PROBE_SKIP`), and
    whether each modality is recorded (``has modality``, 0/1). What the structured probe reads (:func:`probe_design`,
    :func:`train_probe`; chapter 08)."""
    parts = []
    for m, frame in fields["modalities"].items():
        if m in READ_MODALITIES:
            continue
        f = frame.reindex(index)
        keep = [c for c in f.columns if c not in PROBE_SKIP and not pd.api.types.is_datetime64_any_dtype(f[c])]
        parts.append(f[keep].add_prefix(f"{m}: "))
    parts.append(fields["availability"].reindex(index).astype(float).add_prefix("has "))
    return pd.concat(parts, axis=1)


def probe_design(frame: pd.DataFrame, train: np.ndarray, min_count: int = 10) -> np.ndarray:
    """The structured probe's design matrix for ``frame`` (:func:`structured_fields`), every transformation fitted
    on the rows ``train`` (boolean mask) only: a numeric (or boolean) column standardised, a missing value set to the
    training mean with a missing indicator beside it (when some training rows miss it); a text column one-hot, one
    column per value seen at least ``min_count`` times among the training rows (rarer values and missing: all 0).
    Columns constant on the training rows are left out. Chapter 08."""
    train = np.asarray(train, dtype=bool)
    if len(train) != len(frame) or not train.any():
        raise ValueError(f"probe_design: expected a boolean training mask with one entry per row of the fields "
                         f"({len(frame)}) and some training rows; got {len(train)} entries, {int(train.sum())} true")
    cols = []
    for c in frame.columns:
        s = frame[c]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
            miss = ~np.isfinite(v)
            tr = v[train & ~miss]
            if len(tr) == 0:
                continue
            sd = float(tr.std())
            if sd > 0:
                cols.append(np.where(miss, 0.0, (v - tr.mean()) / sd))
            if 0 < miss[train].mean() < 1:
                cols.append(miss.astype(float))
        else:
            t = s.astype("string").str.strip().fillna("").to_numpy(dtype=object)
            counts = pd.Series(t[train]).value_counts()
            for level in sorted(counts.index[(counts >= min_count) & (counts.index != "")]):
                ind = (t == level).astype(float)
                if 0 < ind[train].mean() < 1:
                    cols.append(ind)
    return np.column_stack(cols) if cols else np.zeros((len(frame), 0))


def train_probe(lab: Lab, threshold: float | str = 0.5, seeds=(0,)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The structured-feature probe (chapter 08): for every cohort and setting of ``lab``, a logistic regression
    (scikit-learn, L2 with ``C`` = :data:`PROBE_C`) on the structured fields the notes are written from
    (:attr:`LabCohort.structured`, :func:`probe_design`), fitted on the setting's training stays and labels (those
    the embedding models are trained on), its decision threshold chosen by ``threshold`` on the validation stays
    (:func:`mmlib.train.choose_threshold`). It tells whether a knob's effect is in the fields at all, next to what
    the embedding models make of the notes. Deterministic: one fit per setting, recorded under the first of
    ``seeds`` (the :data:`RETRAINED` setting under its first retraining seed, so retraining adds no noise).
    Returns the predictions of the validation and test stays (the columns of :func:`train_lab`'s, model
    :data:`PROBE`) and one log row per fit."""
    from sklearn.linear_model import LogisticRegression

    from .train import choose_threshold

    preds, logs = [], []
    for n, per in lab.cohorts.items():
        for s in lab.settings:
            t0 = time.perf_counter()
            lc = per[s.label]
            d = lc.data
            if lc.structured is None:
                raise ValueError(f"chapter 08: the {s.label} setting of {display_name(n)} carries no structured fields "
                                 "for the probe (LabCohort.structured)")
            split = d.stays["split"].to_numpy()
            tr, va = split == "train", split == "val"
            x = probe_design(lc.structured.loc[d.stays.index], tr)
            y = np.asarray(d.y, dtype=float)
            if np.isnan(y[tr | va]).any() or len(np.unique(y[tr])) < 2:
                raise ValueError(f"chapter 08: the probe of {display_name(n)}, {s.label}, needs both classes and no "
                                 "undefined label among the training and validation stays")
            fit = LogisticRegression(C=PROBE_C, max_iter=5000).fit(x[tr], y[tr].astype(int))
            p = fit.predict_proba(x)[:, 1]
            thr = choose_threshold(y[va], p[va], threshold)
            seed = retrain_seeds(seeds)[0] if s.label == RETRAINED else list(seeds)[0]
            keep = np.isin(split, ["val", "test"])
            st = d.stays[keep]
            preds.append(pd.DataFrame({
                "cohort": n, "model": PROBE, "modalities": "structured fields", "seed": seed,
                "stay_id": st.index.to_numpy(), "split": split[keep], "prob": p[keep], "threshold": thr,
                "pred": (p[keep] >= thr).astype(np.int8), "label": y[keep].astype(np.int8),
                "race": st["race"].to_numpy(), "gender": st["gender"].to_numpy(),
                "race_gender": st["race_gender"].to_numpy(), "trained_as": s.label, "setting": s.label}))
            logs.append({"cohort": n, "model": PROBE, "seed": seed, "setting": s.label, "features": x.shape[1],
                         "threshold": thr, "seconds": time.perf_counter() - t0})
    return pd.concat(preds, ignore_index=True), pd.DataFrame(logs)


# ---------------------------------------------------------------------------------------------- estimands
def documentation_gap(labels: np.ndarray, findings: np.ndarray, groups: np.ndarray, group: str, reference: str,
                      weights: np.ndarray | None = None) -> np.ndarray:
    """Of the X-ray findings truly present (``findings``: stays x findings, 0/1), the share the stay's CheXpert
    labels document as positive (``labels``, NaN where the label is undefined or the stay has no X-ray), in
    ``group`` minus ``reference``, pooled over the findings: one value, or one per row of ``weights`` (bootstrap
    counts). The estimand X-ray under-documentation injects (chapter 08)."""
    present = (np.nan_to_num(findings) == 1) & ~np.isnan(labels)
    doc = (present & (np.nan_to_num(labels) == 1)).sum(1).astype(float)
    pos = present.sum(1).astype(float)
    w = np.ones((1, len(groups))) if weights is None else weights
    ig, ir = (groups == group).astype(float), (groups == reference).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ (doc * ig)) / (w @ (pos * ig)) - (w @ (doc * ir)) / (w @ (pos * ir))


def display_first(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (rows of :attr:`Evaluation.table`) with, for estimands kept per race group (five groups), the group
    the knobs hit hardest overall first (Black with :data:`GROUP_EFFECTS`; non-White with the binary grouping), so
    that a table or figure showing one group per estimand shows that one (chapter 08)."""
    weight = {g: sum(GROUP_EFFECTS[k].get(g, 0.0) / max(GROUP_EFFECTS[k].values()) for k in KNOBS)
              for g in set(table["group"])}
    return table.assign(_w=table["group"].map(lambda g: -weight.get(g, 0.0))).sort_values("_w", kind="stable").drop(
        columns="_w")


def exposed_group(knob: str, groups) -> str | None:
    """Of the compared non-reference ``groups``, the one a knob hits hardest (:data:`GROUP_EFFECTS`; with the
    binary grouping, non-White)."""
    groups = [g for g in groups if g != REFERENCE["race"]]
    if not groups:
        return None
    sizes = GROUP_EFFECTS[knob]
    return max(groups, key=lambda g: (sizes.get(g, 0.0), g == groups[0]))


@dataclass
class Evaluation:
    """Every estimand of every setting (:func:`evaluate`): ``table`` (one row per cohort, setting, model, estimand
    and group: the estimate, its 95% CI, its SE and the parts of it -- the test-set bootstrap's ``se_boot`` and the
    training noise ``se_train`` of one trained model -- and its change from all off with CI) and ``replicates``
    (``{(cohort, setting, model, estimand, group): (B,) array}``, training noise included), ``n_test`` per cohort."""

    table: pd.DataFrame
    replicates: dict
    n_test: dict
    n_boot: int


def _metric_values(y, probs, preds, attrs, flags, boot):
    """The model estimands against one label: ``{(key metric, attribute, group): (point, replicates or None)}``."""
    table, rp = summarise_vectors(y.astype(float), probs, preds, attrs, flags, boot)
    out = {}
    for metric, attr, grp in (("tpr_signed", "race", "gap"), ("dp_signed", "race", "gap"), ("tpr_diff", "race", "gap"),
                              ("dp_diff", "race", "gap"), ("auroc", "overall", "all")):
        r = table[(table.metric == metric) & (table.attribute == attr) & (table.group == grp)].iloc[0]
        out[(metric, "gap" if attr == "race" else "all")] = (float(r["mean"]), rp.get((metric, attr, grp)))
    return out


def evaluate(lab: Lab, runs: LabRuns, n_boot: int = 200, seed: int = 0, min_group: int = 30,
             min_events: int = 10) -> Evaluation:
    """Every estimand (:data:`ESTIMANDS`) for every cohort, setting and model on the test stays, against the recorded
    label and the truth, with one stratified :class:`mmlib.metrics.Bootstrap` per cohort shared by every setting and
    model (paired changes): signed and max - min race gaps and AUROC (:func:`mmlib.metrics.summarise_vectors`, mean
    over seeds), the risk shift at equal need (:func:`mmlib.metrics.risk_shift`), and the data's label shift
    (:func:`mmlib.metrics.label_shift`) and X-ray documentation gap (:func:`documentation_gap`). Race groups follow
    the race grouping; groups too small to estimate (:func:`mmlib.metrics.estimable`) are left out.

    Training noise: a model retrained on the same data with another seed gives other numbers, which the test-set
    bootstrap does not see. Its SD per estimand (``se_train``) is estimated from every training on the all-off
    cohort (its seeds and the :data:`RETRAINED` seeds), and each training of the lab gets an independent normal draw
    of it (divided by sqrt(seeds)) added to its replicates: intervals of values and of changes include it; settings
    that reuse another's runs share its draw (their change is exactly 0) (chapter 08)."""
    rows, reps, n_test, per_seed = [], {}, {}, {}
    pr = runs.predictions[runs.predictions["split"] == "test"]
    trained_as, n_seeds = {}, {}
    for n, per in lab.cohorts.items():
        off = per[ALL_OFF]
        d0 = off.data
        te = d0.rows("test")
        ids = d0.stays.index[te]
        race = d0.stays["race"].to_numpy()[te].astype(str)
        boot = Bootstrap.draw(d0.stays["race_gender"].to_numpy()[te], n_boot=n_boot, seed=seed)
        n_test[n] = len(te)
        truth_y = d0.truth["label"].to_numpy()[te] if d0.truth is not None else None
        flags = {"race": estimable(truth_y if truth_y is not None else d0.y[te], race, min_group, min_events)}
        compared = [g for g, why in flags["race"].items() if not why]
        ref = REFERENCE["race"]
        others = [g for g in compared if g != ref] if ref in compared else []
        attrs = {"race": race}

        def add(setting, model, key, group, point, rep):
            rep = np.asarray(rep, dtype=float) if rep is not None else np.full(n_boot, np.nan)
            reps[(n, setting, model, key, group)] = rep
            rows.append({"cohort": n, "setting": setting, "model": model, "estimand": key, "group": group,
                         "value": float(point)})

        for s in lab.settings:
            lc = per[s.label]
            d = lc.data
            y = d.y[te]
            need = d.truth["need"].to_numpy()[te] if d.truth is not None else None
            for g in others:  # the data's own estimands, the same for every model
                if need is not None:
                    add(s.label, DATA_MODEL, "label_shift|truth", g, label_shift(y, race, need, g, ref)[0],
                        label_shift(y, race, need, g, ref, boot.counts))
                if lc.cxr_labels is not None:
                    lab_, fnd = lc.cxr_labels.to_numpy()[te], lc.findings.to_numpy()[te]
                    add(s.label, DATA_MODEL, "documentation_gap|truth", g,
                        documentation_gap(lab_, fnd, race, g, ref)[0], documentation_gap(lab_, fnd, race, g, ref, boot.counts))
            sub = pr[(pr["cohort"] == n) & (pr["setting"] == s.label)]
            for model, mp in sub.groupby("model", sort=False):
                wide = mp.pivot(index="stay_id", columns="seed", values="prob").loc[ids]
                dec = mp.pivot(index="stay_id", columns="seed", values="pred").loc[ids]
                probs, preds = wide.to_numpy().T, dec.to_numpy().T
                trained_as[(n, s.label, model)] = mp["trained_as"].iloc[0] if "trained_as" in mp else s.label
                n_seeds[(n, s.label, model)] = probs.shape[0]
                for against, yy in (("recorded", y), ("truth", truth_y)):
                    if yy is None:
                        continue
                    for (metric, grp), (point, rp) in _metric_values(yy, probs, preds, attrs, flags, boot).items():
                        key = f"{metric}|{against}"
                        if key in ESTIMANDS:
                            add(s.label, model, key, grp, point, rp)
                    if s.label in (ALL_OFF, RETRAINED):  # every training on the all-off data, one by one
                        for k in range(probs.shape[0]):
                            for (metric, grp), (point, _) in _metric_values(yy, probs[k:k + 1], preds[k:k + 1], attrs,
                                                                            flags, None).items():
                                per_seed.setdefault((n, model, f"{metric}|{against}", grp), []).append(point)
                if need is not None:
                    for g in others:
                        add(s.label, model, "risk_shift|truth", g, risk_shift(probs, race, need, g, ref)[0],
                            risk_shift(probs, race, need, g, ref, boot.counts))
                        if s.label in (ALL_OFF, RETRAINED):
                            per_seed.setdefault((n, model, "risk_shift|truth", g), []).extend(
                                risk_shift(probs, race, need, g, ref).tolist() if probs.shape[0] == 1 else
                                [float(risk_shift(probs[k:k + 1], race, need, g, ref)[0]) for k in range(probs.shape[0])])
    table = pd.DataFrame(rows)
    # training noise: one draw per training (settings that reuse another's runs share it)
    sd_train = {k: float(np.std(v, ddof=1)) if len(v) > 1 and np.isfinite(v).all() else np.nan
                for k, v in per_seed.items()}
    rng = np.random.default_rng(seed + 1)
    draws, se_boot, se_train, seeds_col = {}, [], [], []
    for r in table.itertuples(index=False):
        rep = reps[(r.cohort, r.setting, r.model, r.estimand, r.group)]
        se_boot.append(float(np.nanstd(rep, ddof=1)) if np.isfinite(rep).sum() > 1 else np.nan)
        if r.model == DATA_MODEL:
            se_train.append(0.0)
            seeds_col.append(0)
            continue
        sd = sd_train.get((r.cohort, r.model, r.estimand, r.group), np.nan)
        k = n_seeds[(r.cohort, r.setting, r.model)]
        seeds_col.append(k)
        sd = 0.0 if not np.isfinite(sd) else sd / np.sqrt(k)
        se_train.append(sd)
        key = (r.cohort, trained_as[(r.cohort, r.setting, r.model)], r.model, r.estimand, r.group)
        if key not in draws:
            draws[key] = rng.normal(0.0, 1.0, len(rep))
        reps[(r.cohort, r.setting, r.model, r.estimand, r.group)] = rep + sd * draws[key]
    table["se_boot"], table["se_train"], table["seeds"] = se_boot, se_train, seeds_col
    table["se"] = np.sqrt(table["se_boot"] ** 2 + table["se_train"] ** 2)
    cis = [ci95(reps[(r.cohort, r.setting, r.model, r.estimand, r.group)]) for r in table.itertuples(index=False)]
    table["ci_low"], table["ci_high"] = [c[0] for c in cis], [c[1] for c in cis]
    # the paired change from all off (same resamples; training noise of both trainings)
    base = table[table["setting"] == ALL_OFF].set_index(["cohort", "model", "estimand", "group"])
    ch, lo, hi = [], [], []
    for r in table.itertuples(index=False):
        k = (r.cohort, r.model, r.estimand, r.group)
        if k not in base.index:
            ch.append(np.nan), lo.append(np.nan), hi.append(np.nan)
            continue
        diff = reps[(r.cohort, r.setting, r.model, r.estimand, r.group)] - reps[(r.cohort, ALL_OFF, *k[1:])]
        ch.append(r.value - base.loc[k, "value"])
        a, b = ci95(diff)
        lo.append(a), hi.append(b)
    table = table.assign(change=ch, change_low=lo, change_high=hi)
    info = {s.label: s for s in lab.settings}
    table.insert(2, "knob", table["setting"].map(lambda x: info[x].knob))
    table.insert(3, "scale", table["setting"].map(lambda x: info[x].scale))
    cols = ["cohort", "setting", "knob", "scale", "model", "estimand", "group", "value", "ci_low", "ci_high", "se",
            "se_boot", "se_train", "seeds", "change", "change_low", "change_high"]
    return Evaluation(table[cols], reps, n_test, n_boot)


def verdict(low: float, high: float) -> str:
    """``up`` / ``down`` when a 95% CI excludes 0, ``no clear change`` when it covers it, ``not estimable`` (NaN)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "not estimable"
    return "up" if low > 0 else "down" if high < 0 else "no clear change"


# ------------------------------------------------------------------------------------------- what it shows
def fmt_ci(value: float, low: float, high: float, digits: int = 3) -> str:
    """``+0.012 [-0.099, +0.092]`` (NaN as ``n/a``)."""
    if not np.isfinite(value):
        return "n/a"
    return f"{value:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def settings_table(settings: list) -> pd.DataFrame:
    """The lab's settings (chapter 08): what each knob does and the size it injects per group at that setting
    (:data:`mmlib.data.latent.GROUP_EFFECTS` times the scale; the units are the knob's own: SpO2 points,
    severity SD, probabilities, log-odds)."""
    rows = []
    for s in settings:
        if s.knob is None:
            what = {ALL_OFF: "every knob off: no group differs from another except by chance",
                    RETRAINED: "every knob off, the models retrained with other seeds (training noise)",
                    AS_BUILT: "the cohort of chapter 01: " + ", ".join(f"{k} ×{v:g}" for k, v in s.knobs if v)
                    or "the cohort of chapter 01 (every knob off)"}[s.label]
            sizes = ""
        else:
            what = KNOB_DOCS[s.knob]
            sizes = ", ".join(f"{g} {s.scale * v:g}" for g, v in GROUP_EFFECTS[s.knob].items() if v)
        rows.append({"setting": s.label, "what it does": what, "injected size (per group)": sizes})
    return pd.DataFrame(rows).set_index("setting")


def entry_table(lab: Lab) -> pd.DataFrame:
    """Where each setting enters (chapter 08): per cohort and modality, the share of stays (%) whose model input
    (embedding or presence) differs from the all-off cohort, among White and among the other compared stays, and
    the share whose recorded target differs. Computed from the inputs, not stated."""
    rows = []
    for n, per in lab.cohorts.items():
        d0 = per[ALL_OFF].data
        white = d0.stays["race"].to_numpy() == REFERENCE["race"]
        other = ~white & ~np.array([not_compared(g) for g in d0.stays["race"]])
        for s in lab.settings:
            if s.label in (ALL_OFF, RETRAINED):
                continue
            d = per[s.label].data
            row = {"cohort": display_name(n), "setting": s.label}
            for j, m in enumerate(d.modalities):
                diff = (d.mask[:, j] != d0.mask[:, j]) | (d.x[:, j] != d0.x[:, j]).any(axis=1)
                row[f"{m}: White"] = 100 * diff[white].mean()
                row[f"{m}: others"] = 100 * diff[other].mean()
            dy = d.y != d0.y
            row["target: White"], row["target: others"] = 100 * dy[white].mean(), 100 * dy[other].mean()
            rows.append(row)
    return pd.DataFrame(rows).set_index(["cohort", "setting"]).round(1)


def embedding_shift(lab: Lab, seed: int = 0) -> pd.DataFrame:
    """How far each setting moves the notes it changes in the encoder's space (chapter 08): per cohort, setting and
    modality whose embedding changed for some stay present in both, the stays changed, the mean cosine distance
    (1 - cosine) between their embedding and the all-off one, and for scale the median cosine distance between the
    notes of two different stays (500 random pairs of the all-off cohort)."""
    rng = np.random.default_rng(seed)
    rows = []
    for n, per in lab.cohorts.items():
        d0 = per[ALL_OFF].data
        ref = {}
        for j, m in enumerate(d0.modalities):
            have = np.flatnonzero(d0.mask[:, j])
            if len(have) > 1:
                a, b = rng.choice(have, 500), rng.choice(have, 500)
                keep = a != b
                ref[m] = float(np.median(1 - (d0.x[a[keep], j] * d0.x[b[keep], j]).sum(1)))
        for s in lab.settings:
            if s.knob is None:
                continue
            d = per[s.label].data
            for j, m in enumerate(d.modalities):
                both = d.mask[:, j] & d0.mask[:, j]
                moved = both & (d.x[:, j] != d0.x[:, j]).any(axis=1)
                if not moved.any():
                    continue
                cos = (d.x[moved, j] * d0.x[moved, j]).sum(1)  # the vectors are unit length
                rows.append({"cohort": display_name(n), "setting": s.label, "modality": m, "stays": int(moved.sum()),
                             "cosine distance to all off": float(np.mean(1 - cos)),
                             "between two stays (median)": ref.get(m, np.nan)})
    return pd.DataFrame(rows, columns=["cohort", "setting", "modality", "stays", "cosine distance to all off",
                                       "between two stays (median)"])


def attribution_table(ev: Evaluation, estimands=("tpr_signed|recorded", "dp_signed|recorded", "tpr_signed|truth",
                                                  "risk_shift|truth", "label_shift|truth", "documentation_gap|truth"),
                      models=None) -> pd.DataFrame:
    """The attribution table (chapter 08): for each cohort, model and setting with a knob on, the change of each
    estimand from the all-off cohort, with its paired 95% CI, as ``change [low, high]``; a ``*`` marks a change whose
    interval excludes 0. Data-level estimands (label shift, X-ray documentation) are shown on the ``(data)`` rows."""
    t = ev.table[ev.table["knob"].notna() & ev.table["estimand"].isin(estimands)]
    if models is not None:
        t = t[t["model"].isin([*models, DATA_MODEL])]
    t = t.assign(cell=[fmt_ci(r.change, r.change_low, r.change_high)
                       + ("*" if verdict(r.change_low, r.change_high) in ("up", "down") else "")
                       for r in t.itertuples()],
                 estimand=t["estimand"].map(ESTIMANDS), cohort=t["cohort"].map(display_name))
    t = display_first(t).drop_duplicates(["cohort", "model", "setting", "estimand"])  # race5: one group each
    wide = t.pivot_table(index=["cohort", "model", "setting"], columns="estimand", values="cell", aggfunc="first")
    order = [ESTIMANDS[e] for e in estimands if ESTIMANDS[e] in wide.columns]
    settings = list(dict.fromkeys(ev.table["setting"]))
    wide = wide[order].reset_index()
    wide["_o"] = wide["setting"].map(settings.index)
    return wide.sort_values(["cohort", "model", "_o"]).drop(columns="_o").set_index(["cohort", "model", "setting"]).fillna("")


def _row(t: pd.DataFrame, **where) -> pd.Series | None:
    keep = np.ones(len(t), bool)
    for k, v in where.items():
        keep &= (t[k] == v).to_numpy()
    return t[keep].iloc[0] if keep.any() else None


def _clear(low: float, high: float, sign: int) -> bool:
    """Whether a 95% CI excludes 0 on the side of ``sign``."""
    return bool(np.isfinite(low) and (high < 0 if sign < 0 else low > 0))


def recovery_table(ev: Evaluation, strong: float) -> pd.DataFrame:
    """The recovery check (chapter 08): for each cohort, knob and model (the data, for knobs that act on labels),
    the estimand that carries the knob's injected effect (:data:`INJECTED`) for the group the knob hits hardest
    (:func:`exposed_group`), with 95% CIs:

    - ``effect (vs all off)``: its paired change from the all-off cohort at the strong setting -- the knob's effect
      on the same stays, which only the lab can measure; ``recovered`` when it has the injected sign and its CI
      excludes 0;
    - ``at strong`` / ``all off``: the estimand itself in the strong setting and with every knob off, which is what
      an audit of one cohort sees; ``audit sees it`` when at strong it has the injected sign and its CI excludes 0,
      ``null covered`` when all off its CI covers 0;
    - ``paper's gaps that see it``: which of the paper's race gaps (signed, and max - min, against the recorded
      label) change clearly from all off at the strong setting."""
    t = ev.table
    rows = []
    for n in dict.fromkeys(t["cohort"]):
        tn = t[t["cohort"] == n]
        for knob, inj in INJECTED.items():
            label = f"{knob} ×{strong:g}"
            if label not in set(tn["setting"]):
                continue
            key = f"{inj['estimand']}|truth"
            cand = tn[(tn["estimand"] == key) & (tn["setting"] == label)]
            if cand.empty:  # X-ray documentation on a cohort without X-rays, or no race group large enough
                why = ("not measurable here: no X-ray labels" if inj["estimand"] == "documentation_gap"
                       and not (tn["estimand"] == key).any() and (tn["estimand"] == "label_shift|truth").any()
                       else "not measurable here: no race group large enough to compare")
                rows.append({"cohort": display_name(n), "knob": knob, "estimand": ESTIMANDS[key], "model": "",
                             "group": "", "effect (vs all off)": why, "recovered": "n/a",
                             "at strong": "", "audit sees it": "n/a", "all off": "", "null covered": "n/a",
                             "paper's gaps that see it": ""})
                continue
            group = exposed_group(knob, list(dict.fromkeys(cand["group"])))
            for model in dict.fromkeys(cand["model"]):
                r = _row(cand, model=model, group=group)
                z = _row(tn, setting=ALL_OFF, model=model, estimand=key, group=group)
                seen = []
                for m in ([model] if model != DATA_MODEL else sorted(set(tn["model"]) - {DATA_MODEL})):
                    for gk in ("dp_signed|recorded", "tpr_signed|recorded", "dp_diff|recorded", "tpr_diff|recorded"):
                        g = _row(tn, setting=label, model=m, estimand=gk)
                        if g is not None and verdict(g.change_low, g.change_high) in ("up", "down"):
                            seen.append(f"{ESTIMANDS[gk].replace(' vs recorded label', '')}"
                                        + (f" ({m})" if model == DATA_MODEL else ""))
                rows.append({"cohort": display_name(n), "knob": knob, "estimand": ESTIMANDS[key], "model": model,
                             "group": group, "effect (vs all off)": fmt_ci(r.change, r.change_low, r.change_high),
                             "recovered": "yes" if _clear(r.change_low, r.change_high, inj["sign"]) else "no",
                             "at strong": fmt_ci(r.value, r.ci_low, r.ci_high),
                             "audit sees it": "yes" if _clear(r.ci_low, r.ci_high, inj["sign"]) else "no",
                             "all off": fmt_ci(z.value, z.ci_low, z.ci_high) if z is not None else "n/a",
                             "null covered": "yes" if z is not None and z.ci_low <= 0 <= z.ci_high else "no",
                             "paper's gaps that see it": "; ".join(seen) or "none"})
    return pd.DataFrame(rows)


def recovery_by_path(recovery: pd.DataFrame) -> pd.DataFrame:
    """The input knobs' recovery side by side (chapter 08): per cohort and knob whose estimand is the risk shift at
    equal need, the knob's effect at the strong setting (change from all off, 95% CI; :func:`recovery_table`) through
    the structured fields (:data:`PROBE`) and through each embedding model, each marked ``recovered`` or ``not``."""
    r = recovery[(recovery["estimand"] == ESTIMANDS["risk_shift|truth"]) & (recovery["model"] != "")] \
        if len(recovery) else recovery
    if r.empty:
        return pd.DataFrame({"through": ["no input knob's effect is measurable here (no race group large enough to "
                                         "compare)"]})
    r = r.assign(cell=[f"{e} ({'recovered' if ok == 'yes' else 'not'})" for e, ok in
                       zip(r["effect (vs all off)"], r["recovered"])])
    wide = r.pivot_table(index=["cohort", "knob"], columns="model", values="cell", aggfunc="first")
    order = [PROBE] * (PROBE in wide.columns) + [m for m in dict.fromkeys(r["model"]) if m != PROBE]
    wide = wide[order].reindex(pd.MultiIndex.from_frame(r[["cohort", "knob"]].drop_duplicates()))
    wide.columns.name = "through"
    return wide.rename(columns={PROBE: "the structured fields (probe)", **{m: f"the notes ({m})" for m in order
                                                                           if m != PROBE}}).fillna("")


#: The estimands whose value with no bias is 0 (so their all-off interval should cover it): the signed ones.
NULL_ESTIMANDS = ("tpr_signed|recorded", "dp_signed|recorded", "tpr_signed|truth", "risk_shift|truth",
                  "label_shift|truth", "documentation_gap|truth")


def null_table(ev: Evaluation) -> pd.DataFrame:
    """With every knob off (chapter 08): each signed estimand (:data:`NULL_ESTIMANDS`) with its 95% CI (training
    noise included) and whether the CI covers 0, its bootstrap SE on the test stays and the SD that retraining alone
    gives one model (estimated from every training on the all-off cohort)."""
    t = ev.table
    z = t[(t["setting"] == ALL_OFF) & t["estimand"].isin(NULL_ESTIMANDS)]
    rows = []
    for r in z.itertuples():
        rows.append({"cohort": display_name(r.cohort), "model": r.model, "estimand": ESTIMANDS[r.estimand],
                     "group": r.group, "all off": fmt_ci(r.value, r.ci_low, r.ci_high),
                     "covers 0": "yes" if r.ci_low <= 0 <= r.ci_high else ("n/a" if not np.isfinite(r.ci_low) else "no"),
                     "bootstrap SE": round(r.se_boot, 4),
                     "training SD (one model)": "" if r.model == DATA_MODEL
                     else round(r.se_train * np.sqrt(max(1, r.seeds)), 4)})
    return pd.DataFrame(rows)


def power_table(ev: Evaluation, sizes: dict, test_share: dict, power: float = 0.8, alpha: float = 0.05,
                estimands=("tpr_signed|recorded", "dp_signed|recorded", "tpr_signed|truth", "risk_shift|truth",
                           "label_shift|truth", "documentation_gap|truth")) -> pd.DataFrame:
    """The power analysis (chapter 08), analytic from the bootstrap SEs measured here. For each cohort, model,
    estimand and knob:

    - ``slope``: the estimand's change per unit of knob scale, least squares through the all-off cohort over the
      knob's settings (``sum(s * change_s) / sum(s^2)``), with its 95% CI from the same (paired) resamples;
    - ``se``: the estimand's bootstrap SE with every knob off on this cohort's ``n`` test stays (at the knob's
      smallest setting where it is 0 with every knob off, e.g. the X-ray documentation gap);
    - ``training sd``: the SD retraining alone gives one model's estimate (:func:`evaluate`);
    - for each entry of ``sizes`` (a profile name -> its number of patients, ``None`` when the profile does not fix
      it), its test stays (``sizes`` times ``test_share[cohort]``, this cohort's test stays per patient), the minimal
      detectable effect ``(z_{1-alpha/2} + z_power) * sqrt(se^2 * n / N + sd^2)`` of an audit of one trained model,
      and the smallest knob scale it detects (``MDE / |slope|``; none when the slope's CI covers 0);
    - ``test stays for ×1``: the test stays such an audit needs to detect the knob at its default size (none when the
      training noise alone is too large).

    Assumptions, stated in the chapter: the bootstrap SE shrinks as 1/sqrt(N) and the training noise does not; the
    effect is linear in the knob's scale."""
    from scipy.stats import norm

    if not 0 < power < 1:
        raise ValueError(f"parameter power: expected a number between 0 and 1 (e.g. 0.8), got {power!r}")
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    t = ev.table
    rows = []
    for (n, model, key, group), base in t[t["setting"] == ALL_OFF].groupby(["cohort", "model", "estimand", "group"],
                                                                           sort=False):
        if key not in estimands:
            continue
        b = base.iloc[0]
        sd1 = b["se_train"] * np.sqrt(max(1, b["seeds"]))  # training noise of one trained model
        nt = ev.n_test[n]
        for knob in dict.fromkeys(t["knob"].dropna()):
            sub = t[(t["cohort"] == n) & (t["model"] == model) & (t["estimand"] == key) & (t["group"] == group)
                    & (t["knob"] == knob)]
            if sub.empty or ((sub["change"] == 0) & (sub["change_low"] == 0) & (sub["change_high"] == 0)).all():
                continue  # the knob leaves what this estimand reads unchanged (e.g. labels, for an input knob)
            # the bootstrap SE with every knob off; where that is 0 (no sampling variation without the bias, e.g.
            # every true finding documented), the SE at the knob's smallest setting
            se = b["se_boot"] if b["se_boot"] > 0 else float(sub.sort_values("scale")["se_boot"].iloc[0])
            s = sub["scale"].to_numpy(float)
            point = float((s * sub["change"].to_numpy(float)).sum() / (s * s).sum())
            diffs = [ev.replicates[(n, lab, model, key, group)] - ev.replicates[(n, ALL_OFF, model, key, group)]
                     for lab in sub["setting"]]
            reps = (s[:, None] * np.stack(diffs)).sum(0) / (s * s).sum()
            lo, hi = ci95(reps)
            responds = bool(np.isfinite(lo) and (lo > 0 or hi < 0))
            row = {"cohort": display_name(n), "model": model, "estimand": ESTIMANDS[key], "group": group, "knob": knob,
                   "slope per ×1": point, "slope low": lo, "slope high": hi, "se (all off)": se,
                   "training sd": sd1, "test stays": nt}
            for prof, patients in sizes.items():
                if patients is None:
                    row[f"{prof}: smallest scale"] = np.nan
                    continue
                big_n = max(1.0, patients * test_share[n])
                mde = z * np.sqrt(se ** 2 * nt / big_n + sd1 ** 2)
                row[f"{prof}: test stays"] = round(big_n)
                row[f"{prof}: smallest scale"] = mde / abs(point) if responds else np.inf
            need = (abs(point) / z) ** 2 - sd1 ** 2  # the bootstrap variance an audit may have at most
            row["test stays for ×1"] = nt * se ** 2 / need if responds and need > 0 else np.inf
            rows.append(row)
    return pd.DataFrame(rows)


def mde_curve(power_rows: pd.DataFrame, n_grid=None, power: float = 0.8, alpha: float = 0.05) -> pd.DataFrame:
    """The smallest detectable knob scale as a function of the test stays ``N`` for every row of
    :func:`power_table` whose slope is clear: ``z * sqrt(se^2 n / N + sd^2) / |slope|`` on ``n_grid`` (default 50 to
    100,000 stays, log-spaced). Long: ``cohort, model, estimand, group, knob, test stays, smallest scale``
    (chapter 08's power figure)."""
    from scipy.stats import norm

    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    grid = np.geomspace(50, 100_000, 40) if n_grid is None else np.asarray(n_grid, dtype=float)
    parts = []
    for d in power_rows.to_dict("records"):
        slope, lo, hi = d["slope per ×1"], d["slope low"], d["slope high"]
        if not (np.isfinite(lo) and (lo > 0 or hi < 0)):
            continue
        mde = z * np.sqrt(d["se (all off)"] ** 2 * d["test stays"] / grid + d["training sd"] ** 2) / abs(slope)
        parts.append(pd.DataFrame({"cohort": d["cohort"], "model": d["model"], "estimand": d["estimand"],
                                   "group": d["group"], "knob": d["knob"], "test stays": grid, "smallest scale": mde}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["cohort", "model", "estimand", "group", "knob", "test stays", "smallest scale"])


def _scale_text(x: float) -> str:
    return "not at any size (no clear response)" if not np.isfinite(x) else f"×{x:.2g}"


def _path_sentences(recovery: pd.DataFrame, lead: str, strong: float, n_test: dict) -> list[str]:
    """One sentence per cohort (chapter 08's answers): for each input knob (risk-shift estimand), whether the
    structured probe recovers it and whether the ``lead`` embedding model does, and what that says: the knob is in
    the fields but the notes' embeddings wash it out, both find it, or it is not recoverable at this size."""
    key = ESTIMANDS["risk_shift|truth"]
    out = []
    for cohort in dict.fromkeys(recovery["cohort"]):
        rc = recovery[(recovery["cohort"] == cohort) & (recovery["estimand"] == key)]
        bits = []
        for knob in dict.fromkeys(rc["knob"]):
            p = _row(rc, knob=knob, model=PROBE)
            e = _row(rc, knob=knob, model=lead)
            if p is None or e is None:
                continue
            pv, mv = p["recovered"] == "yes", e["recovered"] == "yes"
            what = ("the knob is in the data, but the path through the notes' embeddings washes it out" if pv and not mv
                    else "both find it" if pv and mv
                    else "the embedding model finds it although the probe on the fields does not clearly" if mv
                    else f"not recoverable at this size: even the fields the notes are written from do not show it "
                         f"clearly on {n_test.get(cohort, 0):,} test stays")
            bits.append(f"`{knob}` ×{strong:g}: through the structured fields the risk shift moves by "
                        f"{p['effect (vs all off)']} ({'recovered' if pv else 'not recovered'}), through the notes "
                        f"(`{lead}` model) by {e['effect (vs all off)']} ({'recovered' if mv else 'not recovered'}): "
                        + what)
        if bits:
            out.append(f"**Through the fields or through the notes? {cohort}** (the probe: a logistic regression on the "
                       "structured fields each note is written from, trained on the same stays):\n"
                       + _bullets(bits))
    return out


def setting_in_prose(setting: str) -> str:
    """A setting's name for a sentence: the knob marked as code, as the book names parameters (``unequal_access ×3``
    -> ```unequal_access` ×3``); ``all off`` and the other settings without a knob as they are. Used by
    :func:`answers`."""
    knob, sep, scale = setting.partition(" ×")
    return f"`{knob}`{sep}{scale}" if sep and knob in KNOBS else setting


def answers(ev: Evaluation, recovery: pd.DataFrame, null: pd.DataFrame, power: pd.DataFrame, strong: float,
            profile: str = "demo", lead_model: str | None = None, shift: pd.DataFrame | None = None) -> str:
    """Chapter 08's answers in plain sentences, every number computed from the tables above it: the null check, each
    knob's recovery at the strong setting and which of the paper's gaps see it, which estimand responds to which
    knob, how far the input knobs move the notes' embeddings (``shift``: :func:`embedding_shift`), whether each
    input knob is recovered through the structured fields (the probe, :func:`train_probe`, when trained) and
    through the notes (:func:`_path_sentences`), and the power analysis at the ``profile``'s cohort size
    (``lead_model``: the model the sentences follow, default the first)."""
    t = ev.table
    models = [m for m in dict.fromkeys(t["model"]) if m != DATA_MODEL]
    lead = lead_model or (models[0] if models else DATA_MODEL)
    out = []
    # --- null
    nn = null[null["covers 0"] != "n/a"] if len(null) else null
    cov = int((nn["covers 0"] == "yes").sum()) if len(nn) else 0
    if not len(nn):
        out.append("**No race group is large enough to compare** on the lab's test stays (a group needs `min_group` "
                   "stays and `min_events` positives and negatives): no gap, shift or recovery can be estimated at "
                   "this cohort size; the tables above are empty for that reason.")
        return "\n\n".join(out)
    line = (f"**With every knob off**, {cov} of the {len(nn)} signed estimands have a 95% interval that covers 0 "
            f"(about 95% would by chance)")
    tr = null[(null["training SD (one model)"] != "")]
    if len(tr):
        sd = tr.assign(sd=tr["training SD (one model)"].astype(float))
        rs = sd[sd["estimand"] == ESTIMANDS["risk_shift|truth"]]
        gp = sd[sd["estimand"] == ESTIMANDS["tpr_signed|recorded"]]
        bits = ([f"up to {rs['sd'].max():.3f} log-odds for the risk shift"] if len(rs) else []) + \
               ([f"up to {gp['sd'].max():.3f} for the signed TPR gap"] if len(gp) else [])
        if bits:
            line += ("; retraining a model on the same data with another seed moves its estimates too, by an SD of "
                     + " and ".join(bits) + " (every interval here includes this training noise)")
    out.append(line + ".")
    # --- recovery, knob by knob
    for cohort in dict.fromkeys(recovery["cohort"]):
        rc = recovery[recovery["cohort"] == cohort]
        parts = []
        for knob in dict.fromkeys(rc["knob"]):
            rk = rc[rc["knob"] == knob]
            if (rk["recovered"] == "n/a").all():
                parts.append(f"`{knob}` ×{strong:g}: the {rk['estimand'].iloc[0]} is "
                             + rk["effect (vs all off)"].iloc[0].replace("not measurable here: ", "not measurable here ("
                                                                           ) + ")")
                continue
            r = rk[rk["model"].isin([lead, DATA_MODEL])].iloc[0]
            who = "the data" if r["model"] == DATA_MODEL else f"the `{r['model']}` model"
            s = (f"`{knob}` ×{strong:g}: {r['estimand']}, {r['group']} − White, by {who}: the knob moves it by "
                 f"{r['effect (vs all off)']} ({'recovered' if r['recovered'] == 'yes' else 'not recovered'}); "
                 f"on its own the cohort reads {r['at strong']} (all off {r['all off']}), "
                 + ("which an audit would not tell from 0" if r["audit sees it"] != "yes" else
                    "which an audit would see" if r["recovered"] == "yes" else
                    "which an audit would call different from 0 although the knob did not clearly move it (all off "
                    "reads about the same)"))
            if r["model"] == DATA_MODEL:
                ms = t[(t["cohort"].map(display_name) == cohort) & (t["setting"] == f"{knob} ×{strong:g}")
                       & (t["model"] == lead) & (t["estimand"] == "risk_shift|truth") & (t["group"] == r["group"])]
                if len(ms):
                    m = ms.iloc[0]
                    if m.change == 0 and m.change_low == 0 and m.change_high == 0:
                        s += ("; the models' inputs and labels are those of all off, so every model gap is exactly "
                              "unchanged (the same runs)")
                    else:
                        s += (f"; the `{lead}` model's risk shift moves by "
                              f"{fmt_ci(m.change, m.change_low, m.change_high)} ({verdict(m.change_low, m.change_high)})")
            seen = r["paper's gaps that see it"]
            s += f"; the paper's gaps that see it: {seen}"
            parts.append(s)
        out.append(f"**{cohort}**, strong setting:\n" + _bullets(parts))
    out.extend(_path_sentences(recovery, lead, strong, {display_name(k): v for k, v in ev.n_test.items()}))
    # --- which estimand responds to which knob
    resp = []
    for key in ("tpr_signed|recorded", "dp_signed|recorded", "tpr_signed|truth", "risk_shift|truth"):
        sub = t[(t["estimand"] == key) & (t["model"] == lead) & t["knob"].notna()]
        sub = display_first(sub).drop_duplicates(["cohort", "setting"])  # one race group per setting
        if sub.empty:
            continue
        clear = sub[[verdict(a, b) in ("up", "down") for a, b in zip(sub["change_low"], sub["change_high"])]]
        where = "; ".join(f"{display_name(c)}: {', '.join(map(setting_in_prose, g['setting']))}"
                          for c, g in clear.groupby("cohort", sort=False))
        resp.append(f"the {ESTIMANDS[key]} in {len(clear)} of {len(sub)}" + (f" ({where})" if len(clear) else ""))
    if resp:
        out.append(f"**Which measure moves** (`{lead}` model; knob settings, over the cohorts, whose change from all "
                   "off has a 95% CI excluding 0): " + "; ".join(resp) + ".")
    # --- how far the input knobs move the notes
    if shift is not None and len(shift):
        strong_rows = shift[shift["setting"].str.endswith(f"×{strong:g}")
                            & shift["setting"].str.startswith(("spo2_overread", "under_triage"))]
        bits = [f"{setting_in_prose(r['setting'])} moves the {r['modality']} notes of {r['stays']:,} {r['cohort']} "
                f"stays by a mean cosine "
                f"distance of {r['cosine distance to all off']:.4f}, against {r['between two stays (median)']:.3f} between "
                "two stays' notes" for _, r in strong_rows.iterrows()]
        if bits:
            out.append("**How far the input knobs reach into the notes**: " + "; ".join(bits) + ".")
    # --- power at the profile's size
    col = f"{profile}: smallest scale"
    if col in power.columns:
        for cohort in dict.fromkeys(power["cohort"]):
            pc = power[(power["cohort"] == cohort) & power["model"].isin([lead, DATA_MODEL])]
            n_at = pc[f"{profile}: test stays"].iloc[0] if f"{profile}: test stays" in pc else np.nan
            bits = []
            for knob in dict.fromkeys(pc["knob"]):
                pk = pc[pc["knob"] == knob]
                finite = pk[col].replace(np.inf, np.nan)
                best = pk.loc[finite.idxmin()] if finite.notna().any() else None
                tpr = pk[pk["estimand"] == ESTIMANDS["tpr_signed|recorded"]]
                if best is None:
                    bits.append(f"`{knob}`: no measure here responds clearly")
                    continue
                s = f"`{knob}` from {_scale_text(best[col])} of its default size by the {best['estimand']}"
                if len(tpr):
                    tr = tpr.iloc[0]
                    s += f", the signed TPR gap vs the recorded label {_scale_text(tr[col])}"
                    if np.isfinite(tr["test stays for ×1"]):
                        s += f" (default size with 80% power: about {tr['test stays for ×1']:,.0f} test stays)"
                bits.append(s)
            out.append(f"**Power, {cohort}** (`{lead}` model, {n_at:,.0f} test stays as in the {profile} profile, 80% "
                       f"power, two-sided 5%):\n" + _bullets(bits))
    return "\n\n".join(out)


def _bullets(parts) -> str:
    """Markdown bullets, one per knob, of :func:`answers` (a knob's sentence is long: run together, a cohort's five
    read as one wall of text)."""
    return "\n".join(f"- {part[:1].upper()}{part[1:]}." for part in parts)


#: The estimands of chapter 08's attribution figure: key -> (panel title, axis label).
FOREST_ESTIMANDS = {"tpr_signed|recorded": ("TPR gap, recorded label", "change (rate)"),
                    "tpr_signed|truth": ("TPR gap, truth", "change (rate)"),
                    "dp_signed|recorded": ("selection-rate (DP) gap", "change (rate)"),
                    "risk_shift|truth": ("risk shift at equal need", "change (log-odds)"),
                    "label_shift|truth": ("recorded label at equal need", "change (probability)"),
                    "documentation_gap|truth": ("X-ray findings documented", "change (probability)")}


def source_note(synthetic: bool) -> str:
    """Chapter 08's opening note: what it does, or why it stops (a real source has no knobs to switch)."""
    if synthetic:
        return ("Synthetic cohorts: the lab regenerates chapter 01's cohorts with the bias knobs switched one at a "
                "time.")
    return ("**This chapter needs synthetic cohorts.** With `source: real` the data are what they are: there are no "
            "bias knobs to switch off and on, and no latent truth to measure against. The chapter stops here; the "
            "other chapters report the real data's gaps against the recorded labels.")


def lab_note(lab: Lab) -> str:
    """One sentence on the lab that was built: settings, stays, what was left out, time (chapter 08)."""
    parts = []
    for n, per in lab.cohorts.items():
        d = per[ALL_OFF].data
        parts.append(f"{display_name(n)}: {len(d.stays):,} stays ({lab.train_stays.get(n, 0):,} training, "
                     f"{int((d.stays['split'] == 'test').sum()):,} test; chapter 01 has {lab.full_test[n]:,} test "
                     f"stays), {lab.dropped[n]} left out because some setting leaves their target undefined")
    embedded = sum(lc.embedded for per in lab.cohorts.values() for lc in per.values())
    read = sum(lc.transcribed for per in lab.cohorts.values() for lc in per.values())
    stays = sum(len(per[ALL_OFF].data.stays) for per in lab.cohorts.values())
    return (f"{len(lab.settings)} settings per cohort built in {lab.seconds:.0f} s, {embedded:,} new texts embedded "
            f"({embedded / max(1, stays):.2f} per stay of the lab) and {read:,} X-rays read. " + "; ".join(parts) + ".")


def run_note(runs: LabRuns, ev: Evaluation) -> str:
    """One sentence on the training and measuring (chapter 08): fits, wall time, resamples, test stays."""
    tests = ", ".join(f"{display_name(n)} {k:,}" for n, k in ev.n_test.items())
    return (f"{len(runs.log)} fits in {runs.seconds:.0f} s of wall time (identical settings reuse their fits); "
            f"every estimand on the same {ev.n_boot} resamples of the test stays ({tests}).")


def test_share(lab: Lab) -> dict:
    """Test stays per generated patient of each cohort (chapter 01's test stays over the generator's ``n``, its
    ``n_patients``), to turn a profile's ``n_patients`` into test stays in the power analysis (chapter 08)."""
    return {n: lab.full_test[n] / max(1, lab.patients[n]) for n in lab.cohorts}


def power_display(power_rows: pd.DataFrame, profile: str, models) -> pd.DataFrame:
    """:func:`power_table` for the page (chapter 08): the rows of ``models`` (the lead model and :data:`DATA_MODEL`),
    indexed by cohort, knob and estimand (with the group when more than one is compared), and three columns: the
    response per unit of knob scale with its 95% CI, the smallest knob scale detected at ``profile``'s size (``—``
    when the measure does not respond to the knob; the column is left out when ``profile`` has no size), and the test
    stays an audit needs for the default size. Every other column and model is in the CSV of the full table."""
    t = power_rows[power_rows["model"].isin(list(models))].copy() if len(power_rows) else power_rows.copy()
    if t.empty:
        return t
    t["response per ×1 [95% CI]"] = [fmt_ci(a, b, c) for a, b, c in zip(t["slope per ×1"], t["slope low"], t["slope high"])]
    scale = f"{profile}: smallest scale"
    shown = f"smallest scale ({profile})"
    if scale in t.columns:
        t[shown] = [("—" if np.isinf(v) else ("" if not np.isfinite(v) else f"×{v:.2g}")) for v in t[scale]]
    t["test stays for ×1"] = ["—" if not np.isfinite(v) else f"{v:,.0f}" for v in t["test stays for ×1"]]
    if t.groupby(["cohort", "knob", "estimand"])["group"].nunique().max() > 1:
        t["estimand"] = t["estimand"] + " (" + t["group"].astype(str) + ")"
    keep = ["response per ×1 [95% CI]", *([shown] if scale in t.columns else []), "test stays for ×1"]
    return t.set_index(["cohort", "knob", "estimand"])[keep]


def lab_summary(lab: Lab, runs: LabRuns, ev: Evaluation, seconds: float) -> dict:
    """Chapter 08's ``findings`` artifact: the settings, what was rebuilt and reused per cohort and setting, the stays
    left out, the test stays, and the timings."""
    reuse = lab.reuse_table().reset_index()
    return {"settings": [{"label": s.label, "knob": s.knob, "scale": s.scale, "knobs": dict(s.knobs)}
                         for s in lab.settings],
            "rebuilt": reuse.to_dict(orient="records"), "left_out": lab.dropped, "train_stays": lab.train_stays,
            "test_stays": ev.n_test, "n_boot": ev.n_boot, "fits": int(len(runs.log)),
            "seconds": {"build": round(lab.seconds, 1), "train": round(runs.seconds, 1), "total": round(seconds, 1)}}
