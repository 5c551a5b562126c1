"""What runs a study's trials: the executor interface, and the executors by name.

The runner (:mod:`rsb_tune.runner.loops`) decides *what* runs: which trials a grid or seed
study has left, the seeds a sequential study starts while its rule says continue, the rounds
of a paired study. An executor decides *where and how*: it trains the trials of a
:class:`~rsb_tune.runner.lifecycle.ResumePlan` and tells a
:class:`~rsb_tune.runner.lifecycle.Recorder` what they report, which writes it down. So a
study's files are the same whichever executor ran it, and a test or a benchmark can hand the
runner an executor of its own instead of patching private functions.

- ``auto`` (:class:`AutoExecutor`, the default): ``local`` where it is safe, ``ray`` otherwise;
  the rule is :func:`needs_ray`, and the choice is logged and recorded in study.yaml
  (``run_options.executor``, ``run_options.executor_rule``);
- ``ray`` (:class:`rsb_tune.runner.ray_executor.RayExecutor`): Ray Tune, on this
  machine or a cluster (``--address``), with GPUs, concurrency, searches, ASHA, DDP and packs;
- ``local`` (:class:`rsb_tune.runner.local.LocalExecutor`): without starting Ray, on this
  machine's storage: a grid or a seed study (sequential ones too), its trials in this process
  one after another, or in a small pool of processes (one per slot: CPUs over
  ``cpus_per_trial``) when more than one can run at once. It refuses what needs Ray (a search,
  ASHA, DDP, packs, ``--address``, tracking, an object store) with one line.

Besides trials, an executor runs independent jobs (:meth:`Executor.map`): the evaluation of a
study's trained weights (:mod:`rsb_tune.runner.evaluation`), one job per trial, in parallel
under Ray (tasks with ``--cpus-per-trial``/``--gpus-per-trial`` each), one after another in this
process under ``local`` (and ``auto``, unless the options need Ray: ``--address``).
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from rsb_tune.errors import ConfigError, suggest

__all__ = ["Executor", "AutoExecutor", "EXECUTORS", "get_executor", "needs_ray", "needs_ray_options", "local_slots", "warm_up", "inject_fault"]

EXECUTORS = {
    "auto": "rsb_tune.runner.executor:AutoExecutor",
    "ray": "rsb_tune.runner.ray_executor:RayExecutor",
    "local": "rsb_tune.runner.local:LocalExecutor",
}


class Executor(abc.ABC):
    """Runs the trials the runner hands it. ``name`` is what study.yaml records."""

    name: str = "executor"

    def check(self, opts) -> None:
        """Refuse, before anything is written, run options this executor cannot honour."""

    def slots(self, opts, meta: Mapping[str, Any]) -> int:
        """How many trials can run at once (a sequential study suggests no more seeds than this)."""
        return 1

    def for_run(self, study, opts, plan, search=None) -> "Executor":
        """The executor that runs this run of ``study`` (itself; :class:`AutoExecutor` picks one)."""
        return self

    @abc.abstractmethod
    def fit(self, study, data, opts, plan, *, planned: int, done: int, search=None, seeds=None) -> None:
        """Train the trials of ``plan`` (a :class:`~rsb_tune.runner.lifecycle.ResumePlan`:
        configs, the checkpoints they continue from, their torch threads) of ``study`` on
        ``data`` (:class:`~rsb_tune.data.registry.StudyData`), recording every report through a
        :class:`~rsb_tune.runner.lifecycle.Recorder`. ``planned``/``done``: the progress
        display's counts. ``search``: ``(space, resolver)`` of a search, whose trials are
        sampled as it runs; ``seeds``: a sequential study's
        :class:`~rsb_tune.sequential.engine.SeedScheduler`, which says which seed starts next."""

    def map(self, fn: Callable[..., Any], jobs: Mapping[str, tuple], opts, *, shared: Any = None, on_result: Callable[[str, Any], None]) -> dict[str, str]:
        """Run ``fn(*args, shared)`` for each ``key: args`` of ``jobs`` (``fn``: a module-level
        function; ``shared``: what every job reads, shipped once) and call ``on_result(key,
        value)`` here, in the driver, as each one finishes. Returns ``{key: error line}`` of the
        jobs that raised; the others go on. This default runs them in this process, in order."""
        import traceback

        from rsb_tune.runner.lifecycle import error_message

        errors = {}
        for key, args in jobs.items():
            try:
                value = fn(*args, shared)
            except KeyboardInterrupt:
                raise
            except Exception:  # noqa: BLE001 - a job's failure is its record; the others go on
                errors[key] = error_message(traceback.format_exc())
                continue
            on_result(key, value)
        return errors


def get_executor(spec: "str | Executor") -> Executor:
    """The executor called ``spec`` (see :data:`EXECUTORS`), or ``spec`` itself when it is one."""
    if isinstance(spec, Executor):
        return spec
    if spec not in EXECUTORS:
        from rsb_tune.errors import arg

        raise ConfigError(f"{arg('executor', spec)}: unknown executor{suggest(str(spec), EXECUTORS)}; choose from {', '.join(EXECUTORS)}")
    import importlib

    module, _, cls = EXECUTORS[spec].partition(":")
    return getattr(importlib.import_module(module), cls)()


def needs_ray(study, opts, plan=None, search=None) -> str | None:
    """Why a run of ``study`` needs Ray (the local executor refuses it; ``auto`` picks Ray), or
    None: the one list of what only Ray does. ``plan``: the run's
    :class:`~rsb_tune.runner.lifecycle.ResumePlan` (its trials' configs), else the study's plan."""
    if why := needs_ray_options(opts):
        return why
    if search is not None:
        return "a search samples its trials as they run"
    meta = study.meta()
    if (meta.get("space") or {}).get("scheduler"):
        return "an early-stopped grid (scheduler: asha)"
    if study.mirror is not None:
        return "a study in an object store"
    configs = list(plan.todo.values()) if plan is not None else [meta.get("base_config") or {}]
    if any(int(cfg.get("workers_per_trial") or 1) > 1 for cfg in configs):
        return "data-parallel trials (workers_per_trial > 1)"
    if any(cfg.get("pack", 1) not in (1, None) for cfg in configs):
        return "packed seeds (pack > 1)"
    return None


def _wants_gpu(opts, plan) -> bool:
    """Trials on GPUs: Ray shares them out (``gpus_per_trial``); ``auto`` leaves them to it."""
    if opts.gpus_per_trial:
        return True
    devices = {cfg.get("device") for cfg in (plan.todo.values() if plan is not None else ())}
    if "cuda" in devices:
        return True
    if "auto" in devices:
        import torch

        return torch.cuda.is_available()
    return False


def local_slots(opts) -> int:
    """Trials at once on this machine: its CPUs over ``cpus_per_trial``, at most ``max_concurrent``."""
    slots = max(1, int((os.cpu_count() or 1) // opts.cpus_per_trial))
    return min(slots, opts.max_concurrent) if opts.max_concurrent else slots


class AutoExecutor(Executor):
    """``--executor auto``: the local executor where it is safe, Ray otherwise. Local when the run
    needs nothing of Ray's (:func:`needs_ray`: no ``--address``, no tracking, no search, no
    ASHA, no DDP, no packs, no object store) and its trials use no GPU; its trials then run in
    this process (one slot) or a pool of processes, one per slot, on this machine's CPUs, as
    Ray would run them. The choice is logged and recorded in study.yaml."""

    name = "auto"

    def check(self, opts) -> None:
        if needs_ray_options(opts):
            get_executor("ray").check(opts)

    def slots(self, opts, meta: Mapping[str, Any]) -> int:
        return local_slots(opts)

    def for_run(self, study, opts, plan, search=None) -> Executor:
        why = needs_ray(study, opts, plan, search) or ("trials on GPUs" if _wants_gpu(opts, plan) else None)
        chosen = get_executor("ray" if why else "local")
        rule = f"auto: {why} needs Ray" if why else f"auto: nothing needs Ray; {min(local_slots(opts), max(1, len(plan.todo)))} trial(s) at once on this machine"
        recorded = study.meta().get("run_options") or {}
        if (recorded.get("executor"), recorded.get("executor_rule")) != (chosen.name, rule):  # once per run, not per round of a paired study
            from rsb_tune._log import logger

            logger.info("study %s: executor %s (%s)", study.name, chosen.name, rule)
            study.update_meta(run_options={**recorded, "executor": chosen.name, "executor_rule": rule})
        return chosen

    def map(self, fn, jobs, opts, *, shared=None, on_result):
        if needs_ray_options(opts):
            return get_executor("ray").map(fn, jobs, opts, shared=shared, on_result=on_result)
        return super().map(fn, jobs, opts, shared=shared, on_result=on_result)

    def fit(self, study, data, opts, plan, *, planned: int, done: int, search=None, seeds=None) -> None:
        self.for_run(study, opts, plan, search).fit(study, data, opts, plan, planned=planned, done=done, search=search, seeds=seeds)


def needs_ray_options(opts) -> str | None:
    """The part of :func:`needs_ray` that the run options alone decide (checked before anything is written)."""
    if opts.address:
        return "a Ray cluster (--address)"
    if opts.tracking:
        return "tracking (--tracking, Ray Tune's logger callbacks)"
    return None


def warm_up(study, data, plan) -> None:
    """The trials' compiled CPU loops compiled (or loaded from numba's cache) by the driver
    once, before the trials start, rather than in each trial process; only where a trial will
    run them (:func:`rsb_tune.training.trial.warm_cpu_kernels`)."""
    if not data.splits:  # your own trainer: nothing of ours to warm
        return
    from rsb_tune._log import timed
    from rsb_tune.data.types import data_spec
    from rsb_tune.training.trial import warm_cpu_kernels

    first: dict[tuple, Mapping[str, Any]] = {}  # the first trial of each dataset (a search: its base)
    for cfg in [*plan.todo.values()] or [study.meta()["base_config"]]:
        first.setdefault(data_spec(cfg), cfg)

    with timed("kernels_warm_up"):
        for spec, cfg in first.items():
            warm_cpu_kernels(cfg, data.splits.get(spec) or next(iter(data.splits.values())))


def inject_fault(trial_id: str, epoch: int, marker_dir: str) -> None:
    """Testing aid of every executor: ``RSB_TUNE_FAULTS="t0001@2:raise-once,t0002@1:raise"``
    makes trial t0001 raise once after its epoch 2, and t0002 raise after epoch 1 on every attempt."""
    spec = os.environ.get("RSB_TUNE_FAULTS", "")
    for item in filter(None, (x.strip() for x in spec.split(","))):
        target, _, kind = item.partition(":")
        tid, _, at = target.partition("@")
        if tid != trial_id or int(at) != epoch:
            continue
        if kind == "raise-once":
            marker = Path(marker_dir) / f".fault-{trial_id}-{epoch}"
            if marker.exists():
                continue
            marker.touch()
        raise RuntimeError(f"injected fault in {trial_id} after epoch {epoch} (RSB_TUNE_FAULTS)")
