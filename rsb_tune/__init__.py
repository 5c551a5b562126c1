"""rsb-tune: "ResNet strikes back" recipes, hyperparameter grids and seed studies with timm and Ray Tune.

The public surface is small; heavy modules (torch, timm, ray) are imported only when used::

    from rsb_tune import RECIPES, get_recipe, resolve, train
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["RECIPES", "get_recipe", "resolve", "load_space", "build_plan", "train", "load_splits", "__version__"]

_LAZY = {
    "RECIPES": "rsb_tune.recipes",
    "get_recipe": "rsb_tune.recipes",
    "resolve": "rsb_tune.config",
    "load_space": "rsb_tune.space",
    "build_plan": "rsb_tune.space",
    "train": "rsb_tune.trial",
    "load_splits": "rsb_tune.data",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rsb_tune' has no attribute {name!r}")
