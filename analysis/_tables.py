"""Input checks and small table helpers shared by the analysis modules (private)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from analysis.contract import DIVERGED, ERROR, OK

STATUSES = (OK, DIVERGED, ERROR)  # counted in every summary, 0 if none


def require_columns(table: pd.DataFrame, columns: Iterable[str], what: str = "table") -> None:
    """Raise ``ValueError`` naming every column of ``columns`` missing from ``table``."""
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"{what} must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"{what} has no column {', '.join(map(repr, missing))}; "
            f"available: {', '.join(map(str, table.columns))}"
        )


def check_mode(mode: str) -> str:
    """``mode`` itself if it is ``"max"`` or ``"min"`` (the direction in which a metric is better)."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    return mode


def as_list(names: str | Sequence[str] | None) -> list[str]:
    """``None`` -> ``[]``, ``"a"`` -> ``["a"]``, a sequence -> a list."""
    if names is None:
        return []
    if isinstance(names, str):
        return [names]
    return list(names)


def select_status(trials: pd.DataFrame, status: str | None = OK) -> pd.DataFrame:
    """Rows of ``trials`` whose ``status`` equals ``status`` (all rows when ``None``)."""
    if status is None:
        return trials
    require_columns(trials, ["status"], "trials")
    return trials[trials["status"] == status]


def counted_rows(table: pd.DataFrame, status: str | None = OK) -> pd.DataFrame:
    """Rows of ``table`` whose ``status`` equals ``status`` when it has a ``status`` column
    (a study's trials); every row of a table without one, or when ``status`` is None."""
    if status is None or "status" not in table.columns:
        return table
    return select_status(table, status)


def metric_values(
    table: pd.DataFrame | Sequence[float] | np.ndarray,
    metric: str,
    status: str | None = OK,
    what: str = "trials",
) -> np.ndarray:
    """Finite values of ``metric``: from a trials table (filtered on ``status``) or array-like.

    A plain sequence or array is taken as the values themselves.
    Raises ``ValueError`` for an unknown column.
    """
    if isinstance(table, pd.DataFrame):
        require_columns(table, [metric], what)
        raw = counted_rows(table, status)[metric]
    else:
        raw = np.ravel(np.asarray(table))
    values = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return values[np.isfinite(values)]


def require_values(values: np.ndarray, what: str, minimum: int = 1) -> np.ndarray:
    """Raise ``ValueError`` when ``values`` holds fewer than ``minimum`` finite numbers."""
    if values.size < minimum:
        raise ValueError(f"{what}: need at least {minimum} finite value(s), got {values.size}")
    return values


def jsonable(value: Any) -> Any:
    """Plain JSON values: NaN, inf and NA become null; tables become lists of records."""
    if isinstance(value, pd.DataFrame):
        return [jsonable(r) for r in value.to_dict(orient="records")]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    return value if isinstance(value, str) else str(value)


def status_counts(trials: pd.DataFrame) -> dict[str, int]:
    """Number of trials per status, every status of the contract present (0 if none)."""
    counts = {s: 0 for s in STATUSES}
    if "status" in trials.columns:
        for status, count in trials["status"].value_counts().items():
            counts[str(status)] = int(count)
    return counts


def groups(table: pd.DataFrame, by: Sequence[str]) -> Iterator[tuple[dict, pd.DataFrame]]:
    """Yield ``({column: value}, sub_table)`` per group of ``by`` (the whole table if empty).

    Groups with missing keys are kept (``dropna=False``) so that no trial is silently lost.
    """
    if not by:
        yield {}, table
        return
    for key, sub in table.groupby(list(by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        yield dict(zip(by, key, strict=True)), sub


@contextmanager
def quiet() -> Iterator[None]:
    """Silence numerical warnings of degenerate inputs (n < 2, constant data).

    The statistics return NaN in those cases, which says the same thing once
    instead of one warning per call.
    """
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
