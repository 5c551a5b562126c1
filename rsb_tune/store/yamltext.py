"""YAML read with limits, for the engine: a study's ``study.yaml`` and the space files.

The loader lives in :mod:`analysis.files` (the lower layer: the analysis reads ``study.yaml``
too, and never imports the engine); this module is the engine's name for it."""

from __future__ import annotations

from analysis.files import MAX_BYTES, MAX_DEPTH, load_yaml, text_timestamps, yaml_problem

__all__ = ["MAX_BYTES", "MAX_DEPTH", "load_yaml", "text_timestamps", "yaml_problem"]
