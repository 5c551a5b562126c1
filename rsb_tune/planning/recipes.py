"""The "ResNet strikes back" training recipes A1, A2 and A3 as named, immutable values.

A recipe holds the paper's ImageNet-1k values for ResNet-50 (Wightman, Touvron, Jégou 2021,
arXiv 2110.00476). It never holds run-level choices (dataset, model, image size of a small
dataset): those come from a dataset profile and the command line, see :mod:`rsb_tune.planning.config`.

Sources, per value, are in ``../shared/RSB_REFERENCE.md``. Values the paper itself does not
confirm are listed in :attr:`Recipe.unconfirmed`; they stay overridable like every other key.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any, Mapping

__all__ = ["Recipe", "RECIPES", "DEFAULT_RECIPE", "get_recipe", "recipe_names"]

DEFAULT_RECIPE = "A2"  # the recipe of the paper's 100-seed study


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One training procedure; field names are trial-config keys (see :mod:`rsb_tune.planning.config`)."""

    name: str
    description: str
    epochs: int
    batch_size: int
    img_size: int
    test_img_size: int
    opt: str
    lr: float
    weight_decay: float
    sched: str
    warmup_epochs: float
    loss: str
    smoothing: float
    bce_target_thresh: float
    mixup_alpha: float
    cutmix_alpha: float
    auto_augment: str
    repeated_aug: int
    drop_path: float
    crop_pct: float
    color_jitter: float
    re_prob: float
    paper_val_top1: float
    paper_v2_top1: float
    unconfirmed: frozenset = frozenset()

    def hyperparameters(self) -> dict[str, Any]:
        """The recipe's trial-config values (no name, description, paper results)."""
        skip = {"name", "description", "paper_val_top1", "paper_v2_top1", "unconfirmed"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}

    def to_dict(self) -> dict[str, Any]:
        """Everything, for ``rsb-tune recipes show``; unconfirmed keys listed by name."""
        out = dataclasses.asdict(self)
        out["unconfirmed"] = sorted(self.unconfirmed)
        return out


_COMMON = dict(
    batch_size=2048,
    opt="lamb",
    sched="cosine",
    warmup_epochs=5,
    loss="bce",
    # Only community command lines give the BCE target threshold; the paper does not.
    bce_target_thresh=0.2,
    cutmix_alpha=1.0,
    crop_pct=0.95,
    color_jitter=0.0,
    re_prob=0.0,
    test_img_size=224,
    unconfirmed=frozenset({"bce_target_thresh"}),
)

RECIPES: Mapping[str, Recipe] = MappingProxyType(
    {
        "A1": Recipe(
            name="A1",
            description="600 epochs, the most accurate and most expensive procedure",
            epochs=600,
            img_size=224,
            lr=5e-3,
            weight_decay=0.01,
            smoothing=0.1,
            mixup_alpha=0.2,
            auto_augment="rand-m7-mstd0.5-inc1",
            repeated_aug=3,
            drop_path=0.05,
            paper_val_top1=80.4,
            paper_v2_top1=68.47,
            **_COMMON,
        ),
        "A2": Recipe(
            name="A2",
            description="300 epochs, the procedure of the paper's 100-seed study",
            epochs=300,
            img_size=224,
            lr=5e-3,
            weight_decay=0.02,
            smoothing=0.0,
            mixup_alpha=0.1,
            auto_augment="rand-m7-mstd0.5-inc1",
            repeated_aug=3,
            drop_path=0.05,
            paper_val_top1=79.8,
            paper_v2_top1=67.81,
            **_COMMON,
        ),
        "A3": Recipe(
            name="A3",
            description="100 epochs at low train resolution (160 px), the cheap procedure",
            epochs=100,
            img_size=160,
            lr=8e-3,
            weight_decay=0.02,
            smoothing=0.0,
            mixup_alpha=0.1,
            auto_augment="rand-m6-mstd0.5-inc1",
            repeated_aug=1,
            drop_path=0.0,
            paper_val_top1=78.1,
            paper_v2_top1=65.67,
            **_COMMON,
        ),
    }
)


def recipe_names() -> list[str]:
    return list(RECIPES)


def get_recipe(name: str) -> Recipe:
    """Look a recipe up by name (case-insensitive); unknown names raise :class:`ConfigError`."""
    from rsb_tune.errors import ConfigError, suggest

    key = name.upper() if isinstance(name, str) else name
    if key not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; allowed: {', '.join(RECIPES)}{suggest(str(name), RECIPES)}")
    return RECIPES[key]
