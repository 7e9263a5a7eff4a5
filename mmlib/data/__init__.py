"""Cohorts: synthetic generators in the real on-disk layouts (:mod:`.synth`), the loader (:mod:`.cohort`) and
chapter 01's cohorts from its parameters (:mod:`.prepare`: checked, generated or located, loaded).

The layouts' names (``COHORTS``, ``MODALITIES``, ...) live in :mod:`mmlib.schema` and are re-exported
here. The package also re-exports the generator (``generate``, ``synthetic_root``) for the command line;
the loader module itself (:mod:`.cohort`) never imports the generator.
"""
from ..schema import COHORTS, MODALITIES
from .cohort import Cohort, load_cohort
from .latent import GROUP_EFFECTS, KNOB_DOCS, KNOB_REFERENCES, BiasKnobs
from .synth import generate, synthetic_root

__all__ = ["Cohort", "load_cohort", "BiasKnobs", "GROUP_EFFECTS", "KNOB_DOCS", "KNOB_REFERENCES", "COHORTS", "MODALITIES",
           "generate", "synthetic_root"]
