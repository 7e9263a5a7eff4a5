"""Cohorts: synthetic generators in the real on-disk layouts (:mod:`.synth`) and the loader (:mod:`.cohort`)."""
from .cohort import Cohort, load_cohort
from .latent import GROUP_EFFECTS, KNOB_DOCS, KNOB_REFERENCES, BiasKnobs
from .synth import COHORTS, MODALITIES, generate, synthetic_root

__all__ = ["Cohort", "load_cohort", "BiasKnobs", "GROUP_EFFECTS", "KNOB_DOCS", "KNOB_REFERENCES", "COHORTS", "MODALITIES",
           "generate", "synthetic_root"]
