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


def test_every_workshop_command_on_the_facilitators_page_is_accepted():
    """Each ``.venv/bin/python -m mmlib build|run NN --profile workshop -p NAME VALUE`` on workshop.md parses as
    the command line parses it and passes the parameter checks (a misspelt parameter on the page fails here)."""
    page = (ROOT / "workshop.md").read_text()
    commands = WORKSHOP_COMMAND.findall(page)
    assert len(commands) >= 4, commands
    overridden = 0
    for command in commands:
        words = shlex.split(command)
        overrides = [(words[i + 1], pipeline.parse_value(words[i + 2]))
                     for i, w in enumerate(words) if w in ("-p", "--param")]
        if any(name == "NAME" for name, _ in overrides):
            continue  # the page's placeholder, `-p NAME VALUE`
        overridden += bool(overrides)
        upto = words[4] if words[3] == "run" else None
        pipeline.plan(pipeline.load_profile("workshop", overrides), upto=upto)
    assert overridden >= 3  # the page's live experiments change parameters
