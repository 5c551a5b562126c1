"""rsb-tune: "ResNet strikes back" recipes, hyperparameter grids and seed studies with timm and Ray Tune.

The public surface is small, the size of Optuna's; heavy modules (torch, timm, ray) are
imported only when used::

    import rsb_tune
    study = rsb_tune.seeds(n=4, recipe="A2", epochs=2)   # run a study, get it back
    study.trials.val_top1.mean(), study.status()
    rsb_tune.grid("lamb_bce", epochs=1)                   # a shipped space, or a path
    rsb_tune.resume(NAME); rsb_tune.load(NAME).report(); rsb_tune.list_studies()

Studies live in ``$RSB_TUNE_STORAGE`` when it is set, else in ``./rsb-results``
(:func:`default_storage`), unless a function is given ``storage=``. Every function takes the
command line's options as keyword arguments and raises :class:`UserError` on bad input (the
CLI prints the same message, its arguments spelled as flags, with exit code 2);
``rsb_tune.compare(A, B)`` returns a :class:`Comparison`.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    # studies
    "seeds",
    "grid",
    "resume",
    "load",
    "list_studies",
    "newest_study",
    "compare",
    "Comparison",
    "Study",
    "StudyStatus",
    # results made elsewhere
    "import_results",
    # sequential: A against B until decided, how many seeds
    "ab",
    "plan_ab",
    "start_ab",
    "PairedResult",
    "seeds_needed_table",
    # planning without running
    "plan_seeds",
    "plan_grid",
    "start",
    "StudyPlan",
    "spaces",
    # options and errors
    "RunOptions",
    "default_storage",
    "UserError",
    # building blocks
    "RECIPES",
    "get_recipe",
    "resolve",
    "train",
    "__version__",
]

_LAZY = {
    **dict.fromkeys(["seeds", "grid", "resume", "load", "list_studies", "newest_study", "compare", "Study", "StudyStatus", "plan_seeds", "plan_grid", "start", "StudyPlan", "spaces", "ab", "plan_ab", "start_ab", "PairedResult", "seeds_needed_table", "import_results"], "rsb_tune.api"),
    "Comparison": "analysis.comparison",
    "RunOptions": "rsb_tune.options",
    "default_storage": "rsb_tune.options",
    "UserError": "rsb_tune.errors",
    "RECIPES": "rsb_tune.planning.recipes",
    "get_recipe": "rsb_tune.planning.recipes",
    "resolve": "rsb_tune.planning.config",
    "train": "rsb_tune.training.trial",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rsb_tune' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
