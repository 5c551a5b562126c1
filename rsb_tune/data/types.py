"""The data's types, and which config keys say what data a trial trains on.

This module imports nothing else of rsb-tune: the readers (:mod:`rsb_tune.data.readers`), the
registry of datasets (:mod:`rsb_tune.data.registry`) and the planning layer all build on it.
The data keys' defaults live here (:class:`DataOptions`); the config's fields take them from it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = ["Profile", "Split", "DatasetSplits", "DatasetSpec", "DataOptions", "DATA_KEYS", "DEFAULT_DATASET", "data_spec"]

DEFAULT_DATASET = "digits"  # the embedded default (scikit-learn's bundled digits)
# the trial-config keys that say which data a trial trains on (scope "data" in the config's fields)
DATA_KEYS = ("dataset", "data_path", "v2_path", "val_holdout", "val_holdout_seed", "memory_budget_mb")


@dataclasses.dataclass(frozen=True)
class Profile:
    """Run-level defaults for one dataset. ``epoch_scale`` multiplies a recipe's epochs (so the
    A1:A2:A3 ratio is kept); ``values`` are trial-config keys; ``why`` explains adjustments."""

    name: str
    epoch_scale: float
    values: Mapping[str, Any]
    why: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Split:
    """One split: its images - decoded uint8 (N, H, W, 3), a list of uint8 (H, W, 3) arrays of
    differing sizes, or a lazy source of RGB PIL images (:mod:`rsb_tune.data.readers`) or file
    paths - its integer labels, and the files it came from."""

    images: np.ndarray | Sequence[Any]
    labels: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def decoded(self) -> bool:
        return isinstance(self.images, np.ndarray) or (isinstance(self.images, list) and bool(self.images) and isinstance(self.images[0], np.ndarray))


@dataclasses.dataclass(frozen=True)
class DatasetSplits:
    """What a study decodes once and shares with every trial (through Ray's object store)."""

    name: str
    classes: tuple[str, ...]
    train: Split
    val: Split
    v2: Split | None
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # root, storage choice, held-out split

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def sizes(self) -> dict[str, int]:
        return {"n_train": len(self.train), "n_val": len(self.val), "n_v2": len(self.v2) if self.v2 else 0}

    def describe(self) -> dict[str, Any]:
        """What study.yaml and ``--dry-run`` record: which files play each split, and whether
        the study trains from memory or streams (with the reason)."""
        splits = {k: {"n": len(s), "from": s.source} for k, s in (("train", self.train), ("val", self.val), ("v2", self.v2)) if s is not None}
        return {"dataset": self.name, "num_classes": self.num_classes, "splits": splits, **self.info}


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    profile: Profile
    load: Callable[[Any], DatasetSplits]  # DataOptions -> the dataset's own splits


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """The data keys of a resolved config (see :mod:`rsb_tune.planning.config`)."""

    root: str | None = None
    v2_path: str | None = None
    val_holdout: float = 0.0
    val_holdout_seed: int = 0
    memory_budget_mb: int = 2048
    workers: int = 0  # the trial's loader workers (what a streamed dataset is read through)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "DataOptions":
        """The options of a trial config (a key it lacks: this class's default, which is the
        config key's default too: :data:`rsb_tune.planning.config.FIELDS` takes it from here)."""
        d = cls()

        def get(key, default):
            return config.get(key, default)

        return cls(
            get("data_path", d.root), get("v2_path", d.v2_path), float(get("val_holdout", d.val_holdout)), int(get("val_holdout_seed", d.val_holdout_seed)),
            int(get("memory_budget_mb", d.memory_budget_mb)), int(get("workers", d.workers)),
        )  # fmt: skip


def data_spec(config: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Which data ``config`` trains on: its data keys (:data:`DATA_KEYS`) and their values,
    defaults where it has none."""
    d = DataOptions()
    defaults = {"dataset": DEFAULT_DATASET, "data_path": d.root, "v2_path": d.v2_path, "val_holdout": d.val_holdout, "val_holdout_seed": d.val_holdout_seed, "memory_budget_mb": d.memory_budget_mb}
    return tuple((key, config.get(key, defaults[key])) for key in DATA_KEYS)
