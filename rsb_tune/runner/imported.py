"""Results made elsewhere (a CSV, a parquet file, a W&B export, a DataFrame) as studies that
every command reads: ``status``, ``report``, ``compare``, ``serve``, ``list``, ``plan-seeds``.

One row per seed (or per seed and epoch): a ``seed`` column (integers), the metric columns
(numbers; ``metric`` names the one the study follows), and optionally ``arm`` (one study per
arm, ``NAME-ARM``, so that ``compare NAME-a NAME-b`` compares them), ``task`` (a config key of
every trial: the study is a grid over its tasks), ``epoch`` (integers >= 1; the last epoch is the
trial's final result) and config keys: text or boolean columns, and the numeric columns named
in ``config``. Each study is written as the runner writes one, through the same event records,
and is marked ``imported`` in study.yaml: it has no plan to run, and ``resume`` says so.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from analysis import contract as C
from rsb_tune.errors import StudyError, UserError
from rsb_tune.runner import lifecycle
from rsb_tune.store.directory import StudyDir

__all__ = ["read_results", "import_results", "SEED", "ARM", "TASK", "EPOCH"]

SEED, ARM, TASK, EPOCH = "seed", "arm", "task", "epoch"


class ResultsError(UserError):
    """A results file that cannot be imported: one line naming the file, the row and the column."""


def read_results(path: str | Path):
    """A results file as a DataFrame: ``.csv`` (or ``.tsv``), ``.parquet`` or ``.jsonl``."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv", ".txt"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in (".jsonl", ".ndjson"):
            return pd.read_json(path, lines=True)
    except Exception as e:  # noqa: BLE001 - a parser's error, in one line
        raise ResultsError(f"{path}: cannot read it ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    raise ResultsError(f"{path}: unknown format {suffix or '(no suffix)'}; use .csv, .tsv, .parquet or .jsonl")


def _fail(source: str, row: int | None, column: str, why: str) -> ResultsError:
    """``row``: the row's position in the table (0-based); written 1-based, as a spreadsheet
    numbers data rows (a CSV's header is line 1, so data row r is line r + 1)."""
    where = f"row {row + 1}, " if row is not None else ""
    return ResultsError(f"{source}: {where}column {column!r}: {why}")


def _integers(df, column: str, source: str, *, least: int) -> list[int]:
    out = []
    for i, v in enumerate(df[column].tolist()):
        try:
            f = float(v)
            ok = math.isfinite(f) and f.is_integer() and f >= least and not isinstance(v, bool)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise _fail(source, i, column, f"{v!r} is not an integer >= {least}")
        out.append(int(f))
    return out


def _numbers(df, column: str, source: str) -> list[float]:
    out = []
    for i, v in enumerate(df[column].tolist()):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(float("nan"))  # a missing value: that trial has none (its status: diverged)
            continue
        try:
            if isinstance(v, bool):
                raise ValueError
            out.append(float(v))
        except (TypeError, ValueError):
            raise _fail(source, i, column, f"{v!r} is not a number") from None
    return out


def import_results(df, *, name: str, storage: str, metric: str | None = None, mode: str | None = None, config: Sequence[str] = (), source: str = "DataFrame", command: str | None = None) -> list[StudyDir]:
    """Write ``df`` as one study (``name``), or one per arm (``name-ARM``); returns them."""
    import pandas as pd

    from rsb_tune.store.backends import check_writable, locate
    from rsb_tune.store.directory import check_name, git_commit, now_iso, package_versions
    from rsb_tune.store.tables import write_tables

    check_name(name)
    if not isinstance(df, pd.DataFrame):
        raise ResultsError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}")
    df = df.reset_index(drop=True)
    df.columns = [str(c).strip() for c in df.columns]
    if df.empty:
        raise ResultsError(f"{source}: no rows")
    if SEED not in df.columns:
        raise _fail(source, None, SEED, f"missing; the columns are {', '.join(df.columns)}")
    config = [str(c) for c in config]
    for column in config:
        if column not in df.columns:
            raise _fail(source, None, column, f"named as a config key but not a column ({', '.join(df.columns)})")
    seeds = _integers(df, SEED, source, least=0)
    epochs = _integers(df, EPOCH, source, least=1) if EPOCH in df.columns else [1] * len(df)
    ours = {SEED, ARM, EPOCH}
    numeric = [c for c in df.columns if c not in ours and c not in config and c != TASK and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    metric = metric or (C.DEFAULT_METRIC if C.DEFAULT_METRIC in df.columns or not numeric else numeric[0])
    keys = [c for c in df.columns if c not in ours and c not in numeric and c != metric]  # task, text and boolean columns, named numeric ones
    if metric not in df.columns:
        raise _fail(source, None, metric, f"the metric is not a column ({', '.join(df.columns)}); name it with --metric")
    if metric not in numeric:
        df[metric] = _numbers(df, metric, source)  # names the first cell that is not a number
        numeric.append(metric)
    mode = mode or C.default_mode(metric)
    if mode not in ("max", "min"):
        raise ResultsError(f"mode: must be max or min, got {mode!r}")
    values = {c: _numbers(df, c, source) for c in numeric}
    arms = [str(a) for a in df[ARM].tolist()] if ARM in df.columns else [None] * len(df)
    for i, arm in enumerate(arms):
        if arm is not None:
            try:
                check_name(f"{name}-{arm}")
            except StudyError:
                raise _fail(source, i, ARM, f"{arm!r} cannot be part of a study name (letters, digits, '.', '_', '-')") from None
    # trials: one per (arm, config, seed); epochs within
    studies: dict[str | None, dict[tuple, dict]] = {}
    seen: dict[tuple, int] = {}
    for i in range(len(df)):
        cfg = {k: _plain(df[k].iloc[i]) for k in keys}
        trial_key = (tuple(sorted((k, repr(v)) for k, v in cfg.items())), seeds[i])
        row_key = (arms[i], trial_key, epochs[i])
        if row_key in seen:
            raise _fail(source, i, SEED, f"seed {seeds[i]}{f' of arm {arms[i]}' if arms[i] else ''}{' (epoch %d)' % epochs[i] if EPOCH in df.columns else ''} with the same config appears already in row {seen[row_key] + 1}")
        seen[row_key] = i
        trial = studies.setdefault(arms[i], {}).setdefault(trial_key, {"config": {**cfg, SEED: seeds[i], **dict.fromkeys(C.SEED_COLUMNS[1:])}, "epochs": {}})
        trial["epochs"][epochs[i]] = {c: values[c][i] for c in numeric}
    location = locate(storage)
    check_writable(location)
    names = {arm: name if arm is None else f"{name}-{arm}" for arm in studies}
    for arm, study_name in names.items():
        if StudyDir(location, study_name).exists():
            raise StudyError(f"study {study_name!r} already exists in {location.display()}; import under another --name")
    out = []
    for arm, trials in studies.items():
        study = StudyDir(location, names[arm])
        study.dir.mkdir(parents=True, exist_ok=True)
        ordered = sorted(trials.values(), key=lambda t: (repr(sorted((k, repr(v)) for k, v in t["config"].items() if k != SEED)), t["config"][SEED]))
        width = max(4, len(str(len(ordered) - 1)))
        plan = {f"t{i:0{width}d}": t["config"] for i, t in enumerate(ordered)}
        varied = [k for k in keys if len({repr(t["config"][k]) for t in ordered}) > 1]
        base = {k: ordered[0]["config"][k] for k in keys if k not in varied}
        manifest = {
            "format": C.FORMAT_VERSION,
            "kind": "grid" if varied else "seeds",
            "recipe": None,
            "metric": metric,
            "mode": mode,
            "params": varied,
            "command": command or f"rsb_tune.import_results(..., name={name!r})",
            "base_config": lifecycle._jsonable(base),
            "base_config_sources": {k: f"imported from {Path(source).name}" for k in base},
            "space": None,
            "search": "grid",
            "dataset": None,
            "data_specs": [],
            "imported": str(source),
            **({"arm": arm} if arm is not None else {}),
            "versions": package_versions(),
            "git_commit": git_commit(),
        }
        with study.lock():
            lifecycle.create_study(study, manifest, plan)
            for tid, trial in zip(plan, ordered):
                last = max(trial["epochs"])
                for epoch in sorted(trial["epochs"]):
                    metrics = trial["epochs"][epoch]
                    final = epoch == last
                    status = (C.OK if math.isfinite(metrics[metric]) else C.DIVERGED) if final else C.RUNNING
                    ours = {k: v for k, v in metrics.items() if k in C.RESULT_KEYS}
                    theirs = {k: v for k, v in metrics.items() if k not in C.RESULT_KEYS}
                    lifecycle.record_result(study, tid, {"epoch": epoch, "status": status, **ours, C.USER_METRICS: theirs})
            write_tables(study)
            study.update_meta(ended_at=now_iso())
            study.sync()
        out.append(study)
    return out


def _plain(value: Any) -> Any:
    """A cell as a JSON value (NumPy scalars as Python's; a missing cell as None)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
