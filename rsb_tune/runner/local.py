"""The local executor: a study's trials on this machine without Ray.

For a study that fits one machine: a grid or a seed study (a sequential one too), on a storage
that is a directory. One slot (CPUs over ``cpus_per_trial``, at most ``max_concurrent``): the
trials one after another in this process. More: a pool of that many worker processes (spawned
once per run, each with the study's data), the trials handed out as slots free up, what they
report sent back to this process, which alone writes the study down. It writes the same event
logs, checkpoints (under ``ray/``, in Ray's layout, so either executor resumes the other's
study) and tables as Ray does, and the same results bit for bit: a trial's numerics depend on
its config and its torch threads only, and both are the same here. What needs Ray
(:func:`rsb_tune.runner.executor.needs_ray`) is refused with one line naming the option.
"""

from __future__ import annotations

import os
import queue
import socket
import traceback
from pathlib import Path
from typing import Any, Mapping

from analysis import contract as C
from rsb_tune._log import timed
from rsb_tune.errors import ConfigError, arg
from rsb_tune.runner import lifecycle
from rsb_tune.store.backends import pid_alive
from rsb_tune.runner.executor import Executor, inject_fault, local_slots, needs_ray, needs_ray_options, warm_up

__all__ = ["LocalExecutor"]


class LocalExecutor(Executor):
    """Trains the trials on this machine, without Ray (``--executor local``)."""

    name = "local"

    def check(self, opts) -> None:
        if needs_ray_options(opts):
            option = "address" if opts.address else "tracking"
            raise ConfigError(f"{arg(option)}: needs Ray; the local executor runs trials on this machine ({arg('executor', 'ray')} for it)")

    def slots(self, opts, meta: Mapping[str, Any]) -> int:
        return local_slots(opts)

    def fit(self, study, data, opts, plan, *, planned: int, done: int, search=None, seeds=None) -> None:
        if why := needs_ray(study, opts, plan, search):
            raise ConfigError(f"{arg('executor', 'local')}: {why} needs Ray; run it with {arg('executor', 'ray')}")
        progress = lifecycle.Progress(study.name, planned=planned, done=done, quiet=opts.quiet)
        recorder = lifecycle.WriteGuard(lifecycle.Recorder(study, plan, progress))
        job_of = _jobs(study, opts, plan, lifecycle.Checkpoints(study).next_run())
        workers = min(local_slots(opts), len(plan.todo))
        if workers > 1 and any(int(cfg.get("workers") or 0) > 0 for cfg in plan.todo.values()):
            workers = 1  # a pool's processes are daemons: they cannot start a trial's data-loader workers
        try:
            if workers > 1:
                warm_up(study, data, plan)  # compiled once here, loaded from numba's cache by each worker
            with timed("trials"):
                if workers > 1:
                    _Pool(data, plan, recorder, job_of, workers).run(seeds)
                else:
                    for trial_id in _order(plan, seeds):
                        recorder.trial_started(trial_id)
                        send = lambda *message: _deliver(recorder, message)  # noqa: E731
                        status, value = _run_trial(job_of(trial_id), _data_for(data, plan.todo[trial_id]), send)
                        recorder.trial_completed(trial_id)
                        if seeds is not None:
                            seeds.finished(trial_id, status, value)
                        recorder.raise_if_halted()
            recorder.ended()
        finally:
            progress.close()
        recorder.raise_if_halted()


def _order(plan, seeds):
    """The trials in plan order, or a sequential study's seeds while its rule says continue."""
    todo = iter(plan.todo)
    while (trial_id := _next(todo, seeds)) is not None:
        yield trial_id


def _next(todo, seeds) -> str | None:
    """The next trial to start: from ``todo`` (an iterator of the plan's trials), or the seed a
    sequential study's scheduler suggests; None when there is none (now)."""
    if seeds is None:
        return next(todo, None)
    from rsb_tune.sequential import engine as sequential

    trial_id = seeds.next()
    return None if trial_id in (sequential.FINISH, sequential.WAIT) else trial_id


def _jobs(study, opts, plan, run: str):
    """``trial_id -> job``: what one trial needs to run anywhere on this machine (plain data: it
    travels to a worker). What is the same for every trial of the run (the study's metric, the
    run's checkpoint folder) is read once, here."""
    common = {"errors_dir": str(study.errors_dir), "metric": study.meta().get("metric", C.DEFAULT_METRIC), "max_failures": opts.max_failures}
    checkpoints = lifecycle.Checkpoints(study).path(run)

    def job(trial_id: str) -> dict[str, Any]:
        cfg = dict(plan.todo[trial_id])
        cfg["threads"] = cfg.get("threads") or plan.threads.get(trial_id) or opts.threads
        return {"trial_id": trial_id, "config": cfg, "resume_path": plan.resume_from.get(trial_id), "checkpoints": f"{checkpoints}/{trial_id}", **common}

    return job


def _deliver(recorder, message: tuple) -> None:
    """A trial's message (from this process or a worker) to the study's Recorder."""
    kind, trial_id, *rest = message
    if kind == "result":
        recorder.result(trial_id, rest[0])
    elif kind == "checkpoint":
        recorder.checkpoint_saved(trial_id, rest[0])
    elif kind == "failed":
        recorder.trial_failed(trial_id, rest[0], final=rest[1])


def _run_trial(job: Mapping[str, Any], data, send) -> tuple[str, float | None]:
    """Train one trial (retried from its last checkpoint up to ``max_failures`` times), its
    reports sent as messages to the study's Recorder; returns its status and final value of the
    study's metric."""
    import torch

    from rsb_tune.training import checkpoint as ckpt_file
    from rsb_tune.training.custom import trial_function

    trial_id, resume_path = job["trial_id"], job["resume_path"]
    reporter = _Reporter(job, send)
    threads, failed = torch.get_num_threads(), False
    try:
        for attempt in range(job["max_failures"] + 1):
            resume = ckpt_file.load(Path(resume_path) / C.CHECKPOINT_FILE) if resume_path else None
            if resume is not None and resume.get("final"):
                break  # finished already (its last result is on disk)
            try:
                trial_function(job["config"])(job["config"], reporter, data, resume=resume)  # the built-in trial, or your own trainer
                break
            except KeyboardInterrupt:
                raise
            except Exception:  # noqa: BLE001 - a trial's failure is its record, as under Ray
                failed = attempt == job["max_failures"]
                send("failed", trial_id, traceback.format_exc(), failed)
                resume_path = reporter.last or resume_path
    finally:
        torch.set_num_threads(threads)  # the process's own threads, as before the trial
    return (C.ERROR, None) if failed else (reporter.status, reporter.value)


# --------------------------------------------------------------------------- the pool

_WORKER: dict[str, Any] = {}  # in a worker process: its message queue and the study's data


def _data_for(data, config: Mapping[str, Any]):
    """The trial's dataset, or None for your own trainer (it loads its own)."""
    return data.for_config(config) if data.splits else None


def _ignore_interrupts() -> None:
    """A pool's process follows the driver: Ctrl-C interrupts the driver, which stops the pool
    (the process ignores it), and a driver that died (SIGKILL) takes the process with it within
    a second, so that no orphan writes to a study that another driver may resume."""
    import signal
    import threading
    import time

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="rsb-tune-driver-watch").start()


def _worker_init(messages, data) -> None:
    _ignore_interrupts()
    _WORKER.update(messages=messages, data=data)


def _worker_trial(job: Mapping[str, Any]) -> None:
    messages = _WORKER["messages"]
    send = lambda *message: messages.put(message)  # noqa: E731
    send("started", job["trial_id"], os.getpid())
    status, value = _run_trial(job, _data_for(_WORKER["data"], job["config"]), send)
    send("done", job["trial_id"], status, value)


class _Pool:
    """``workers`` spawned processes run the trials; this process hands them out as slots free
    up (a sequential study: the seeds its scheduler suggests) and writes down what they send.
    A trial whose process dies (killed, out of memory) is retried from its last checkpoint, as
    Ray does, up to ``max_failures`` times."""

    def __init__(self, data, plan, recorder, job_of, workers: int):
        self.data, self.plan, self.recorder, self.job_of, self.workers = data, plan, recorder, job_of, workers
        self.running: dict[str, dict[str, Any]] = {}  # trial id -> its job, pending result, process id, retries left

    def run(self, seeds) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # never fork a process that holds torch's threads
        # a manager's queue, not a pipe shared under a lock: a worker killed while it writes
        # (SIGKILL, the OOM killer) cannot leave the lock held and the other workers blocked
        from multiprocessing.managers import SyncManager

        manager = SyncManager(ctx=context)
        manager.start(_ignore_interrupts)
        messages = manager.Queue()
        pool = context.Pool(self.workers, initializer=_worker_init, initargs=(messages, self.data))
        todo = iter(self.plan.todo)
        finished = False
        try:
            while True:
                while not finished and len(self.running) < self.workers and not self.recorder.halted():
                    trial_id = _next(todo, seeds)
                    if trial_id is None:
                        finished = seeds is None or not self.running  # a sequential study may suggest more once one ends
                        break
                    self.recorder.trial_started(trial_id)
                    job = self.job_of(trial_id)
                    self.running[trial_id] = {"job": job, "pid": None, "retries": job["max_failures"]}
                    self._submit(pool, trial_id)
                if not self.running:
                    break
                try:
                    message = messages.get(timeout=0.5)
                except queue.Empty:
                    self._check_workers(pool, seeds)
                    continue
                kind, trial_id, *rest = message
                if kind == "started":
                    self.running[trial_id]["pid"] = rest[0]
                elif kind == "done":
                    self._ended(trial_id, seeds, *rest)
                else:
                    if kind == "checkpoint":  # a retry continues from it, numbering its own after it
                        job = self.running[trial_id]["job"]
                        job["resume_path"], job["first_checkpoint"] = rest[0], job.get("first_checkpoint", 0) + 1
                    _deliver(self.recorder, message)
        finally:
            # every trial has ended (or the run was interrupted: they stop with it, resumable);
            # terminate, not close: a killed worker's lost task would keep close's join waiting
            pool.terminate()
            pool.join()
            manager.shutdown()

    def _submit(self, pool, trial_id: str) -> None:
        entry = self.running[trial_id]
        entry["pid"], entry["pending"] = None, pool.apply_async(_worker_trial, (dict(entry["job"], max_failures=entry["retries"]),))

    def _ended(self, trial_id: str, seeds, status: str, value) -> None:
        self.running.pop(trial_id)
        self.recorder.trial_completed(trial_id)
        if seeds is not None:
            seeds.finished(trial_id, status, value)

    def _check_workers(self, pool, seeds) -> None:
        """A trial whose process died, or that could not run there, fails; a dead process's trial
        is retried from its last checkpoint while it has retries left."""
        for trial_id, entry in list(self.running.items()):
            pending, error = entry["pending"], None
            if pending.ready() and not pending.successful():
                try:
                    pending.get()
                except BaseException as e:  # noqa: BLE001 - reported as the trial's error
                    error = "".join(traceback.format_exception(e))
            elif entry["pid"] is not None and not pid_alive(entry["pid"]):
                error = f"the trial's process (pid {entry['pid']}) died"
            if error is None:
                continue
            retry = entry["retries"] > 0 and entry["pid"] is not None
            self.recorder.trial_failed(trial_id, error, final=not retry)
            if retry:
                entry["retries"] -= 1
                self._submit(pool, trial_id)
            else:
                self._ended(trial_id, seeds, C.ERROR, None)


class _Reporter:
    """A trial's ``report`` on this machine: the fault hook, where it ran, the result and its
    checkpoint (written in Ray's layout: ``ray/run-NN/<trial>/checkpoint_NNNNNN/state.pt``),
    each sent as a message to the study's Recorder."""

    def __init__(self, job: Mapping[str, Any], send):
        self.job, self.send, self.trial_id = job, send, job["trial_id"]
        self.where = {"hostname": socket.gethostname(), "pid": os.getpid()}
        self.saved, self.last = job.get("first_checkpoint", 0), None
        self.status, self.value = C.RUNNING, None

    def __call__(self, metrics: Mapping[str, Any], *, checkpoint: Mapping[str, Any] | None = None) -> None:
        from rsb_tune.training import checkpoint as ckpt_file

        inject_fault(self.trial_id, metrics["epoch"], self.job["errors_dir"])
        metrics = {**metrics, **self.where}
        self.send("result", self.trial_id, metrics)
        self.status, self.value = metrics.get("status", C.RUNNING), C.result_value(metrics, self.job["metric"])
        if checkpoint is None:
            return
        if self.status != C.RUNNING:  # weights are enough, resume never needs more
            checkpoint = {"epoch": checkpoint["epoch"], "model": checkpoint["model"], "final": True}
        path = f"{self.job['checkpoints']}/checkpoint_{self.saved:06d}"
        self.saved += 1
        Path(path).mkdir(parents=True, exist_ok=True)
        ckpt_file.save(checkpoint, Path(path) / C.CHECKPOINT_FILE)
        self.send("checkpoint", self.trial_id, path)
        self.last = path
