"""Load study directories written by the rsb-tune engine.

A study directory ``<storage>/<name>/`` holds:

- ``study.yaml``: the manifest (name, kind, recipe, metric, mode, params, ...);
- ``trials.parquet``: one row per trial (seed, status, hyperparameters, final metrics);
- ``epochs.parquet``: one row per trial and epoch;
- ``predictions/<trial_id>.npz``: per-example correctness (``val_correct``,
  ``v2_correct``) of every ok trial at its final epoch.

Problems with those files raise :class:`StudyError`, whose message names the file.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.contract import EPOCHS, KINDS, MANIFEST, OK, PREDICTIONS, TRIALS
from analysis.contract import StudyError
from analysis.files import confined, load_yaml, read_confined, yaml_problem

__all__ = ["StudyTables", "StudyError", "load_study"]

REQUIRED_META = ("name", "kind", "metric", "mode", "params")
REQUIRED_TRIALS = ("trial_id", "seed", "status")
REQUIRED_EPOCHS = ("trial_id", "epoch")
SPLITS = ("val", "v2")

StudyPath = str | os.PathLike


@dataclass(frozen=True, eq=False)
class StudyTables:
    """A study's tables in memory (one study, or several concatenated); the engine's handle
    of a running study is ``rsb_tune.Study``, its directory ``rsb_tune.store.directory.StudyDir``.

    Attributes:
        paths: the study directories, in the order given.
        metas: ``{study name: manifest mapping}``.
        trials: one row per trial, as written by the engine (plus a ``study``
            column when several studies were loaded).
        epochs: one row per trial and epoch (same ``study`` column rule).
    """

    paths: tuple[Path, ...]
    metas: dict[str, dict[str, Any]]
    trials: pd.DataFrame
    epochs: pd.DataFrame

    def __repr__(self) -> str:
        return (
            f"StudyTables(name={self.name!r}, trials={len(self.trials)}, epochs={len(self.epochs)}, "
            f"paths={[str(p) for p in self.paths]})"
        )

    @property
    def meta(self) -> dict[str, Any]:
        """The manifest (``study.yaml``) of a single study.

        Raises ``ValueError`` for a combined study: use ``metas[name]`` there.
        """
        if len(self.metas) != 1:
            raise ValueError(
                f"this StudyTables combines {len(self.metas)} studies ({', '.join(self.metas)}); use .metas[name]"
            )
        return next(iter(self.metas.values()))

    @property
    def name(self) -> str:
        """The study name (names joined with ``+`` for a combined study)."""
        return "+".join(self.metas)

    @property
    def combined(self) -> bool:
        """Whether several studies were concatenated (then tables carry a ``study`` column)."""
        return len(self.paths) > 1

    def select(self, status: str | None = OK) -> StudyTables:
        """The same study restricted to trials with ``status`` (and their epochs)."""
        if status is None:
            return self
        trials = self.trials[self.trials["status"] == status]
        kept = _row_index(trials, self._keys())
        epochs = self.epochs[_row_index(self.epochs, self._keys()).isin(kept)]
        return StudyTables(self.paths, self.metas, trials.reset_index(drop=True), epochs.reset_index(drop=True))

    def predictions(self, split: str = "val") -> pd.DataFrame:
        """Per-example correctness of the ok trials on ``split`` (``"val"`` or ``"v2"``).

        Returns a boolean DataFrame with one row per ok trial (index ``trial_id``,
        or ``(study, trial_id)`` for a combined study, in the order of
        ``trials``) and one column per evaluation example; column ``i`` is the
        same example in every row. The row means times 100 are the trials'
        ``<split>_top1``.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        ok = self.trials[self.trials["status"] == OK]
        rows = [self._load_correct(row, split) for row in ok.itertuples(index=False)]
        lengths = {len(r) for r in rows}
        if len(lengths) > 1:
            raise StudyError(
                f"prediction files of {self.name} disagree on the number of {split} examples: "
                f"{sorted(lengths)}"
            )
        matrix = np.vstack(rows) if rows else np.zeros((0, 0), dtype=bool)
        return pd.DataFrame(matrix, index=_row_index(ok, self._keys()))

    def _keys(self) -> list[str]:
        return ["study", "trial_id"] if self.combined else ["trial_id"]

    def _load_correct(self, row: Any, split: str) -> np.ndarray:
        study = getattr(row, "study", None)
        root = self.paths[list(self.metas).index(study)] if study is not None else self.paths[0]
        path = root / PREDICTIONS / f"{row.trial_id}.npz"
        key = f"{split}_correct"
        real = confined(path, root)  # a link out of the study is refused, never read
        try:
            with np.load(real) as npz:
                correct = np.asarray(npz[key], dtype=bool)
        except FileNotFoundError:
            raise StudyError(f"{path}: prediction file missing for ok trial {row.trial_id}") from None
        except KeyError:
            raise StudyError(f"{path}: no array {key!r} in the prediction file") from None
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise StudyError(f"{path}: cannot read the prediction file ({exc})") from None
        expected = getattr(row, f"n_{split}", None)
        if correct.ndim != 1 or (expected is not None and pd.notna(expected) and len(correct) != expected):
            raise StudyError(
                f"{path}: {key} has shape {correct.shape}, expected ({expected},) from n_{split}"
            )
        return correct


def _row_index(table: pd.DataFrame, keys: list[str]) -> pd.Index:
    """The trial identity of each row: ``trial_id``, or ``(study, trial_id)``."""
    if len(keys) == 1:
        return pd.Index(table[keys[0]], name=keys[0])
    return pd.MultiIndex.from_frame(table[keys])


def load_study(path: StudyPath | Sequence[StudyPath]) -> StudyTables:
    """Load a study directory, or a list of them concatenated with a ``study`` column.

    Raises:
        StudyError: a directory or file is missing, unreadable, or lacks required
            keys/columns; the message names the file. Two studies of a list with
            the same name are also an error (the ``study`` column must tell them apart).
    """
    if isinstance(path, (str, os.PathLike)):
        return _load_one(Path(path))
    paths = [Path(p) for p in path]
    if not paths:
        raise StudyError("load_study got an empty list of study directories")
    studies = [_load_one(p) for p in paths]
    if len(studies) == 1:
        return studies[0]
    return _concat(studies)


def _load_one(root: Path) -> StudyTables:
    if not root.is_dir():
        raise StudyError(f"{root}: study directory not found")
    meta = _read_meta(root / MANIFEST, root)
    trials = _read_table(root / TRIALS, REQUIRED_TRIALS, root)
    epochs = _read_table(root / EPOCHS, REQUIRED_EPOCHS, root)
    return StudyTables((root,), {str(meta["name"]): meta}, trials, epochs)


def _read_meta(path: Path, root: Path) -> dict[str, Any]:
    """study.yaml, confined to the study directory, with the size and depth limits of
    :func:`analysis.files.load_yaml` (timestamps as text)."""
    import yaml

    try:
        meta = load_yaml(read_confined(path, root), str(path))
    except FileNotFoundError:
        raise StudyError(f"{path}: study manifest not found") from None
    except yaml.YAMLError as exc:
        raise StudyError(f"{path}: cannot read the study manifest ({yaml_problem(exc)})") from None
    except OSError as exc:
        raise StudyError(f"{path}: cannot read the study manifest ({type(exc).__name__})") from None
    if not isinstance(meta, dict):
        raise StudyError(f"{path}: the study manifest must be a YAML mapping, got {type(meta).__name__}")
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise StudyError(f"{path}: the study manifest lacks {', '.join(missing)}")
    if meta["kind"] not in KINDS:
        raise StudyError(f"{path}: kind must be one of {', '.join(KINDS)}, got {meta['kind']!r}")
    if not isinstance(meta["params"] or [], list):
        raise StudyError(f"{path}: params must be a list of config keys, got {meta['params']!r}")
    return meta


def _read_table(path: Path, required: Sequence[str], root: Path) -> pd.DataFrame:
    if not path.is_file():
        raise StudyError(f"{path}: table not found")
    real = confined(path, root)  # a link out of the study is refused, never read
    try:  # through one open file: pandas opens a path twice, and a study that runs replaces it
        with open(real, "rb") as f:
            table = pd.read_parquet(f)
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        raise StudyError(f"{path}: cannot read the table ({type(exc).__name__}: {exc})") from None
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise StudyError(f"{path}: the table lacks column(s) {', '.join(missing)}")
    return table


def _concat(studies: list[StudyTables]) -> StudyTables:
    names = [s.name for s in studies]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise StudyError(
            f"studies {', '.join(str(p) for s in studies for p in s.paths)} share the name "
            f"{', '.join(duplicated)}; load them separately"
        )

    def stack(tables: list[pd.DataFrame]) -> pd.DataFrame:
        labelled = [t.assign(study=name) for t, name in zip(tables, names, strict=True)]
        return pd.concat(labelled, ignore_index=True)

    return StudyTables(
        tuple(p for s in studies for p in s.paths),
        {n: s.meta for n, s in zip(names, studies, strict=True)},
        stack([s.trials for s in studies]),
        stack([s.epochs for s in studies]),
    )
