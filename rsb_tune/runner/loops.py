"""The runner: what a run of a study has to do, without Ray. An executor
(:mod:`rsb_tune.runner.executor`) trains the trials it is handed.

- :func:`run_study`: a grid or seed study's unfinished trials; a search's remaining samples;
  a sequential study's seeds, in seed order, while its rule says continue;
- :func:`run_trials`: only some trials (a round of a paired study).

The caller holds the study's lock. Every decision is made from the plan and the event logs
(:func:`rsb_tune.runner.lifecycle.prepare_run`), so a resumed run continues where the last
one stopped, whichever executor ran it.
"""

from __future__ import annotations

from analysis import contract as C
from rsb_tune.runner import lifecycle
from rsb_tune.runner.executor import Executor
from rsb_tune.sequential import engine as sequential
from rsb_tune.store.directory import now_iso
from rsb_tune.store.tables import write_tables

__all__ = ["run_study", "run_trials"]


def run_study(study, data, opts, executor: Executor) -> None:
    """Run (or continue) every unfinished trial of ``study``."""
    rule = sequential.rule_of(study.meta())
    if rule is not None:  # a sequential seed study (--until)
        return _run_sequential(study, data, opts, rule, executor)
    space, resolver = lifecycle.search_of(study)
    plan = lifecycle.prepare_run(study, searching=resolver is not None)
    if resolver is not None:
        trials, _ = write_tables(study)
        used = int(trials["status"].isin([*C.COUNTED, *C.FAILED]).sum()) if not trials.empty else 0
        if space.search_trials - used > 0:
            executor.for_run(study, opts, plan, (space, resolver)).fit(study, data, opts, plan, planned=space.search_trials, done=used, search=(space, resolver))
    elif plan.todo:
        executor.for_run(study, opts, plan).fit(study, data, opts, plan, planned=len(study.plan()), done=plan.finished)
    write_tables(study)


def _run_sequential(study, data, opts, rule, executor: Executor) -> None:
    """A sequential study: the stopping state is recomputed from the tables first; a study its
    rule stopped only lets the trials that were running when its driver died finish, never
    starting another seed."""
    trials, _ = write_tables(study)
    decision = sequential.study_decision(study, rule, trials)
    if decision.stop:
        plan = lifecycle.prepare_run(study, only=sequential.in_flight(study))
        if plan.todo:
            executor.for_run(study, opts, plan).fit(study, data, opts, plan, planned=len(plan.todo) + plan.finished, done=plan.finished)
    else:
        plan = lifecycle.prepare_run(study)
        if plan.todo:
            executor = executor.for_run(study, opts, plan)
            trials, _ = write_tables(study)  # errored trials restarted by prepare_run no longer count as finished
            order = [(tid, seed) for tid, seed in sequential.seed_order(study.plan()) if tid in plan.todo]
            seeds = [seed for _, seed in sequential.seed_order(study.plan())]
            # decided_at: no seed starts after it; the trials still running then finish and are kept
            stop = lambda decision: lifecycle.record_stopping(study, decision, decided_at=now_iso("microseconds"))  # noqa: E731
            scheduler = sequential.SeedScheduler(rule, seeds, order, trials, slots=executor.slots(opts, study.meta()), on_stop=stop)
            executor.fit(study, data, opts, plan, planned=rule.cap, done=plan.finished, seeds=scheduler)
    trials, _ = write_tables(study)
    lifecycle.record_stopping(study, sequential.study_decision(study, rule, trials))


def run_trials(study, data, opts, executor: Executor, trial_ids) -> None:
    """Run only ``trial_ids`` of ``study`` (a round of a paired study)."""
    plan = lifecycle.prepare_run(study, only=set(trial_ids))
    if plan.todo:
        executor.for_run(study, opts, plan).fit(study, data, opts, plan, planned=len(plan.todo), done=0)
    write_tables(study)
