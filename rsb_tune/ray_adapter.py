"""Ray Tune around the framework-free trial: the only module of rsb-tune that imports Ray.

One study run is one ``Tuner`` over the study's *unfinished* trials (a grid search over their
resolved configs). The dataset is decoded once by the driver and shared with every trial
through Ray's object store (``tune.with_parameters``). A driver-side callback appends each
result to the study's event logs and rebuilds the tables as trials finish, so a finished
trial is on disk the moment Ray knows it finished.

Resuming never relies on Ray's experiment snapshot: the plan and the event logs say which
trials finished (kept, never re-run), which have a checkpoint (continued from it) and which
never started; a fresh Tuner runs the rest.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from rsb_tune.data import DatasetSplits
from rsb_tune.errors import UserError
from rsb_tune.results import FINISHED, KEPT, trial_state, write_predictions, write_tables
from rsb_tune.study import Study

__all__ = ["RunOptions", "run_study", "pending_trials", "check_address", "check_tracking", "TRACKERS"]

_CKPT_FILE = "state.pt"


@dataclasses.dataclass(frozen=True)
class RunOptions:
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    address: str | None = None
    max_failures: int = 2
    reuse_actors: bool = True
    quiet: bool = False
    tracking: tuple[str, ...] = ()


TRACKERS = {"tensorboard": ("tensorboardX", "tensorboard"), "mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb")}


def check_tracking(names: tuple[str, ...]) -> None:
    """Each tracker's optional dependency is installed (checked before anything is written)."""
    import importlib.util

    for name in names:
        if name not in TRACKERS:
            raise UserError(f"--tracking {name}: allowed: {', '.join(TRACKERS)}")
        module, extra = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise UserError(f"--tracking {name} needs the {module} package: pip install 'rsb-tune[{extra}]'")


def _tracking_callbacks(study: Study, names: tuple[str, ...]) -> list:
    out = []
    for name in names:
        if name == "tensorboard":
            from ray.tune.logger import TBXLoggerCallback

            out.append(TBXLoggerCallback())  # event files in each trial's directory under ray/
        elif name == "mlflow":
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            out.append(MLflowLoggerCallback(tracking_uri=f"sqlite:///{study.dir / 'mlflow.db'}", experiment_name=study.name, save_artifact=False))
        elif name == "wandb":
            from ray.air.integrations.wandb import WandbLoggerCallback

            out.append(WandbLoggerCallback(project="rsb-tune", group=study.name))
    return out


def _set_ray_env() -> None:
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # the study's events are the log
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", "16")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    # glibc gives each trial thread its own malloc arenas; capped, a reused actor stays ~1 GB
    # after many trials instead of growing (benchmarks/RESULTS.md, section 6)
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")


def check_address(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast, before anything is written, when ``--address`` cannot be reached (Ray itself
    retries for minutes). ``auto`` needs a cluster started with ``ray start`` on this machine."""
    if not address:
        return
    if address == "auto":
        if os.environ.get("RAY_ADDRESS"):
            return check_address(os.environ["RAY_ADDRESS"], timeout)
        if not Path(tempfile.gettempdir(), "ray", "ray_current_cluster").exists():
            raise UserError("--address auto: no running Ray cluster found on this machine (start one with `ray start --head`)")
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise UserError(f"--address {address}: cannot reach a Ray cluster there ({e.strerror or e})") from None


def _init_ray(opts: RunOptions) -> None:
    import logging

    import ray

    if ray.is_initialized():
        return
    env = {k: os.environ[k] for k in ("RAY_TRAIN_V2_ENABLED", "MALLOC_ARENA_MAX", "RSB_TUNE_FAULTS") if k in os.environ}
    kwargs: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=True, runtime_env={"env_vars": env})
    try:
        if opts.address:
            ray.init(address=opts.address, **kwargs)
        else:
            ray.init(**kwargs)
    except (ConnectionError, ValueError, RuntimeError) as e:
        where = f"--address {opts.address}" if opts.address else "a local Ray instance"
        raise UserError(f"could not connect to {where}: {str(e).splitlines()[0]}") from None


# --------------------------------------------------------------------------- trainable


def _inject_fault(trial_id: str, epoch: int, marker_dir: str) -> None:
    """Testing aid: ``RSB_TUNE_FAULTS="t0001@2:raise-once,t0002@1:raise"`` makes trial t0001
    raise once after its epoch 2, and t0002 raise after epoch 1 on every attempt."""
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


def _trial_id(config: Mapping[str, Any], ray_trial_id: str) -> str:
    """A planned trial carries its id; a trial sampled by a search is named after Ray's id."""
    return config.get("trial_id") or f"s-{ray_trial_id}"


def _load_resume(ckpt, fallback_path: str | None, checkpoint_cls, filesystem=None) -> dict | None:
    """The state to resume from: Ray's checkpoint of this attempt (a retry), else the one a
    previous driver recorded for the trial (on the study's ``filesystem``), else None."""
    import torch

    if ckpt is None and fallback_path:
        ckpt = checkpoint_cls(fallback_path, filesystem=filesystem)
    if ckpt is None:
        return None
    with ckpt.as_directory() as d:
        return torch.load(Path(d) / _CKPT_FILE, weights_only=False)


def _make_reporter(trial_id: str, study_dir: str, send, checkpoint_cls, *, with_checkpoint: bool = True):
    """The trial's ``report``: fault hook, where it ran, and the checkpoint written with
    torch.save into a directory handed to Ray (``send`` is tune.report or ray.train.report)."""
    import torch

    where = {"hostname": socket.gethostname(), "pid": os.getpid()}
    try:
        import ray

        where["node_id"] = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside a Ray worker: no node id
        pass

    def report(metrics: dict[str, Any], *, checkpoint: dict | None = None) -> None:
        _inject_fault(trial_id, metrics["epoch"], study_dir)
        metrics = {**metrics, **where}
        if checkpoint is None or not with_checkpoint:
            send(metrics)
            return
        if metrics.get("status") != "running":  # final: weights are enough, resume never needs more
            checkpoint = {"epoch": checkpoint["epoch"], "model": checkpoint["model"], "final": True}
        with tempfile.TemporaryDirectory(prefix="rsb-ckpt-") as d:
            torch.save(checkpoint, Path(d) / _CKPT_FILE)
            send(metrics, checkpoint=checkpoint_cls.from_directory(d))

    return report


def _trainable(config: Mapping[str, Any], data: DatasetSplits, resume_from: Mapping[str, str], study_dir: str, storage: tuple, resolver=None, resources=None) -> None:
    """The Tune function trainable: the trial with Ray's reporting and checkpoints; a
    multi-worker trial launches Ray Train's TorchTrainer from here (the Train V2 pattern)."""
    import logging

    from ray import tune

    from rsb_tune.trial import train

    logging.getLogger("ray").setLevel(logging.WARNING)  # no "Checkpoint successfully created" per epoch

    trial_id = _trial_id(config, tune.get_context().get_trial_id())
    cfg = config.get("config") or resolver({k: v for k, v in config.items() if k != "trial_id"})
    resume_path = resume_from.get(trial_id)
    if cfg["workers_per_trial"] > 1:
        _fit_ddp(trial_id, cfg, data, resume_path, study_dir, storage, resources or {})
        return
    resume = _load_resume(tune.get_checkpoint(), resume_path, tune.Checkpoint, storage[1])
    if resume is not None and resume.get("final"):
        return  # finished already (its last result is on disk): nothing to redo
    train(cfg, _make_reporter(trial_id, study_dir, tune.report, tune.Checkpoint), data, resume=resume)


def _ddp_worker_loop(loop_config: Mapping[str, Any]) -> None:
    """One rank of a data-parallel trial (torch.distributed set up by Ray Train)."""
    import logging

    import ray.train

    from rsb_tune.trial import train

    logging.getLogger("ray").setLevel(logging.WARNING)  # no per-report INFO lines from Ray Train
    resume = _load_resume(ray.train.get_checkpoint(), loop_config["resume_path"], ray.train.Checkpoint, loop_config["filesystem"])
    if resume is not None and resume.get("final"):
        return
    rank0 = ray.train.get_context().get_world_rank() == 0
    report = _make_reporter(loop_config["trial_id"], loop_config["study_dir"], ray.train.report, ray.train.Checkpoint, with_checkpoint=rank0)
    train(loop_config["config"], report, loop_config["data"], resume=resume)


def _fit_ddp(trial_id: str, cfg: Mapping[str, Any], data: DatasetSplits, resume_path: str | None, study_dir: str, storage: tuple, resources: Mapping[str, float]) -> None:
    """Run one trial on ``workers_per_trial`` processes with Ray Train's TorchTrainer (gloo on
    CPU, NCCL on GPU); rank 0's metrics and checkpoints reach this Tune trial."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    gpus = float(resources.get("gpu", 0))
    worker_resources = {"CPU": float(resources.get("cpu", 1))} | ({"GPU": gpus} if gpus else {})
    trainer = TorchTrainer(
        _ddp_worker_loop,
        train_loop_config={"config": dict(cfg), "data": data, "resume_path": resume_path, "filesystem": storage[1], "trial_id": trial_id, "study_dir": study_dir},
        torch_config=TorchConfig(backend="nccl" if gpus else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=cfg["workers_per_trial"], use_gpu=bool(gpus), resources_per_worker=worker_resources),
        run_config=ray.train.RunConfig(
            name=trial_id,
            storage_path=f"{storage[0]}/train",
            storage_filesystem=storage[1],
            callbacks=[TuneReportCallback()],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            failure_config=ray.train.FailureConfig(max_failures=0),  # Tune retries the trial
        ),
    )
    trainer.fit()


# --------------------------------------------------------------------------- callbacks


def _make_callbacks(study: Study, total_epochs: int, quiet: bool, resolver=None, early_stopping: bool = False, finished_before: int = 0, resume_from=None):
    from ray import tune

    class StudyRecorder(tune.Callback):
        """Persists every result to ``events/<trial>.jsonl`` and rewrites the tables when a
        trial finishes; records checkpoint paths for resume and errors with tracebacks."""

        def __init__(self):
            self.last_table_write = 0.0
            self.last_checkpoint: dict[str, str] = dict(resume_from or {})  # superseded by the trial's next one

        @staticmethod
        def _tid(trial) -> str:
            return _trial_id(trial.config, trial.trial_id)

        def on_trial_start(self, iteration, trials, trial, **info):
            if resolver is not None:  # a search trial: record its resolved config in the plan
                study.add_trial(self._tid(trial), resolver({k: v for k, v in trial.config.items() if k != "trial_id"}))

        def on_trial_complete(self, iteration, trials, trial, **info):
            if early_stopping and trial_state(study.events(self._tid(trial)))[0] == "running":
                study.append_event(self._tid(trial), {"type": "stopped", "time": time.time()})
                self._tables()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            keep = {k: v for k, v in result.items() if k in _RESULT_KEYS or k.startswith("runtime_")}
            study.append_event(self._tid(trial), {"type": "result", "time": time.time(), **keep})
            if result.get("checkpoint_path"):  # a DDP trial's checkpoint, saved by Ray Train
                study.append_event(self._tid(trial), {"type": "checkpoint", "path": result["checkpoint_path"], "time": time.time()})
            if result.get("status") == "ok":
                write_predictions(study, self._tid(trial), result)
            # the fsynced events are the record; the tables follow within seconds and at the end
            finished = result.get("status") in ("ok", "diverged")
            if time.time() - self.last_table_write > (5 if finished else 30):
                self._tables()
            if finished:  # an object-store study: the finished trial is uploaded before going on
                self._sync()

        def on_trial_save(self, iteration, trials, trial, **info):
            ckpt = trial.checkpoint
            if ckpt is None:
                return
            tid = self._tid(trial)
            study.append_event(tid, {"type": "checkpoint", "path": ckpt.path, "time": time.time()})
            # keep only the newest checkpoint of a trial, deleted only once the new one is on disk
            # and recorded (Ray's own pruning would snapshot the whole experiment each time)
            old = self.last_checkpoint.get(tid)
            self.last_checkpoint[tid] = ckpt.path
            if old and old != ckpt.path:
                study.discard_checkpoint(old)

        def _error(self, trial, final: bool):
            tid = self._tid(trial)
            text = _error_text(trial)
            (study.errors_dir / f"{tid}.txt").write_text(text)
            lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
            named = [l for l in lines if re.match(r"^[\w.]*(Error|Exception|Interrupt|Exit)\b.*:", l)]
            message = (named or lines or ["error"])[-1]
            study.append_event(tid, {"type": "error", "final": final, "error": message[:500], "time": time.time()})
            self._tables()
            self._sync()

        def on_trial_recover(self, iteration, trials, trial, **info):
            self._error(trial, final=False)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._error(trial, final=True)

        def on_experiment_end(self, trials, **info):
            self._tables()

        def _tables(self):
            write_tables(study)
            self.last_table_write = time.time()

        def _sync(self):
            try:
                study.sync()
            except UserError as e:  # the upload thread retries; the study goes on
                print(f"rsb-tune: warning: {e}; retrying", file=sys.stderr, flush=True)

    class Progress(tune.Callback):
        """One status line every few seconds: trials done / running / failed, and an ETA."""

        def __init__(self):
            self.t0 = None
            self.last = 0.0
            self.epochs_done = 0
            self.epochs_at_start = None

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.epochs_done += 1

        def on_step_end(self, iteration, trials, **info):
            now = time.time()
            if self.t0 is None:
                self.t0 = now
            if quiet or now - self.last < 5:
                return
            self.last = now
            self.print(trials)

        def on_experiment_end(self, trials, **info):
            if not quiet:
                self.print(trials)

        def print(self, trials):
            states = [t.status for t in trials]
            done = sum(s == "TERMINATED" for s in states) + finished_before
            failed = sum(s == "ERROR" for s in states)
            running = sum(s == "RUNNING" for s in states)
            elapsed = time.time() - (self.t0 or time.time())
            remaining = max(total_epochs - self.epochs_done, 0)
            eta = f"{_fmt(elapsed / self.epochs_done * remaining)}" if self.epochs_done else "?"
            n = len(trials) + finished_before
            print(f"[{study.name}] {done}/{n} trials done, {running} running, {failed} failed | elapsed {_fmt(elapsed)}, ETA {eta}", file=sys.stderr, flush=True)

    return [StudyRecorder(), Progress()]


def _error_text(trial) -> str:
    """The trial's tracebacks: Ray writes them to the trial's local directory before calling the
    callbacks, and copies them to the storage (where ``get_error`` reads) later."""
    try:
        text = Path(trial.error_file).read_text() if trial.error_file else ""
    except OSError:
        text = ""
    return text or trial.get_error() or "unknown error (the trial's process died without a traceback)"


_RESULT_KEYS = {
    "epoch", "train_loss", "lr", "val_top1", "val_top5", "val_loss", "v2_top1", "v2_top5", "v2_loss",
    "epoch_time_s", "images_per_s", "status", "val_correct", "v2_correct", "hostname", "node_id", "pid",
}  # fmt: skip


def _fmt(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


# --------------------------------------------------------------------------- study run


def pending_trials(study: Study) -> tuple[dict[str, dict], dict[str, str], int]:
    """(trials still to run -> config, their latest checkpoint paths, number finished).

    Checkpoints that a driver's death left behind are deleted here (called with the study
    locked, so no trial is writing one): superseded ones (a checkpoint is deleted only after
    its successor is recorded) and unrecorded ones (written as the driver died; never resumed
    from, since their epoch's results were not recorded). A study keeps one per trial. Ray
    Train's own checkpoints (``ray/train/``, DDP trials) are left to Ray Train, which keeps
    one per trial and resumes from its own record of them."""
    plan = study.plan()
    on_disk = study.ray_dirs_with(_CKPT_FILE)  # relative to the study's ray/
    todo, resume_from, finished, kept = {}, {}, 0, set()
    for tid, cfg in plan.items():
        events = study.events(tid)
        status, _, _ = trial_state(events)
        recorded = [study.ray_relative(ev["path"]) for ev in events if ev.get("type") == "checkpoint"]
        existing = [rel for rel in dict.fromkeys(recorded) if rel in on_disk]
        kept.update(existing[-1:])
        if status in KEPT:
            finished += 1
            continue
        todo[tid] = cfg
        if existing:  # the newest recorded checkpoint that still exists, where the study is now
            resume_from[tid] = study.ray_path(existing[-1])
    for rel in sorted(on_disk - kept):
        if not rel.startswith("train/"):
            study.discard_checkpoint(study.ray_path(rel))
    return todo, resume_from, finished


def _search_of(study: Study):
    """(Space, PointResolver) of a search study from its study.yaml, else (space or None, None)."""
    from rsb_tune.config import Layer
    from rsb_tune.space import PointResolver, space_from_mapping

    meta = study.meta()
    if not meta.get("space"):
        return None, None
    space = space_from_mapping(meta["space"], meta.get("space_file") or "space")
    if space.search != "optuna":
        return space, None
    layers = tuple(Layer(layer["source"], layer["values"]) for layer in meta.get("layers", []))
    return space, PointResolver(meta["recipe"], meta["base_config"]["dataset"], layers, space.seeds[0], f"search in {space.path}")


def run_study(study: Study, data: DatasetSplits, opts: RunOptions) -> dict[str, int]:
    """Run (or continue) every unfinished trial of ``study``; returns counts by status."""
    _set_ray_env()
    space, resolver = _search_of(study)
    todo, resume_from, finished = pending_trials(study)
    if resolver is not None:
        for tid in todo:  # a search does not re-run an interrupted point: it samples new ones
            study.append_event(tid, {"type": "abandoned", "time": time.time()})
        trials, _ = write_tables(study)
        used = int(trials["status"].isin([s for s in FINISHED if s != "abandoned"]).sum()) if not trials.empty else 0
        remaining = space.num_samples - used
        if remaining > 0:
            _init_ray(opts)
            _fit(study, data, opts, {}, {}, space=space, resolver=resolver, num_samples=remaining, finished_before=finished)
    elif todo:
        _init_ray(opts)
        _fit(study, data, opts, todo, resume_from, space=space, finished_before=finished)
    trials, _ = write_tables(study)
    counts = trials["status"].value_counts().to_dict() if not trials.empty else {}
    out = {s: int(counts.get(s, 0)) for s in FINISHED}
    out["planned"] = (space.num_samples + out["abandoned"]) if resolver is not None else len(study.plan())
    return out


def _fit(study: Study, data: DatasetSplits, opts: RunOptions, todo, resume_from, *, space=None, resolver=None, num_samples: int = 1, finished_before: int = 0) -> None:
    from ray import tune

    for tid in todo:
        if trial_state(study.events(tid))[0] == "error":
            study.append_event(tid, {"type": "restart", "time": time.time()})
    resources = {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial}
    storage_path, storage_fs = study.ray_storage()
    trainable = tune.with_parameters(
        _trainable, data=data, resume_from=resume_from, study_dir=str(study.errors_dir), storage=(storage_path, storage_fs), resolver=resolver, resources=resources
    )
    meta = study.meta()
    ddp = int(meta["base_config"].get("workers_per_trial", 1)) > 1
    # a DDP trial only coordinates: its workers hold the CPUs/GPUs (one set per worker)
    trainable = tune.with_resources(trainable, {"cpu": 0, "memory": 1} if ddp else resources)
    run_name = f"run-{max([int(r[4:]) for r in study.ray_runs()], default=0) + 1:02d}"
    metric, mode = meta.get("metric", "val_top1"), meta.get("mode", "max")
    search_alg = scheduler = None
    if resolver is not None:
        search_alg = _optuna_searcher(study, space, metric, mode)
        param_space: dict[str, Any] = {}
        total_epochs = num_samples * int(meta["base_config"]["epochs"])
    else:
        param_space = {"trial_id": tune.grid_search(list(todo)), "config": tune.sample_from(lambda spec: todo[spec.config["trial_id"]])}
        total_epochs = sum(int(c["epochs"]) for c in todo.values())
    if space is not None and space.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        max_t = max([int(c["epochs"]) for c in todo.values()] or [int(meta["base_config"]["epochs"])])
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=max_t, grace_period=min(space.grace_period, max_t), reduction_factor=space.reduction_factor)
    callbacks = _make_callbacks(
        study, total_epochs, opts.quiet, resolver=resolver, early_stopping=scheduler is not None, finished_before=finished_before, resume_from=resume_from
    )
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=metric if scheduler is not None else None,
            mode=mode if scheduler is not None else None,
            search_alg=search_alg,
            scheduler=scheduler,
            num_samples=num_samples,
            max_concurrent_trials=opts.max_concurrent,
            reuse_actors=opts.reuse_actors,
            trial_dirname_creator=lambda t: _trial_id(t.config, t.trial_id),
            trial_name_creator=lambda t: _trial_id(t.config, t.trial_id),
        ),
        run_config=tune.RunConfig(
            name=run_name,
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            verbose=0,
            log_to_file=False,
            callbacks=[*callbacks, *_tracking_callbacks(study, opts.tracking)],
            failure_config=tune.FailureConfig(max_failures=opts.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),  # pruned by StudyRecorder
        ),
    )
    tuner.fit()


def _point_key(point: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in point.items()))


def _finished_points(study: Study, space, metric: str) -> dict[tuple, float]:
    """{sampled point: final metric} of the search's trials that finished ok."""
    plan = study.plan()
    out = {}
    for tid, cfg in plan.items():
        status, by_epoch, _ = trial_state(study.events(tid))
        if status == "ok" and by_epoch:
            out[_point_key({k: cfg[k] for k in space.params})] = float(by_epoch[max(by_epoch)][metric])
    return out


def _optuna_searcher(study: Study, space, metric: str, mode: str):
    """Ray Tune's OptunaSearch over the space's distributions, its TPE sampler's history in
    ``<study>/optuna.db`` (so a resumed study continues the same search)."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{study.dir / 'optuna.db'}")
    try:
        trials = optuna.load_study(study_name=study.name, storage=storage).trials
    except KeyError:
        trials = []  # first run: no study in the storage yet
    finished = _finished_points(study, space, metric)
    for t in trials:  # points left RUNNING by a driver that died
        if t.state != optuna.trial.TrialState.RUNNING:
            continue
        value = finished.get(_point_key(t.params))
        if value is not None:  # it finished (its result is in the events) just before the driver died
            storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.COMPLETE, values=[value])
        else:  # it never will: the resumed search samples another point
            storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
    make = {
        "loguniform": lambda v: optuna.distributions.FloatDistribution(v[0], v[1], log=True),
        "uniform": lambda v: optuna.distributions.FloatDistribution(v[0], v[1]),
        "int": lambda v: optuna.distributions.IntDistribution(v[0], v[1]),
        "choice": lambda v: optuna.distributions.CategoricalDistribution(list(v)),
    }
    dists = {key: make[kind](values) for key, (kind, values) in space.params.items()}
    return OptunaSearch(space=dists, metric=metric, mode=mode, storage=storage, study_name=study.name, seed=space.seeds[0])
