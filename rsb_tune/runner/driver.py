"""The study's driver: open a planned study under its lock (create it, or continue the one
of the same plan), run it through the runner (:mod:`rsb_tune.runner.loops`) and its executor,
and run a paired study's rounds until its rule decides. The public functions of
:mod:`rsb_tune.api` call these; they return the study's status (the one of
:func:`rsb_tune.store.status.read_status`), never print.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Mapping

from analysis import contract as C
from rsb_tune._log import logger, timed
from rsb_tune.errors import Interrupted, StudyError
from rsb_tune.options import RunOptions
from rsb_tune.planning.study_plan import StudyPlan
from rsb_tune.runner import lifecycle
from rsb_tune.runner.executor import get_executor
from rsb_tune.store.directory import StudyDir
from rsb_tune.store.manifest import data_configs
from rsb_tune.store.status import StudyStatus, read_status

__all__ = ["packs_resolved", "open_study", "command_line", "check_logs", "run", "run_pair", "resume_pair"]


def packs_resolved(plan: StudyPlan, opts: RunOptions) -> StudyPlan:
    """``pack: auto`` made a number for where the trials run (see :mod:`rsb_tune.planning.packs`)."""
    from rsb_tune.planning import packs

    trials = packs.resolve_auto(plan.trials, gpus_per_trial=opts.gpus_per_trial)
    return dataclasses.replace(plan, plan=dataclasses.replace(plan.plan, trials=trials))


def open_study(plan: StudyPlan, study: StudyDir, command: str | None, stopping: Mapping[str, Any] | None, opts: RunOptions):
    """(study, its data, its acquired lock): the study of ``plan`` created under ``study``'s
    name, or the existing one when its plan (and stopping rule) are the same."""
    from rsb_tune.planning.config import DATA_KEYS
    from rsb_tune.data.registry import load_study_data

    with timed("dataset_decode"):  # each dataset the trials name, once (your own trainer loads its own)
        data = load_study_data([] if plan.trainer is not None else plan.plan.configs(DATA_KEYS))
    trials = lifecycle._jsonable(dict(plan.trials))
    if study.exists():
        _check_same_plan(study, trials, stopping)
        logger.info("study %r exists with the same plan: resuming it", study.name)
        return study, data, study.lock().acquire()
    if plan.trainer is not None:
        manifest = lifecycle.trainer_manifest(kind=plan.kind, plan=plan.plan, trainer=plan.trainer, command=command or command_line(), stopping=stopping)
    else:
        manifest = lifecycle.build_manifest(kind=plan.kind, plan=plan.plan, space=plan.space, data=data, command=command or command_line(), stopping=stopping, lineage=plan.lineage)
    created = not study.dir.exists()
    study.dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = study.lock().acquire()
    except StudyError:
        if created and {p.name for p in study.dir.iterdir()} <= {".lock"}:
            import shutil

            shutil.rmtree(study.dir, ignore_errors=True)  # nothing of ours stays, nothing of another driver goes
        raise
    try:
        if study.exists():  # another driver created it between our check and the lock
            _check_same_plan(study, trials, stopping)
        else:
            with timed("plan_and_manifest_writes"):
                lifecycle.create_study(study, manifest, trials)
    except BaseException:
        lock.release()
        raise
    until = f" (at most; until {plan.stopping.text})" if plan.stopping is not None else ""
    logger.info("study %s: %s trials%s -> %s", study.name, plan.planned, until, study.where)
    return study, data, lock


def command_line() -> str:
    argv = sys.argv or [""]
    return " ".join(["rsb-tune", *argv[1:]]) if argv[0].endswith("rsb-tune") else " ".join(argv)


def _check_same_plan(study: StudyDir, trials: Mapping[str, Any], stopping: Mapping[str, Any] | None = None) -> None:
    recorded = study.require().meta().get("stopping") or {}
    if study.plan() != trials or _rule_keys(recorded) != _rule_keys(stopping or {}):
        raise StudyError(
            f"study {study.name!r} already exists in {study.location.display()} with a different plan; "
            f"continue it with `rsb-tune resume {study.name}` or pick another name"
        )


def _rule_keys(record: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a stopping record that defines the rule (not where the study stands)."""
    return {k: record.get(k) for k in ("rule", "cap", "metric", "level", "method", "bounds", "delta")} if record else {}


def run(study: StudyDir, data, opts: RunOptions, locked: bool = False) -> StudyStatus:
    """Run ``study`` (locked here unless ``locked``) through its executor; its status at the end."""
    if not locked:
        with study.lock():
            return run(study, data, opts, locked=True)
    from rsb_tune.runner.loops import run_study
    from rsb_tune.store.directory import now_iso

    lifecycle.check_format(study, study.meta())
    check_logs(study)
    study.update_meta(run_options=opts.recorded())
    try:
        with timed("run_study"):
            run_study(study, data, opts, get_executor(opts.executor))
    except KeyboardInterrupt:
        raise Interrupted(study.name) from None
    except OSError as e:  # the storage refused a write outside the run (planning, the last tables)
        if lifecycle.is_storage_error(e):
            raise lifecycle.storage_failure(study, e) from None
        raise
    study.update_meta(ended_at=now_iso())
    status = read_status(study)
    if status.unfinished and not status.failed:
        raise Interrupted(study.name)  # Ray Tune returns early on a signal
    return status


def check_logs(study: StudyDir) -> None:
    """Refuse to run a study whose finished trial lost its event log (it would run again)."""
    from rsb_tune.store.events import read_events
    from rsb_tune.store.status import lost_logs, trial_states

    lost = lost_logs(study.dir, trial_states(study.plan(), lambda tid: read_events(study, tid))[0])
    if lost:
        raise StudyError(f"study {study.name!r}: {lost}")


def run_pair(opened, rule, opts: RunOptions):
    """Rounds until the paired rule decides (the caller holds both arms' locks); the decision."""
    import os

    from rsb_tune.sequential import engine as sequential
    from rsb_tune.runner.loops import run_trials
    from rsb_tune.store.directory import now_iso

    (a, data_a, _), (b, data_b, _) = opened
    for study in (a, b):
        lifecycle.check_format(study, study.meta())
        study.update_meta(run_options=opts.recorded())
    executor = get_executor(opts.executor)
    batch = opts.max_concurrent or max(1, int((os.cpu_count() or 1) // opts.cpus_per_trial))
    order = sequential.seed_order(a.plan())
    while True:
        decision = sequential.paired_decision(a, b, rule)
        for study in (a, b):
            lifecycle.record_stopping(study, decision)
        states = [sequential.statuses(a), sequential.statuses(b)]
        finished = {tid: all(s[tid] in C.FINISHED for s in states) for tid, _ in order}
        todo = [] if decision.stop else sequential.next_round(order, finished, batch, rule.min_seeds)
        if not todo:
            break
        try:
            for study, data in ((a, data_a), (b, data_b)):
                run_trials(study, data, opts, executor, todo)
        except KeyboardInterrupt:
            raise Interrupted(a.name) from None
        if not all(sequential.statuses(study)[tid] in C.FINISHED for study in (a, b) for tid in todo):
            raise Interrupted(a.name)  # Ray Tune returns early on a signal
    for study in (a, b):
        study.update_meta(ended_at=now_iso())
    return decision


def resume_pair(study: StudyDir, opts: RunOptions):
    """Continue the paired study that ``study`` is an arm of (both arms, from their tables):
    (arm a, arm b, the decision)."""
    from rsb_tune.data.registry import load_study_data
    from rsb_tune.sequential.engine import paired_rule_of

    meta = study.meta()
    rule = paired_rule_of(meta)
    arms = sorted([study, StudyDir(study.location, meta["stopping"]["other_arm"]).require()], key=lambda d: d.meta()["stopping"]["arm"])
    opened = []
    try:
        for arm in arms:
            opened.append((arm, load_study_data(data_configs(arm.meta())), arm.lock().acquire()))
        return opened[0][0], opened[1][0], run_pair(opened, rule, opts)
    finally:
        for _, _, lock in opened:
            lock.release()
