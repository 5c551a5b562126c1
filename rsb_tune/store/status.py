"""Where a study stands, computed in one function (:func:`study_status`) that every reader
calls: the CLI's ``status``, the Python API's ``Study.status()``, the study browser, the report
and the benchmarks. Given the same files they cannot disagree.

The rules, each decided here:

- counts are over the plan, by each trial's status from its event log
  (:func:`rsb_tune.store.events.trial_state`);
- ``done``: trials finished with a result (ok, diverged, early-stopped); ``failed``: errors only
  (a diverged trial is a result, not a failure);
- ``planned``: the plan's trials, or a search's ``num_samples`` times its seeds per point (plus abandoned trials, which
  the search samples again); a sequential study stopped by its rule does not count the seeds it
  never started;
- ``state``: ``damaged`` when a file of the study cannot be read as it should (``damaged``
  names the file, and the line of an event log, and what is wrong: one study's problem, which
  no reader of the storage fails on), else ``running`` while a driver holds the study, else
  ``finished`` when nothing is left to run, else ``interrupted``;
- ``best``: the best final value in the manifest's direction; among tied trials, the first in
  trial order (:func:`analysis.contract.best_of`);
- ``factorial``: a grid that crosses two factors with seeds in every cell gets the verdict of
  :func:`analysis.factorial.factorial_analysis` on its ok trials so far (:func:`factorial_record`).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path
from typing import Any, Mapping

from analysis import contract as C
from rsb_tune._log import logger
from rsb_tune.store.manifest import Manifest

__all__ = ["StudyStatus", "damaged_status", "factorial_record", "lost_logs", "read_status", "status_of", "study_status", "trial_states"]


@dataclasses.dataclass(frozen=True)
class StudyStatus:
    """Where a study stands: trial counts by status, and its metric's best and mean so far."""

    name: str
    kind: str
    recipe: str | None
    where: str
    planned: int
    counts: Mapping[str, int]
    metric: str
    mode: str
    values: tuple[float, ...]
    best_trial: str | None
    started_at: str | None
    ended_at: str | None
    running_now: bool
    search: str | None = None
    stopping: Mapping[str, Any] | None = None  # a sequential study's rule and where it stands (Decision.record())
    damaged: str | None = None  # one line: the damaged file (and line) and what is wrong with it
    factorial: Mapping[str, Any] | None = None  # a crossed grid's verdict (analysis.factorial.Factorial.record())
    precision: Mapping[str, int] | None = None  # trials by the precision they ran (runtime_amp: bf16, fp16, or fp32 for off)
    origin: str | None = None  # recipe A2, trainer file.py:train, imported from x.csv (Manifest.origin)

    done = property(lambda self: sum(self.counts.get(s, 0) for s in C.COUNTED))
    failed = property(lambda self: sum(self.counts.get(s, 0) for s in C.FAILED))
    running = property(lambda self: self.counts.get(C.RUNNING, 0))
    unfinished = property(lambda self: max(self.planned - self.done - self.failed - self.counts.get(C.ABANDONED, 0), 0))
    pending = property(lambda self: max(self.unfinished - self.running, 0))
    n = property(lambda self: len(self.values))
    mean = property(lambda self: statistics.fmean(self.values) if self.values else math.nan)
    std = property(lambda self: statistics.stdev(self.values) if len(self.values) > 1 else math.nan)
    best = property(lambda self: C.better(self.mode)(self.values) if self.values else math.nan)
    stopped_by_rule = property(lambda self: bool(self.stopping and self.stopping.get("stopped")))

    @property
    def state(self) -> str:
        """``damaged`` (a file of it is), ``running`` (a driver holds it), ``finished`` (nothing
        left) or ``interrupted``."""
        if self.damaged:
            return "damaged"
        if self.running_now:
            return "running"
        return "finished" if self.unfinished == 0 else "interrupted"

    @property
    def exit_code(self) -> int:
        """What the command that ran it exits with: 0 when every trial finished, else 1."""
        return 0 if self.failed == 0 and self.unfinished == 0 else 1

    def as_dict(self) -> dict[str, Any]:
        """The status as plain values (what the study browser's JSON carries): every field and
        derived count; non-finite numbers are None."""

        def num(v):
            return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None

        return {
            "name": self.name,
            "kind": self.kind,
            "recipe": self.recipe,
            "origin": self.origin or f"recipe {self.recipe or '–'}",
            "search": self.search,
            "metric": self.metric,
            "mode": self.mode,
            "planned": self.planned,
            "done": self.done,
            "ok": self.counts.get(C.OK, 0),
            "running": self.running,
            "pending": self.pending,
            "failed": self.failed,
            "counts": dict(self.counts),
            "n": self.n,
            "mean": num(self.mean),
            "std": num(self.std),
            "best": num(self.best),
            "best_trial": self.best_trial,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "state": self.state,
            "stopped_by_rule": self.stopped_by_rule,
            "damaged": self.damaged,
            "factorial": dict(self.factorial) if self.factorial else None,
            "precision": dict(self.precision or {}),
        }

    def __str__(self) -> str:
        """The CLI's lines (``rsb-tune status``): what ``print(study.status())`` shows."""
        return "\n".join(self.lines())

    def __repr__(self) -> str:
        """One short line (what a notebook shows for a bare ``study.status()``), not every value."""
        mean = f", {self.metric}={C.mean_std(self.mean, self.std)}" if self.values else ""
        return f"StudyStatus(name={self.name!r}, state={self.state}, done={self.done}/{self.planned}{mean})"

    def _number(self, value: float) -> str:
        """A value of the metric at the decimals of its spread over the trials."""
        return f"{value:.{C.decimals(self.values)}f}"

    def lines(self) -> list[str]:
        """``rsb-tune status``'s text."""
        planned = f"{self.planned} trials to sample ({self.search})" if self.search not in (None, "grid") else f"{self.planned} trials planned"
        if self.stopping:
            cap = self.stopping.get("cap")
            planned = f"{self.planned} of {cap} seeds started, stopped by its rule" if self.stopping.get("stopped") else f"up to {cap} seeds (sequential)"
        shown = [s for s in (*C.FINISHED, C.RUNNING, C.PENDING) if self.counts.get(s) or s in (C.OK, C.ERROR, C.RUNNING)]
        out = [f"study {self.name} ({self.kind}, {self.origin or f'recipe {self.recipe}'}): {planned}; {self.state}", "  " + ", ".join(f"{self.counts.get(s, 0)} {s}" for s in shown)]
        if self.values:
            out.append(f"  {self.metric}: mean {C.mean_std(self.mean, self.std)} (std, n={self.n}), best {self._number(self.best)} ({self.best_trial})")
        if self.stopping:
            out.append("  " + stopping_line(self.stopping))
        if self.factorial:
            out.append(f"  {' x '.join(self.factorial['factors'])}: {self.factorial['sentence']}")
        if self.precision:
            out.append("  " + precision_line(self.precision))
        out.append(f"  started {self.started_at}, ended {self.ended_at or '-'}; tables in {self.where}")
        if self.damaged:
            out.append(f"  damaged: {self.damaged}")
        return out

    def summary(self, default_storage: str | None = None) -> list[str]:
        """What a run prints at its end: trials, the metric, where, and how to look at it
        (``default_storage``: the storage the commands need not name)."""

        ended = ", ".join(f"{self.counts.get(s, 0)} {s}" for s in C.FINISHED if self.counts.get(s) or s in (C.OK, C.DIVERGED, C.ERROR))
        out = [f"study {self.name}: {ended}" + (f", {self.unfinished} unfinished" if self.unfinished else "") + f" of {self.planned} -> {self.where}"]
        if self.values:
            out.append(f"  {self.metric}: {C.mean_std(self.mean, self.std)} (mean ± std over {self.n} ok trials), best {self._number(self.best)} ({self.best_trial})")
        home = self.where[: -len(self.name) - 1]
        default = default_storage is not None and "://" not in home and Path(home).resolve() == Path(default_storage).resolve()
        flag, kwarg = ("", "") if default else (f" --storage {home}", f", storage={home!r}")
        out.append(f"  look at it: rsb-tune status {self.name}{flag} ; rsb-tune report {self.name}{flag} ; python: rsb_tune.load({self.name!r}{kwarg})")
        return out


def precision_line(precision: Mapping[str, int]) -> str:
    """One line: the precision the trials trained in (``amp``: ``auto`` takes bf16 on CUDA that
    has it and on a CPU with bf16 matrix units, else fp32), with the trial counts when they differ."""
    if len(precision) == 1:
        return f"precision: {next(iter(precision))} (every trial that reported)"
    return "precision: " + ", ".join(f"{p} in {n} trial{'s' * (n != 1)}" for p, n in sorted(precision.items(), key=lambda kv: -kv[1])) + " (mixed: the trials ran on different machines or settings)"


def stopping_line(rec: Mapping[str, Any]) -> str:
    """One line: the anytime interval now, against the rule's target, and whether it stopped."""
    level = f"{rec.get('level', 0.95):.0%}"
    n = rec.get("n_seeds", 0)
    where = "stopped: " + ("the cap of seeds is reached" if rec.get("reason") == "cap" else str(rec.get("reason"))) if rec.get("stopped") else "continuing"
    if not n:
        return f"until {rec.get('rule')} ({rec.get('method')}, {level}): no seed finished yet; {where}"
    half = rec.get("interval_halfwidth", (rec["upper"] - rec["lower"]) / 2)  # "halfwidth" is the rule's target
    interval = f"{rec['mean']:.2f} [{rec['lower']:.2f}, {rec['upper']:.2f}] after {n} seeds, half-width {half:.2f}"
    if rec.get("paired"):
        target = f" (equivalent within ±{rec['delta']:g})" if rec.get("delta") else ""
        return f"paired, arm {rec.get('arm')} against {rec.get('other_arm')}: {rec.get('metric')} mean(a - b) {interval}{target} ({rec.get('method')}, {level} anytime); {where}"
    return f"{rec.get('metric')} {level} anytime interval ({rec.get('method')}): {interval} vs target {rec.get('halfwidth'):g}; {where}"


def study_status(
    *,
    name: str,
    where: str,
    manifest: Manifest,
    states: Mapping[str, tuple[str, Mapping[int, Mapping[str, Any]]]],
    running_now: bool,
    stopping: Mapping[str, Any] | None = None,
    damaged: str | None = None,
    factorial: Mapping[str, Any] | None = None,
) -> StudyStatus:
    """The status of a study from its manifest and its trials' states.

    ``states``: trial id (every trial of the plan, in plan order) -> (status, {epoch: result})
    as :func:`rsb_tune.store.events.trial_state` reads them; ``running_now``: whether a driver
    holds the study; ``stopping``: a sequential study's stopping record (the manifest's, or the
    decision recomputed from the event logs), None for other studies; ``damaged``: one line
    naming a damaged event log's line (:func:`rsb_tune.store.events.damage_line`), or None;
    ``factorial``: a crossed grid's verdict (:func:`factorial_record`), or None."""
    counts: dict[str, int] = {}
    precision: dict[str, int] = {}
    finals: list[tuple[float, str]] = []
    for tid, (status, by_epoch) in states.items():
        counts[status] = counts.get(status, 0) + 1
        last = by_epoch[max(by_epoch)] if by_epoch else {}
        amp = last.get("runtime_amp")
        if isinstance(amp, str):
            ran = "fp32" if amp == "off" else amp
            precision[ran] = precision.get(ran, 0) + 1
        if status == C.OK and by_epoch:
            value = last.get(manifest.metric)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                finals.append((float(value), tid))
    planned = manifest.num_samples * manifest.seeds_per_sample + counts.get(C.ABANDONED, 0) if manifest.num_samples else len(states)
    if stopping and stopping.get("stopped"):  # stopped by its rule: never-started seeds are not unfinished
        planned -= counts.get(C.PENDING, 0)
    best = C.best_of(finals, manifest.mode)
    return StudyStatus(
        name=name, kind=manifest.kind, recipe=manifest.recipe, where=where, planned=planned, counts=counts,
        metric=manifest.metric, mode=manifest.mode, values=tuple(v for v, _ in finals), best_trial=best[1] if best else None,
        started_at=manifest.started_at, ended_at=manifest.ended_at, running_now=running_now,
        search=manifest.search, stopping=dict(stopping) if stopping else None, damaged=damaged, origin=manifest.origin,
        factorial=factorial,
        precision=precision or None,
    )  # fmt: skip


def factorial_record(manifest: Manifest, plan: Mapping[str, Mapping[str, Any]], states) -> dict[str, Any] | None:
    """The verdict of a grid that crosses two factors (:func:`analysis.factorial.factorial_analysis`
    on the final metric of its ok trials so far, every planned cell listed), as plain values;
    None for another study, a grid that does not cross exactly two factors, or one that plans a
    single seed per cell."""
    params = [p for p in manifest.raw.get("params") or [] if isinstance(p, str)]
    if manifest.kind != "grid" or manifest.search not in (None, "grid") or len(params) < 2:
        return None
    import pandas as pd

    from analysis.factorial import factorial_analysis

    rows = []
    for tid, (status, by_epoch) in states.items():
        value = by_epoch[max(by_epoch)].get(manifest.metric) if status == C.OK and by_epoch else None
        config = plan.get(tid) or {}
        rows.append({**{p: str(config.get(p)) for p in params}, "status": status, manifest.metric: value})
    table = pd.DataFrame(rows)
    if table.groupby(params).size().max() < 2:  # one seed per point: a grid search, not a crossed study
        return None
    try:
        result = factorial_analysis(table, params=params, metric=manifest.metric, mode=manifest.mode)
    except ValueError:  # not two crossed factors (or no ok trial yet)
        return None
    except Exception as e:  # noqa: BLE001 - a status never fails on its verdict line: said once, left out
        logger.warning("no crossed-study verdict: %s: %s", type(e).__name__, e)
        return None
    return result.record()


def damaged_status(*, name: str, where: str, problem: str) -> StudyStatus:
    """The status of a study whose manifest or plan cannot be read: ``damaged``, with
    ``problem`` (one line naming the file and what is wrong), and nothing counted."""
    return StudyStatus(
        name=name, kind="unknown", recipe=None, where=where, planned=0, counts={}, metric=C.DEFAULT_METRIC,
        mode=C.default_mode(C.DEFAULT_METRIC), values=(), best_trial=None, started_at=None, ended_at=None,
        running_now=False, damaged=problem,
    )  # fmt: skip


def trial_states(plan, events_of) -> tuple[dict[str, tuple[str, Mapping[int, Mapping[str, Any]]]], str | None]:
    """({trial id: (status, {epoch: result})} over ``plan`` in its order, the first damaged
    event line or None); ``events_of(trial_id)``: the trial's event records, as the caller reads
    them (the store from disk, the browser from its cache)."""
    from rsb_tune.store.events import damage_line, trial_state

    states, damaged = {}, None
    for tid in plan:
        events = events_of(tid)
        states[tid] = trial_state(events)[:2]
        damaged = damaged or damage_line(tid, events)
    return states, damaged


def lost_logs(directory, states) -> str | None:
    """One line naming a trial whose event log is gone (deleted by hand, lost in a copy) while
    the study's ``trials.parquet`` records it as finished, or None. Without the check such a
    trial reads as pending: the status and the tables would disagree, and a resume would train
    it again. ``directory``: the study's directory; ``states``: :func:`trial_states`' first result.
    Reads two columns of the table, and only when a trial is pending."""
    pending = {tid for tid, (status, _) in states.items() if status == C.PENDING}
    path = Path(directory) / C.TRIALS
    if not pending or not path.is_file():
        return None
    from analysis.files import confined

    try:
        import pyarrow.parquet as pq

        table = pq.read_table(confined(path, directory), columns=["trial_id", "status"])
    except Exception:  # noqa: BLE001 - a torn or foreign table: its readers report it
        return None
    for tid, status in zip(table.column("trial_id").to_pylist(), table.column("status").to_pylist()):
        if tid in pending:
            return f"events/{tid}.jsonl: missing, while {C.TRIALS} records trial {tid} as {status}; restore the log (a resume would train the trial again)"
    return None


def read_status(study) -> StudyStatus:
    """The status of the study directory ``study`` (:class:`rsb_tune.store.directory.StudyDir`)
    from its files now: its manifest, each planned trial's event log, whether a driver holds
    its lock, and a sequential study's stopping record recomputed from the event logs. A
    manifest or plan that cannot be read makes the study ``damaged`` (the file and what is
    wrong), as does a skipped line of an event log (the study is counted without it) or a
    finished trial's event log that is gone (:func:`lost_logs`)."""
    from rsb_tune.errors import StudyError
    from rsb_tune.sequential.engine import stopping_record
    from rsb_tune.store.backends import StudyLock
    from rsb_tune.store.events import read_events

    try:
        meta, plan = study.meta(), study.plan()
        stopping = stopping_record(study, meta)
    except StudyError as e:  # a damaged manifest, plan or stopping record: the study's state says it
        return damaged_status(name=study.name, where=study.where, problem=str(e))
    return status_of(
        name=study.name, where=study.where, directory=study.dir, meta=meta, plan=plan, events_of=lambda tid: read_events(study, tid),
        running_now=StudyLock(study.dir / ".lock").held(), stopping=stopping,
    )  # fmt: skip


def status_of(*, name: str, where: str, directory, meta: Mapping[str, Any], plan: Mapping[str, Any], events_of, running_now: bool, stopping: Mapping[str, Any] | None) -> StudyStatus:
    """The status of a study from its readable manifest and plan and its trials' event logs,
    as the caller reads them (``events_of(trial_id)``: the store from disk, the browser from its
    cache): the states, a damaged line or a lost log (:func:`lost_logs`), and a crossed grid's
    verdict, then :func:`study_status`. ``directory``: the study's directory."""
    states, damaged = trial_states(plan, events_of)
    manifest = Manifest.of(meta)
    return study_status(
        name=name, where=where, manifest=manifest, states=states, running_now=running_now, stopping=stopping,
        damaged=damaged or lost_logs(directory, states), factorial=factorial_record(manifest, plan, states),
    )  # fmt: skip
