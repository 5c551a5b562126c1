"""The in-process executor: a study's trials one after another in this process, no Ray.

For a study that fits one machine: a grid or a seed study (a sequential one too), on a
storage that is a directory. It writes the same event logs, checkpoints (under ``ray/``, in
Ray's layout, so either executor resumes the other's study) and tables as Ray does, and the
same results bit for bit: a trial's numerics depend on its config and its torch threads only,
and both are the same here. What needs Ray is refused with one line naming the option: a
search, ASHA, data-parallel trials, packed seeds, ``--address``, ``--tracking``, an object store.
"""

from __future__ import annotations

import os
import socket
import traceback
from pathlib import Path
from typing import Any, Mapping

from analysis import contract as C
from rsb_tune.errors import ConfigError, arg
from rsb_tune.runner import lifecycle
from rsb_tune.runner.executor import Executor, inject_fault

__all__ = ["LocalExecutor"]


class LocalExecutor(Executor):
    """Trains the trials in this process, one at a time (``--executor local``)."""

    name = "local"

    def check(self, opts) -> None:
        for option, value in (("address", opts.address), ("tracking", opts.tracking)):
            if value:
                raise ConfigError(f"{arg(option)}: needs Ray; the local executor runs trials in this process ({arg('executor', 'ray')} for it)")

    def fit(self, study, data, opts, plan, *, planned: int, done: int, search=None, seeds=None) -> None:
        self._refuse(study, plan, search)
        progress = lifecycle.Progress(study.name, planned=planned, done=done, quiet=opts.quiet)
        recorder = lifecycle.WriteGuard(lifecycle.Recorder(study, plan, progress))
        checkpoints = lifecycle.Checkpoints(study)
        run = checkpoints.next_run()
        try:
            for trial_id in self._order(plan, seeds):
                status, value = self._trial(study, data, opts, plan, trial_id, recorder, checkpoints, run)
                if seeds is not None:
                    seeds.finished(trial_id, status, value)
                recorder.raise_if_halted()
            recorder.ended()
        finally:
            progress.close()
        recorder.raise_if_halted()

    # ------------------------------------------------------------------ the pieces

    @staticmethod
    def _refuse(study, plan, search) -> None:
        meta = study.meta()
        why = None
        if search is not None:
            why = "a search samples its trials as they run"
        elif (meta.get("space") or {}).get("scheduler"):
            why = "an early-stopped grid (scheduler: asha)"
        elif study.mirror is not None:
            why = "a study in an object store"
        elif any(int(cfg.get("workers_per_trial") or 1) > 1 for cfg in plan.todo.values()):
            why = "data-parallel trials (workers_per_trial > 1)"
        elif any(cfg.get("pack", 1) != 1 for cfg in plan.todo.values()):
            why = "packed seeds (pack > 1)"
        if why:
            raise ConfigError(f"{arg('executor', 'local')}: {why} needs Ray; run it with {arg('executor', 'ray')}")

    @staticmethod
    def _order(plan, seeds):
        """The trials in plan order, or a sequential study's seeds while its rule says continue."""
        if seeds is None:
            yield from plan.todo
            return
        from rsb_tune.sequential import engine as sequential

        while (trial_id := seeds.next()) not in (sequential.FINISH, sequential.WAIT):
            yield trial_id

    def _trial(self, study, data, opts, plan, trial_id, recorder, checkpoints, run) -> tuple[str, float | None]:
        """Train one trial (retried from its last checkpoint up to ``max_failures`` times);
        returns its status and final value of the study's metric."""
        import torch

        from rsb_tune.training import checkpoint as ckpt_file
        from rsb_tune.training.custom import trial_function

        cfg = dict(plan.todo[trial_id])
        cfg["threads"] = cfg.get("threads") or plan.threads.get(trial_id) or opts.threads
        resume_path = plan.resume_from.get(trial_id)
        reporter = _Reporter(study, trial_id, recorder, checkpoints, run)
        recorder.trial_started(trial_id)
        threads, failed = torch.get_num_threads(), False
        try:
            for attempt in range(opts.max_failures + 1):
                resume = ckpt_file.load(Path(resume_path) / C.CHECKPOINT_FILE) if resume_path else None
                if resume is not None and resume.get("final"):
                    break  # finished already (its last result is on disk)
                try:
                    train = trial_function(cfg)  # the built-in trial, or your own trainer
                    train(cfg, reporter, data.for_config(cfg) if data.splits else None, resume=resume)
                    break
                except KeyboardInterrupt:
                    raise
                except Exception:  # noqa: BLE001 - a trial's failure is its record, as under Ray
                    failed = attempt == opts.max_failures
                    recorder.trial_failed(trial_id, traceback.format_exc(), final=failed)
                    resume_path = reporter.last or resume_path
        finally:
            torch.set_num_threads(threads)  # the driver's own threads, as before the trial
        recorder.trial_completed(trial_id)
        return (C.ERROR, None) if failed else (reporter.status, reporter.value)


class _Reporter:
    """A trial's ``report`` in this process: the fault hook, where it ran, the result and its
    checkpoint (written in Ray's layout: ``ray/run-NN/<trial>/checkpoint_NNNNNN/state.pt``)."""

    def __init__(self, study, trial_id: str, recorder, checkpoints, run: str):
        self.study, self.trial_id, self.recorder, self.checkpoints, self.run = study, trial_id, recorder, checkpoints, run
        self.where = {"hostname": socket.gethostname(), "pid": os.getpid()}
        self.metric = study.meta().get("metric", C.DEFAULT_METRIC)
        self.saved, self.last = 0, None
        self.status, self.value = C.RUNNING, None

    def __call__(self, metrics: Mapping[str, Any], *, checkpoint: Mapping[str, Any] | None = None) -> None:
        from rsb_tune.training import checkpoint as ckpt_file

        inject_fault(self.trial_id, metrics["epoch"], str(self.study.errors_dir))
        metrics = {**metrics, **self.where}
        self.recorder.result(self.trial_id, metrics)
        self.status, self.value = metrics.get("status", C.RUNNING), C.result_value(metrics, self.metric)
        if checkpoint is None:
            return
        if self.status != C.RUNNING:  # weights are enough, resume never needs more
            checkpoint = {"epoch": checkpoint["epoch"], "model": checkpoint["model"], "final": True}
        path = self.checkpoints.path(f"{self.run}/{self.trial_id}/checkpoint_{self.saved:06d}")
        self.saved += 1
        Path(path).mkdir(parents=True, exist_ok=True)
        ckpt_file.save(checkpoint, Path(path) / C.CHECKPOINT_FILE)
        self.recorder.checkpoint_saved(self.trial_id, path)
        self.last = path
