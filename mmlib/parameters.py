"""The declared type and range of every chapter parameter, checked before any chapter runs.

:func:`validate` is called by :func:`mmlib.pipeline.plan` (so by ``python -m mmlib build`` / ``run`` and by a
chapter run by hand) on the merged profile and command-line values. A value that does not fit its
declaration stops the run with a message naming the parameter, the value and what is expected, e.g.
``parameter lr: got -1; expected a number > 0``. A parameter without a declaration in :func:`specs` (e.g.
of a chapter a user adds) must have the type of its default in the chapter's ``parameters`` cell.
"""
from __future__ import annotations

from collections.abc import Callable

Check = Callable[[object], "str | None"]  # None when the value fits, else what was expected


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def integer(lo: int | None = None, hi: int | None = None, *, nonzero: bool = False) -> Check:
    """A whole number in ``[lo, hi]`` (either bound optional)."""
    what = "a whole number" + (f" >= {lo}" if lo is not None else "") + (f" <= {hi}" if hi is not None else "") \
        + (" other than 0" if nonzero else "")

    def check(v):
        ok = _is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi) and not (nonzero and v == 0)
        return None if ok else what
    return check


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False) -> Check:
    """A number between ``lo`` and ``hi`` (inclusive unless ``*_open``)."""
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")
    what = "a number" + (" " + " and ".join(parts) if parts else "")

    def check(v):
        if not _is_number(v) or v != v:  # NaN
            return what
        if lo is not None and (v <= lo if lo_open else v < lo):
            return what
        if hi is not None and (v >= hi if hi_open else v > hi):
            return what
        return None
    return check


def text() -> Check:
    return lambda v: None if isinstance(v, str) and v else "a non-empty string"


def flag() -> Check:
    return lambda v: None if isinstance(v, bool) else "true or false"


def one_of(*choices) -> Check:
    return lambda v: None if v in choices else "one of " + ", ".join(repr(c) for c in choices)


def optional(inner: Check) -> Check:
    """``None`` (null in YAML) or what ``inner`` expects."""
    def check(v):
        if v is None:
            return None
        why = inner(v)
        return None if why is None else f"null or {why}"
    return check


def either(*checks: Check) -> Check:
    def check(v):
        whys = [c(v) for c in checks]
        return None if None in whys else " or ".join(whys)
    return check


def list_of(item: Check, *, min_len: int = 1, length: int | None = None, unique: bool = False,
            total: float | None = None) -> Check:
    """A list whose every element fits ``item``; at least ``min_len`` long (exactly ``length`` when given),
    without repeats when ``unique``, summing to ``total`` (within 1e-6) when given."""
    size = f"exactly {length}" if length is not None else f"at least {min_len}"

    def check(v):
        if not isinstance(v, list):
            return f"a list ({size} items)"
        if (length is not None and len(v) != length) or len(v) < min_len:
            return f"a list of {size} items, got {len(v)}"
        for x in v:
            why = item(x)
            if why is not None:
                return f"a list whose every item is {why} (item {x!r} is not)"
        if unique and len(set(map(repr, v))) != len(v):
            return "a list without repeats"
        if total is not None and abs(sum(v) - total) > 1e-6:
            return f"a list summing to {total:g} (it sums to {sum(v):g})"
        return None
    return check


def mapping(values: Check | None = None) -> Check:
    """A mapping (``{}`` in YAML) whose values fit ``values``."""
    def check(v):
        if not isinstance(v, dict):
            return "a mapping such as {name: value}"
        if values is not None:
            for k, x in v.items():
                why = values(x)
                if why is not None:
                    return f"a mapping whose values are {why} ({k}: {x!r} is not)"
        return None
    return check


def specs() -> dict[str, Check]:
    """Every declared parameter and its check (built on call: it reads the model, perturbation and cohort
    names from their modules)."""
    from .data.prepare import RACE_GROUPINGS, SOURCES
    from .interference import PERTURBATIONS
    from .models import ALL_MODELS
    from .schema import COHORTS

    models = list_of(one_of(*ALL_MODELS), unique=True)
    rates = list_of(number(0, 1), unique=True)
    seed = integer(0)
    positive = integer(1)
    return {
        # chapter 01: data
        "cohorts": list_of(one_of(*COHORTS), unique=True),
        "source": one_of(*SOURCES),
        "roots": mapping(text()),
        "n_patients": integer(20),
        "seed": seed,
        "bias_knobs": mapping(number(0)),
        "informativeness": mapping(number(0, 1)),
        "image_size": integer(64),
        "split_fractions": list_of(number(0, 1, lo_open=True), length=3, total=1.0),
        "race_grouping": one_of(*RACE_GROUPINGS),
        "mds_ed_target": text(),
        # chapter 02: transcription and embeddings
        "cxr_backend": one_of("offline", "qwen2.5-vl"),
        "ecg_backend": one_of("offline", "pulse-7b"),
        "cxr_model_path": text(),
        "ecg_model_path": text(),
        "cxr_prompt": optional(text()),
        "ecg_prompt": optional(text()),
        "max_new_tokens": positive,
        "encoder": text(),
        "max_length": integer(8),
        "batch_size": positive,
        "device": optional(text()),
        "include_race": flag(),
        # chapters 03-07: models and training
        "single_models": models,
        "fusion_models": models,
        "sweep_models": models,
        "grid_models": models,
        "interference_models": models,
        "seeds": list_of(seed, unique=True),
        "width": positive,
        "heads": positive,
        "dropout": number(0, 1, hi_open=True),
        "lr": number(0, lo_open=True),
        "weight_decay": number(0),
        "train_batch_size": positive,
        "max_epochs": positive,
        "patience": positive,
        "threshold": either(number(0, 1), one_of("val_f1", "val_youden")),
        "n_jobs": integer(nonzero=True),
        "n_boot": positive,
        "min_group": positive,
        "min_events": integer(0),
        "order_mimic_eye": list_of(text(), unique=True),
        "order_mds_ed": list_of(text(), unique=True),
        "every_order": flag(),
        "modality_dropout": number(0, 1, hi_open=True),
        # chapters 05-07: missingness and interference
        "missing_rates": rates,
        "draws": positive,
        "modality_rates": rates,
        "modality_draws": positive,
        "train_rates": rates,
        "test_rates": rates,
        "group_missing": optional(mapping(number(0))),
        "mask_seed": seed,
        "sweep_boot": positive,
        "rank_draws": positive,
        "robust_rates": rates,
        "robust_draws": positive,
        "perturbations": list_of(one_of(*PERTURBATIONS), unique=True),
        "perturb_seed": seed,
        "control": flag(),
        "consistency_weight": number(0),
        "finetune_epochs": integer(0),
    }


def _type_name(v) -> str:
    return {bool: "true/false", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "a mapping"}.get(type(v), type(v).__name__)


def _like_default(default) -> Check:
    """Fallback for an undeclared parameter: the type of its default (numbers interchangeable)."""
    def check(v):
        if default is None or v is None:
            return None
        if _is_number(default) and _is_number(v):
            return None
        return None if type(v) is type(default) else _type_name(default) + " (like its default)"
    return check


def validate(params: dict, defaults: dict, *, infra=("profile", "artifact_dir", "inputs")) -> None:
    """Check every parameter in ``params`` that a chapter declares (``defaults``: name -> default value)
    against :func:`specs`, or against its default's type when undeclared. Raises ValueError listing every
    problem, each naming the parameter, the value and what is expected."""
    declared = specs()
    problems = []
    for name, value in params.items():
        if name in infra or name not in defaults:
            continue
        why = (declared.get(name) or _like_default(defaults[name]))(value)
        if why is not None:
            hint = (" (it was read as text: is the YAML well-formed, e.g. a closing bracket?)"
                    if isinstance(value, str) and value[:1] in "[{" else "")
            problems.append(f"parameter {name}: got {value!r}; expected {why}{hint}")
    if problems:
        raise ValueError("\n".join(problems))

