"""The parameter profiles in ``params/``: every profile passes the checks a build makes before any chapter runs,
and the ``workshop`` profile (issue 16) and the commands of the facilitator's page (``workshop.md``) set only
parameters that some chapter declares, so that a misspelt name is an error, not a setting silently ignored.

The checks are the pipeline's own (:func:`mmlib.pipeline.plan`: unknown names via ``_check_overrides``, types and
ranges via :func:`mmlib.parameters.validate`); these tests make sure the workshop's files go through them.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from mmlib import pipeline

ROOT = Path(__file__).resolve().parents[1]
#: a command of the facilitator's page that builds or re-runs with the workshop profile
WORKSHOP_COMMAND = re.compile(r"\.venv/bin/python -m mmlib (?:build|run \d\d)[^`\n]*--profile workshop[^`\n]*")
#: any command that builds or re-runs, up to the end of the code span, the line (continued lines included) or a
#: shell comment
DOC_COMMAND = re.compile(r"(?:\.venv/bin/)?python -m mmlib (?:build|run \d\d)(?:\\\n|[^`\n#\\])*")


def _declared() -> set[str]:
    return set().union(*(c.parameters for c in pipeline.chapters().values())) - set(pipeline.INFRA)


def test_the_workshop_profile_passes_the_parameter_checks():
    params = pipeline.load_profile("workshop")
    steps = pipeline.plan(params)  # raises on an unknown name, a wrong type or a value out of range
    assert [ch.id for ch, _ in steps] == list(pipeline.chapters())  # every chapter still runs


def test_every_workshop_key_is_a_parameter_of_some_chapter():
    params = pipeline.load_profile("workshop")
    set_by_profile = set(params) - set(pipeline.INFRA)
    assert set_by_profile, "the workshop profile sets nothing"
    assert set_by_profile <= _declared(), sorted(set_by_profile - _declared())
    # the same check, as the build makes it, refuses a misspelt name in a copy of the profile
    with pytest.raises(ValueError, match=r"\['lab_stay'\] are not parameters of any chapter"):
        pipeline.plan({**params, "lab_stay": 100})


def _accept(command: str) -> bool:
    """Parse ``command`` as the command line parses it and pass it through the checks the command makes before it
    runs anything (:func:`mmlib.pipeline.check_run_overrides` for ``run``, then :func:`mmlib.pipeline.plan`); raises
    on a misspelt or misplaced parameter. Returns whether it overrides a parameter (``False`` for the
    ``-p NAME VALUE`` placeholder, which is not checked)."""
    words = shlex.split(command)
    words = words[words.index("mmlib") + 1:]
    overrides = [(words[i + 1], pipeline.parse_value(words[i + 2])) for i, w in enumerate(words) if w in ("-p", "--param")]
    if any(name == "NAME" for name, _ in overrides):
        return False
    profile = words[words.index("--profile") + 1] if "--profile" in words else "demo"
    upto = words[1] if words[0] == "run" else None
    if upto:
        pipeline.check_run_overrides(upto, [name for name, _ in overrides])
    pipeline.plan(pipeline.load_profile(profile, overrides), upto=upto)
    return bool(overrides)


def test_every_workshop_command_on_the_facilitators_page_is_accepted():
    """Each ``.venv/bin/python -m mmlib build|run NN --profile workshop -p NAME VALUE`` on workshop.md parses as
    the command line parses it and passes the parameter checks (a misspelt parameter on the page fails here)."""
    commands = WORKSHOP_COMMAND.findall((ROOT / "workshop.md").read_text())
    assert len(commands) >= 4, commands
    assert sum(_accept(c) for c in commands) >= 3  # the page's live experiments change parameters


def _documents() -> dict[str, str]:
    """The texts a reader copies commands from: the README, the preface, the facilitator's page and every chapter's
    markdown (objectives, exercises and their solutions)."""
    import nbformat

    docs = {name: (ROOT / name).read_text() for name in ("README.md", "index.md", "workshop.md")}
    for nb in sorted((ROOT / "chapters").glob("*.ipynb")):
        docs[f"chapters/{nb.name}"] = "\n".join(c.source for c in nbformat.read(nb, as_version=4).cells
                                               if c.cell_type == "markdown")
    return docs


def test_every_command_a_reader_can_copy_is_accepted():
    """Every ``python -m mmlib build|run NN ... -p NAME VALUE`` in the README, the preface, the facilitator's page and
    the chapters' text passes the checks the command itself makes first: no misspelt parameter, no value of the
    wrong type, and no ``run NN`` given a parameter only another chapter reads (which would change nothing)."""
    found, failed = 0, []
    for name, text in _documents().items():
        for command in DOC_COMMAND.findall(text):
            found += 1
            try:
                _accept(command)
            except ValueError as e:
                failed.append(f"{name}: {command}\n    {e}"[:400])
    assert found >= 30, f"only {found} commands found: is the pattern still matching the documents?"
    assert not failed, "\n".join(failed)


def test_run_refuses_a_parameter_that_only_another_chapter_reads(capsys):
    """``mmlib run 05 -p lab_stays 100``: chapter 08's parameter would change nothing in chapter 05, so the command
    line stops with an error that names chapter 08, before anything runs; a parameter of an upstream chapter (``seed``,
    chapter 01's) is accepted, and a name no chapter declares keeps plan's own error."""
    import signal

    from mmlib.__main__ import main

    handler = signal.getsignal(signal.SIGTERM)
    assert main(["run", "05", "-p", "lab_stays", "100"]) == 2
    assert signal.getsignal(signal.SIGTERM) is handler, "the command line puts the SIGTERM handler back on return"
    err = capsys.readouterr().err
    assert "lab_stays is a parameter of chapter 08" in err and "run 05" in err
    pipeline.check_run_overrides("05", ["seed", "bias_knobs.label_bias", "draws"])
    pipeline.check_run_overrides("08", ["lab_stays", "knobs"])
    pipeline.check_run_overrides("03", ["nonsense"])  # left to plan: "not parameters of any chapter"
    with pytest.raises(ValueError, match=r"draws is a parameter of chapter 05.*change nothing"):
        pipeline.check_run_overrides("04", ["draws"])
