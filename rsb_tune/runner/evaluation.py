"""Re-scoring a study (``rsb-tune eval``): every ok trial's final weights evaluated on a grid of
settings and test sets, through the study's executor, into ``evals.parquet``.

The grid: test resolutions x centre-crop ratios (each defaulting to the trial's own) x test
sets: the study's splits (``val``, ``v2``), extra ones (``NAME=PATH``: a CIFAR-10.1-style
``*_data.npy``/``*_labels.npy`` pair or a folder of class folders, the readers' formats of
:func:`rsb_tune.data.readers.load_v2`) and ``real``: ``val`` with a multi-label file (ImageNet-
ReaL's ``real.json``: a JSON list with, per val image in order, the list of its correct labels;
an empty list leaves the image out).

One job per trial (its weights are loaded once, from its last recorded checkpoint, as data only:
:func:`rsb_tune.training.checkpoint.load`), holding only the settings not in ``evals.parquet``
yet: an evaluation killed halfway is run again with the same command and evaluates what is
left, never a row twice (:mod:`rsb_tune.store.evals`). The study's lock is held meanwhile (for
an object store: its lease; the checkpoints to score are downloaded into the study's local copy,
:meth:`rsb_tune.runner.lifecycle.Checkpoints.local`, and evals.parquet is uploaded after each trial).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import numbers
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from analysis import contract as C
from rsb_tune._log import logger
from rsb_tune.errors import ConfigError, DataError, StudyError, arg
from rsb_tune.store.directory import StudyDir

__all__ = ["EvalGrid", "eval_grid", "evaluate_study", "final_checkpoint", "final_checkpoints", "STUDY_SPLITS", "MULTI_LABEL_SET"]

STUDY_SPLITS = ("val", "v2")
MULTI_LABEL_SET = "real"  # the test set a --labels file makes of val (ImageNet-ReaL's name)


@dataclasses.dataclass(frozen=True)
class EvalGrid:
    """What to evaluate: test sizes and crop ratios (empty: each trial's own), the study's
    splits, extra test sets (name -> path) and a multi-label file for val."""

    test_sizes: tuple[int, ...] = ()
    crop_pcts: tuple[float, ...] = ()
    splits: tuple[str, ...] = ("val",)
    test_sets: Mapping[str, str] = dataclasses.field(default_factory=dict)
    labels: str | None = None

    def names(self) -> list[str]:
        return [*self.splits, *self.test_sets, *([MULTI_LABEL_SET] if self.labels else [])]

    def settings(self, config: Mapping[str, Any]) -> list:
        """The trial of ``config``'s settings (its own size and crop where none are given)."""
        from rsb_tune.training.evaluate import Setting

        sizes = self.test_sizes or (int(config["test_img_size"]),)
        crops = self.crop_pcts or (float(config["crop_pct"]),)
        return [Setting(int(s), float(c)) for s, c in itertools.product(sizes, crops)]


def eval_grid(*, test_sizes=(), crop_pcts=(), splits=None, test_sets=(), labels=None) -> EvalGrid:
    """An :class:`EvalGrid` from the API's or the command line's values, checked (one line per
    mistake, naming the argument). ``test_sets``: ``"NAME=PATH"`` strings or a mapping."""
    sizes = tuple(() if test_sizes is None else test_sizes)
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
            raise ConfigError(f"{arg('test_sizes', s, flag='--test-size')}: a test resolution is a whole number of pixels >= 1")
    crops = tuple(() if crop_pcts is None else crop_pcts)
    for c in crops:
        if isinstance(c, bool) or not isinstance(c, numbers.Real) or not math.isfinite(c) or not 0 < c <= 1:
            raise ConfigError(f"{arg('crop_pcts', c, flag='--crop-pct')}: a crop ratio is a number in (0, 1]")
    splits = tuple(dict.fromkeys(splits or ("val",)))
    for s in splits:
        if s not in STUDY_SPLITS:
            raise ConfigError(f"{arg('splits', s, flag='--split')}: allowed: {', '.join(STUDY_SPLITS)} (other test sets: --test-set NAME=PATH)")
    extra: dict[str, str] = {}
    items = test_sets.items() if isinstance(test_sets, Mapping) else [str(t).partition("=")[::2] for t in test_sets]
    for name, path in items:
        if not name or not path:
            raise ConfigError(f"{arg('test_sets', flag='--test-set')}: expected NAME=PATH, got {name}={path}".rstrip("="))
        if name in (*STUDY_SPLITS, MULTI_LABEL_SET) or name in extra or not name.replace("-", "").isalnum():
            raise ConfigError(f"{arg('test_sets', name, flag='--test-set')}: a test set's name is letters, digits and '-', unique, and not val, v2 or {MULTI_LABEL_SET}")
        extra[name] = str(path)
    return EvalGrid(tuple(dict.fromkeys(int(s) for s in sizes)), tuple(dict.fromkeys(float(c) for c in crops)), splits, extra, str(labels) if labels else None)


# --------------------------------------------------------------------------- weights


def final_checkpoint(study: StudyDir, trial_id: str) -> str | None:
    """The directory of the last recorded checkpoint of ``trial_id`` that is still there (a
    finished trial's: its final weights), or None. What a fine-tune from this study reads too."""
    return final_checkpoints(study, [trial_id])[trial_id]


def final_checkpoints(study: StudyDir, trial_ids: Iterable[str]) -> dict[str, str | None]:
    """:func:`final_checkpoint` of each of ``trial_ids``, from one listing of the study's
    checkpoints (not one per trial)."""
    from rsb_tune.runner.lifecycle import Checkpoints
    from rsb_tune.store.events import read_events

    trial_ids = list(trial_ids)
    if not trial_ids:
        return {}
    ckpts = Checkpoints(study)
    on_disk = ckpts.dirs_with()
    out: dict[str, str | None] = {}
    for tid in trial_ids:
        recorded = [ckpts.relative(ev["path"]) for ev in read_events(study, tid) if ev.get("type") == "checkpoint"]
        existing = [rel for rel in recorded if rel in on_disk]
        out[tid] = ckpts.path(existing[-1]) if existing else None
    return out


# --------------------------------------------------------------------------- test sets


@dataclasses.dataclass(frozen=True)
class EvalData:
    """What every evaluation job reads (shipped once): per data spec, its class count and its
    test sets by name."""

    by_spec: Mapping[tuple, tuple[int, Mapping[str, Any]]]

    def for_config(self, config: Mapping[str, Any]):
        from rsb_tune.data.types import data_spec

        return self.by_spec[data_spec(config)]


def _label_sets(path: str, n: int, num_classes: int) -> tuple[frozenset, ...]:
    """The label sets of a multi-label file (a JSON list of ``n`` lists of class indices)."""
    where = arg("labels", path, flag="--labels")
    try:
        raw = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except OSError as e:
        raise DataError(f"{where}: unreadable ({e.strerror or e})") from None
    except ValueError as e:
        raise DataError(f"{where}: not JSON ({e})") from None
    if not isinstance(raw, list) or len(raw) != n:
        raise DataError(f"{where}: expected a JSON list of {n} label lists (one per val image, in order), got {type(raw).__name__} of {len(raw) if isinstance(raw, list) else '-'}")
    out = []
    for i, labels in enumerate(raw):
        if not isinstance(labels, list) or any(isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < num_classes for c in labels):
            raise DataError(f"{where}: entry {i} is not a list of class indices in 0..{num_classes - 1}: {labels!r}"[:300])
        out.append(frozenset(labels))
    if not any(out):
        raise DataError(f"{where}: every label list is empty: nothing to score")
    return tuple(out)


def load_eval_data(study: StudyDir, grid: EvalGrid) -> EvalData:
    """The study's data (as its trials trained on it) and the grid's test sets, loaded once."""
    from rsb_tune.data.readers import load_v2
    from rsb_tune.data.registry import load_study_data
    from rsb_tune.store.manifest import data_configs
    from rsb_tune.training.evaluate import TestSet

    data = load_study_data(data_configs(study.meta()))
    by_spec = {}
    for spec, splits in data.splits.items():
        sets = {"val": TestSet("val", splits.val, splits.val.source)}
        if "v2" in grid.splits:
            if splits.v2 is None:
                raise ConfigError(f"{arg('splits', 'v2', flag='--split')}: study {study.name} has no v2 split (add one with --test-set NAME=PATH)")
            sets["v2"] = TestSet("v2", splits.v2, splits.v2.source)
        for name, path in grid.test_sets.items():
            split = load_v2(path, splits.classes)
            sets[name] = TestSet(name, split, split.source)
        if grid.labels:
            sets[MULTI_LABEL_SET] = TestSet(MULTI_LABEL_SET, splits.val, f"{splits.val.source} + {Path(grid.labels).name}", _label_sets(grid.labels, len(splits.val), splits.num_classes))
        by_spec[spec] = (splits.num_classes, {n: sets[n] for n in grid.names()})
    return EvalData(by_spec)


# --------------------------------------------------------------------------- the job and the run


def eval_job(config: Mapping[str, Any], checkpoint_dirs: Sequence[str], trial_id: str, todo: Sequence[tuple[str, Any]], data: EvalData) -> list[dict[str, Any]]:
    """One trial's evaluation (run by an executor, in any process): its weights loaded as data
    only, scored on ``todo`` (test set name, setting) pairs; rows with packed correctness.
    ``checkpoint_dirs``: where the checkpoint is, the first one there used (an object-store
    study's: the driver's downloaded copy, then the store's URI, which a job on another node reads)."""
    from rsb_tune.training import checkpoint
    from rsb_tune.training.evaluate import evaluate_weights, weights_of

    where = next((d for d in checkpoint_dirs[:-1] if Path(d).is_dir()), checkpoint_dirs[-1])
    state = checkpoint.load(checkpoint.file_in(where, C.CHECKPOINT_FILE), map_location="cpu")
    num_classes, sets = data.for_config(config)
    rows = evaluate_weights(config, weights_of(state, trial_id), num_classes, [sets[n] for n in dict.fromkeys(n for n, _ in todo)], todo)
    for row in rows:
        row["correct"] = C.pack_correct(row["correct"])
        row["source"] = sets[row["test_set"]].source
    return rows


def evaluate_study(study: StudyDir, grid: EvalGrid, opts) -> tuple[int, dict[str, str]]:
    """Evaluate every ok trial of ``study`` on ``grid`` through ``opts.executor``, skipping the
    rows ``evals.parquet`` has; returns (rows written, {trial: why it was not evaluated})."""
    from rsb_tune.runner.executor import get_executor
    from rsb_tune.runner.lifecycle import Checkpoints
    from rsb_tune.store import evals
    from rsb_tune.store.directory import now_iso
    from rsb_tune.store.tables import build_tables

    executor = get_executor(opts.executor)
    executor.check(opts)
    with study.lock():
        trials, _ = build_tables(study)
        ok = trials[trials["status"] == C.OK] if not trials.empty else trials
        if ok.empty:
            raise StudyError(f"study {study.name!r} has no ok trial to evaluate")
        plan, table = study.plan(), evals.read_evals(study)
        done = set(evals.keys_of(table))
        left = {}
        for row in ok.to_dict("records"):
            tid = row["trial_id"]
            cfg = dict(plan[tid])
            threads = row.get("runtime_threads")
            cfg["threads"] = int(threads) if threads is not None and threads == threads else opts.threads
            if row.get("runtime_amp") in ("off", "bf16", "fp16"):  # the precision it trained in (amp auto may have fallen back)
                cfg["amp"] = row["runtime_amp"]
            todo = [(name, s) for s in grid.settings(cfg) for name in grid.names() if evals.row_key({"trial_id": tid, "test_set": name, "test_img_size": s.test_img_size, "crop_pct": s.crop_pct}) not in done]
            if todo:
                left[tid] = (cfg, todo)
        jobs, skipped, meta_of = {}, {}, {}
        ckpts = Checkpoints(study)
        for tid, path in final_checkpoints(study, left).items():
            if path is None:
                skipped[tid] = "no checkpoint kept"
                continue
            cfg, todo = left[tid]
            jobs[tid] = (cfg, (ckpts.local(path), study.location.uri(path)) if study.mirror else (path,), tid, todo)
            meta_of[tid] = {**{k: cfg[k] for k in C.SEED_COLUMNS}, "own": (int(cfg["test_img_size"]), round(float(cfg["crop_pct"]), 6)), "threads": cfg["threads"]}
        if not jobs:
            logger.info("study %s: every setting is evaluated already", study.name)
            return 0, skipped
        data = load_eval_data(study, grid)  # a bad test set or labels file fails here, before any job
        logger.info("study %s: evaluating %d trial(s), %d (setting, test set) pair(s) left", study.name, len(jobs), sum(len(j[3]) for j in jobs.values()))
        written = 0

        def on_result(tid: str, rows: list[dict[str, Any]]) -> None:
            nonlocal written, table
            m = meta_of[tid]
            rows = [{**r, "trial_id": tid, **{k: m[k] for k in C.SEED_COLUMNS}, "trained": (r["test_img_size"], round(r["crop_pct"], 6)) == m["own"], "runtime_threads": m["threads"], "evaluated_at": now_iso()} for r in rows]
            table = evals.add_rows(study, rows, table)
            written += len(rows)
            logger.log(logging.DEBUG if opts.quiet else logging.INFO, "study %s: %s evaluated (%d rows)", study.name, tid, len(rows))  # quiet: no line per trial

        errors = executor.map(eval_job, jobs, opts, shared=data, on_result=on_result)
    return written, {**skipped, **errors}
