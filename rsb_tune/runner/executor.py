"""What runs a study's trials: the executor interface, and the executors by name.

The runner (:mod:`rsb_tune.runner.loops`) decides *what* runs: which trials a grid or seed
study has left, the seeds a sequential study starts while its rule says continue, the rounds
of a paired study. An executor decides *where and how*: it trains the trials of a
:class:`~rsb_tune.runner.lifecycle.ResumePlan` and tells a
:class:`~rsb_tune.runner.lifecycle.Recorder` what they report, which writes it down. So a
study's files are the same whichever executor ran it, and a test or a benchmark can hand the
runner an executor of its own instead of patching private functions.

- ``ray`` (:class:`rsb_tune.runner.ray_executor.RayExecutor`, the default): Ray Tune, on this
  machine or a cluster (``--address``), with GPUs, concurrency, searches, ASHA, DDP and packs;
- ``local`` (:class:`rsb_tune.runner.local.LocalExecutor`): the trials one after another in
  this process, without starting Ray: a grid or a seed study (sequential ones too) on this
  machine's storage. It refuses what needs Ray (a search, ASHA, DDP, packs, ``--address``,
  tracking) with one line.

Besides trials, an executor runs independent jobs (:meth:`Executor.map`): the evaluation of a
study's trained weights (:mod:`rsb_tune.runner.evaluation`), one job per trial, in parallel
under Ray (tasks with ``--cpus-per-trial``/``--gpus-per-trial`` each), one after another in this
process under ``local``.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from rsb_tune.errors import ConfigError, suggest

__all__ = ["Executor", "EXECUTORS", "get_executor", "inject_fault"]

EXECUTORS = {"ray": "rsb_tune.runner.ray_executor:RayExecutor", "local": "rsb_tune.runner.local:LocalExecutor"}


class Executor(abc.ABC):
    """Runs the trials the runner hands it. ``name`` is what study.yaml records."""

    name: str = "executor"

    def check(self, opts) -> None:
        """Refuse, before anything is written, run options this executor cannot honour."""

    def slots(self, opts, meta: Mapping[str, Any]) -> int:
        """How many trials can run at once (a sequential study suggests no more seeds than this)."""
        return 1

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
