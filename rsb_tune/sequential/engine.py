"""Sequential seed studies on the engine side, without Ray: which seed to start next, when to
stop, what a study's stopping state is after a kill, and the rounds of a paired A-vs-B study.

The statistics (the rule, the confidence sequence, the decision) are :mod:`rsb_tune.sequential.rule`'s;
this module applies them to a study on disk. :class:`SeedScheduler` is the logic of the Ray
Tune searcher in :mod:`rsb_tune.runner.ray_executor`: seeds are suggested in seed order, at most
``slots`` at a time, while :func:`rsb_tune.sequential.rule.decide` on the finished prefix says
continue. Once it says stop, nothing more is suggested and the run ends when the trials that
were already running have finished: their results are kept (the compute is spent, and a
value beyond the stopping n changes neither the reason nor the n of the decision).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from analysis import contract as C
from rsb_tune.sequential import rule as stopping
from rsb_tune.planning.config import follows_from_compared
from rsb_tune.errors import ConfigError, StudyError, UserError
from rsb_tune.store.directory import StudyDir

__all__ = [
    "WAIT",
    "FINISH",
    "SeedScheduler",
    "rule_of",
    "paired_rule_of",
    "paired_record",
    "seed_order",
    "study_decision",
    "paired_decision",
    "next_round",
    "statuses",
    "in_flight",
    "check_arms",
    "SEQUENTIAL_METRICS",
]

WAIT = "wait"  # nothing to start now: the slots are full, or the rule needs a running seed first
FINISH = "finish"  # the rule says stop, or every planned seed has started
SEQUENTIAL_METRICS = C.FINAL_METRICS  # the final metrics a rule can follow (a trials-table column)


# --------------------------------------------------------------------------- rules from study.yaml


def _metrics(meta: Mapping[str, Any]):
    """The metrics a recorded rule may follow: a custom trainer's study follows any it reports."""
    return (meta["stopping"]["metric"],) if meta.get("trainer") or meta.get("trainer_cmd") else SEQUENTIAL_METRICS


def rule_of(meta: Mapping[str, Any]) -> stopping.StoppingRule | None:
    """The ``--until`` rule recorded in a study's manifest (None for an ordinary study); a
    damaged record is a StudyError naming it."""
    rec = meta.get("stopping")
    if not rec or _record(rec).get("paired"):
        return None
    with _damaged_record():
        return stopping.check_rule(
            rec["rule"], cap=int(rec["cap"]), metric=rec["metric"], level=rec["level"], method=rec["method"],
            bounds=rec["bounds"], metrics=_metrics(meta),
        )  # fmt: skip


def paired_rule_of(meta: Mapping[str, Any]) -> stopping.PairedRule | None:
    """The A-vs-B rule recorded in an arm's manifest (None for any other study); a damaged
    record is a StudyError naming it."""
    rec = meta.get("stopping")
    if not rec or not _record(rec).get("paired"):
        return None
    with _damaged_record():
        return stopping.check_paired(
            cap=int(rec["cap"]), metric=rec["metric"], mode=rec["mode"], delta=rec.get("delta"), level=rec["level"],
            method=rec["method"], bounds=rec["outcome_bounds"], metrics=_metrics(meta),
        )  # fmt: skip


def _record(rec: Any) -> Mapping[str, Any]:
    if not isinstance(rec, Mapping):
        raise StudyError(f"{C.MANIFEST}: stopping: a damaged record (not a mapping)")
    return rec


@contextlib.contextmanager
def _damaged_record():
    """A stopping record that does not make a rule: a StudyError naming the manifest's key."""
    try:
        yield
    except (KeyError, TypeError, ValueError, UserError) as e:
        what = f"no {e}" if isinstance(e, KeyError) else " ".join(str(e).split())[:200]
        raise StudyError(f"{C.MANIFEST}: stopping: a damaged record ({what})") from None


def paired_record(rule: stopping.PairedRule, *, arm: str, other: str, pair: str) -> dict[str, Any]:
    """What an arm's study.yaml keeps of the paired rule (enough to rebuild it on resume)."""
    return {**rule.record(), "paired": True, "outcome_bounds": list(rule.bounds), "arm": arm, "other_arm": other, "pair": pair}


def seed_order(plan: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, int]]:
    """(trial id, seed) of a seed study's plan in the order the seeds are scheduled."""
    return sorted(((tid, int(cfg["seed"])) for tid, cfg in plan.items()), key=lambda x: (x[1], x[0]))


def _at_end(decision: stopping.Decision, prefix: stopping.SeedPrefix) -> stopping.Decision:
    """Every planned seed finished, some without a value (diverged, error): the cap is reached
    although fewer values than the cap count."""
    if not decision.stop and prefix.waiting_for is None:
        return dataclasses.replace(decision, stop=True, reason="cap")
    return decision


def study_decision(study: StudyDir, rule: stopping.StoppingRule, trials=None) -> stopping.Decision:
    """The decision of ``rule`` on a study's finished prefix, recomputed from its tables
    (built from the event logs when ``trials`` is not given)."""
    if trials is None:
        from rsb_tune.store.tables import build_tables

        trials = build_tables(study)[0]
    seeds = [s for _, s in seed_order(study.plan())]
    prefix = stopping.seed_prefix(trials, seeds, rule.metric)
    return _at_end(stopping.decide(rule, prefix.values), prefix)


def stopping_record(study: StudyDir, meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """A sequential study's stopping record, its interval recomputed from the event logs now
    (a paired arm's: as recorded by the pair's last round); None for any other study."""
    record = meta.get("stopping")
    rule = rule_of(meta)
    if rule is None:
        return dict(record) if record else None
    return {**record, **study_decision(study, rule).record()}


def paired_decision(a: StudyDir, b: StudyDir, rule: stopping.PairedRule) -> stopping.Decision:
    """The paired decision on the seeds finished in both arms (from their event logs)."""
    from rsb_tune.store.tables import build_tables

    seeds = [s for _, s in seed_order(a.plan())]
    prefix = stopping.paired_seed_prefix(build_tables(a)[0], build_tables(b)[0], seeds, rule.metric)
    return _at_end(stopping.decide_paired(rule, prefix.values), prefix)


def statuses(study: StudyDir) -> dict[str, str]:
    """trial id -> status, from the event logs."""
    from rsb_tune.store.events import read_events, trial_state

    return {tid: trial_state(read_events(study, tid))[0] for tid in study.plan()}


def in_flight(study: StudyDir) -> set[str]:
    """Trials that started and never finished (running when the driver died)."""
    return {tid for tid, status in statuses(study).items() if status == C.RUNNING}


def next_round(order: Sequence[tuple[str, int]], finished: Mapping[str, bool], batch: int, least: int = 0) -> list[str]:
    """The trial ids of the next round of a paired study: the first ``batch`` seeds (in seed
    order) not yet finished in both arms (``finished``: trial id -> finished in both); at
    least enough to reach ``least`` seeds (the rule's least n: no decision comes before it, so
    the first round runs that many at once instead of paying a round per batch)."""
    left = [tid for tid, _ in order if not finished.get(tid)]
    done = sum(1 for tid, _ in order if finished.get(tid))
    return left[: max(batch, least - done)]


# --------------------------------------------------------------------------- the searcher's logic


class SeedScheduler:
    """Which planned seed a sequential study starts next (the decision logic of the searcher).

    ``order``: (trial id, seed) of the trials of this run, in seed order; ``trials``: the
    study's trials table when the run starts (finished trials of earlier runs); ``slots``: at
    most this many trials suggested and not finished at once (suggesting more would queue trials
    that Ray then runs whatever the rule says); ``on_stop(decision)``: called once, when a
    finished trial makes the rule stop.
    """

    def __init__(self, rule: stopping.StoppingRule, seeds: Sequence[int], order: Sequence[tuple[str, int]], trials, *, slots: int, on_stop=None):
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.rule, self.seeds, self.slots = rule, [int(s) for s in seeds], int(slots)
        self.queue = [tid for tid, _ in order]
        self.seed_of = {tid: int(s) for tid, s in order}
        self.rows: dict[int, tuple[str, float]] = {}
        if trials is not None and len(trials):
            for seed, status, value in zip(trials["seed"], trials["status"], trials[rule.metric], strict=True):
                self.rows[int(seed)] = (str(status), float(value) if value is not None else math.nan)
        self.in_flight: set[str] = set()
        self.on_stop, self.stop_told = on_stop, False
        self.decision = self._decide()

    def _decide(self) -> stopping.Decision:
        import pandas as pd

        table = pd.DataFrame(
            [{"seed": s, "status": st, self.rule.metric: v} for s, (st, v) in self.rows.items()],
            columns=["seed", "status", self.rule.metric],
        )
        return stopping.decide(self.rule, stopping.seed_prefix(table, self.seeds, self.rule.metric).values)

    def next(self) -> str:
        """The trial id to start now, :data:`WAIT` or :data:`FINISH`."""
        if self.decision.stop or not self.queue:
            return FINISH
        if len(self.in_flight) >= self.slots:
            return WAIT
        tid = self.queue.pop(0)
        self.in_flight.add(tid)
        return tid

    def finished(self, trial_id: str, status: str, value: float | None) -> stopping.Decision:
        """A trial ended (``status`` one of the contract's finished statuses); returns the new decision."""
        self.in_flight.discard(trial_id)
        if trial_id in self.seed_of:
            v = math.nan if value is None else float(value)
            self.rows[self.seed_of[trial_id]] = (status, v)
            self.decision = self._decide()
        if self.decision.stop and self.on_stop is not None and not self.stop_told:
            self.stop_told = True
            self.on_stop(self.decision)  # once, as soon as the rule stops: a kill from now on finds it
        return self.decision


# --------------------------------------------------------------------------- a paired study's arms


def check_arms(a, b, named: Mapping[str, Sequence[str]]) -> None:
    """Refuse two arms whose trials differ in anything that was not named.

    ``a``, ``b``: the arms' :class:`rsb_tune.planning.space.Plan`; ``named``: arm -> the keys its
    ``--set`` / ``--vs-set`` names. A key may differ when an arm's ``--set`` names it, when it
    comes from a recipe and the recipes differ, from a dataset profile and the datasets differ,
    or is derived from such keys. The seeds (model, data and augmentation) are always equal.
    """
    ids_a, ids_b = list(a.trials), list(b.trials)
    if ids_a != ids_b:
        raise ConfigError(f"paired arms must plan the same trials, got {len(ids_a)} and {len(ids_b)}")
    base_a, base_b = a.base, b.base
    allowed = set(named.get("a", ())) | set(named.get("b", ()))
    recipes_differ = base_a.values["recipe"] != base_b.values["recipe"]
    datasets_differ = base_a.values["dataset"] != base_b.values["dataset"]
    for tid in ids_a:
        ca, cb = a.trials[tid], b.trials[tid]
        for key in sorted(set(ca) | set(cb)):
            if ca.get(key) == cb.get(key):
                continue
            if key in C.SEED_COLUMNS:
                raise ConfigError(f"paired arms must share their seeds; {tid}: {key} is {ca.get(key)!r} in a, {cb.get(key)!r} in b")
            sources = (base_a.sources.get(key, ""), base_b.sources.get(key, ""))
            if key in allowed or any(follows_from_compared(s, recipes_differ=recipes_differ, datasets_differ=datasets_differ) for s in sources):
                continue
            raise ConfigError(
                f"paired arms differ in {key} ({ca.get(key)!r} from {sources[0]} in a, {cb.get(key)!r} from {sources[1]} in b), "
                "which neither the recipes nor --set/--vs-set name; name it or make it equal"
            )
