"""Ray Tune around the framework-free trial: the only module of rsb-tune that imports Ray.

One study run is one ``Tuner`` over the study's *unfinished* trials (a grid search over their
resolved configs). Each dataset the trials name is decoded once by the driver and shared with
every trial through Ray's object store (``tune.with_parameters``); a trial takes its own
(:meth:`rsb_tune.data.registry.StudyData.for_config`). A thin driver-side callback forwards
what Ray reports to :class:`rsb_tune.runner.lifecycle.Recorder`, which writes it down.

Resuming never relies on Ray's experiment snapshot: :func:`rsb_tune.runner.lifecycle.prepare_run`
reads the plan and the event logs; a fresh Tuner runs what is left.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from analysis import contract as C
from rsb_tune._log import timed
from rsb_tune.runner import lifecycle
from rsb_tune.sequential import engine as sequential
from rsb_tune.data.registry import DatasetSplits, StudyData
from rsb_tune.errors import UserError
from rsb_tune.options import RunOptions
from rsb_tune.runner.executor import Executor, inject_fault, warm_up
from rsb_tune.store.directory import StudyDir

__all__ = ["RayExecutor", "check_address", "check_tracking", "TRACKERS"]


def _tensorboard(study: StudyDir):
    from ray.tune.logger import TBXLoggerCallback

    return TBXLoggerCallback()  # event files in each trial's directory under ray/


def _mlflow(study: StudyDir):
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    return MLflowLoggerCallback(tracking_uri=f"sqlite:///{study.dir / 'mlflow.db'}", experiment_name=study.name, save_artifact=False)


def _wandb(study: StudyDir):
    from ray.air.integrations.wandb import WandbLoggerCallback

    return WandbLoggerCallback(project="rsb-tune", group=study.name)


# name -> (module it needs, the extra that installs it, the callback factory)
TRACKERS = {"tensorboard": ("tensorboardX", "tensorboard", _tensorboard), "mlflow": ("mlflow", "mlflow", _mlflow), "wandb": ("wandb", "wandb", _wandb)}


def check_tracking(names: tuple[str, ...]) -> None:
    """Each tracker's optional dependency is installed (checked before anything is written)."""
    import importlib.util

    for name in names:
        if name not in TRACKERS:
            raise UserError(f"--tracking {name}: allowed: {', '.join(TRACKERS)}")
        module, extra, _ = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise UserError(f"--tracking {name} needs the {module} package: pip install 'rsb-tune[{extra}]'")


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
    # no dump of every thread's stack when a notebook kernel is stopped (absl's failure signal
    # handler, on SIGTERM), unless the user sets RAY_DISABLE_FAILURE_SIGNAL_HANDLER=0; read when
    # ray is imported. (RAY_BACKEND_LOG_LEVEL is left alone: setting it makes Ray print a line.)
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")


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

    with timed("import_ray"):
        import ray

    if ray.is_initialized():
        return
    env = {k: os.environ[k] for k in ("RAY_TRAIN_V2_ENABLED", "MALLOC_ARENA_MAX", "RSB_TUNE_FAULTS", "RAY_DISABLE_FAILURE_SIGNAL_HANDLER") if k in os.environ}
    # --quiet: the workers' output (their Ray log lines, "(raylet)" and "(pid=...)" lines) is not
    # forwarded to this terminal; a trial's error is still in the study's event log
    kwargs: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=not opts.quiet, runtime_env={"env_vars": env})
    try:
        with timed("ray_init"):
            if opts.address:
                ray.init(address=opts.address, **kwargs)
            else:
                ray.init(**kwargs)
    except (ConnectionError, ValueError, RuntimeError) as e:
        where = f"--address {opts.address}" if opts.address else "a local Ray instance"
        raise UserError(f"could not connect to {where}: {str(e).splitlines()[0]}") from None


# --------------------------------------------------------------------------- trainable


def _trial_id(config: Mapping[str, Any], ray_trial_id: str) -> str:
    """A planned trial carries its id; a trial sampled by a search is named after Ray's id."""
    return config.get("trial_id") or f"s-{ray_trial_id}"


def _load_resume(ckpt, fallback_path: str | None, checkpoint_cls, filesystem=None) -> dict | None:
    """The state to resume from: Ray's checkpoint of this attempt (a retry), else the one a
    previous driver recorded for the trial (on the study's ``filesystem``), else None."""
    from rsb_tune.training import checkpoint

    if ckpt is None and fallback_path:
        ckpt = checkpoint_cls(fallback_path, filesystem=filesystem)
    if ckpt is None:
        return None
    with ckpt.as_directory() as d:
        return checkpoint.load(Path(d) / C.CHECKPOINT_FILE)  # data only: never runs code


def _make_reporter(trial_id: str, study_dir: str, send, checkpoint_cls, *, with_checkpoint: bool = True, pack: bool = False):
    """The trial's ``report``: fault hook, where it ran, and the checkpoint written with
    :func:`rsb_tune.training.checkpoint.save` into a directory handed to Ray (``send`` is tune.report or
    ray.train.report). ``pack``: the report of a pack (:func:`rsb_tune.training.packed.train_pack`), whose
    trials' results travel in one Ray result under ``pack_results``."""
    from rsb_tune.training import checkpoint as ckpt_file

    where = {"hostname": socket.gethostname(), "pid": os.getpid()}
    try:
        import ray

        where["node_id"] = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside a Ray worker: no node id
        pass

    def report(metrics: dict[str, Any], *, checkpoint: dict | None = None) -> None:
        members = metrics if pack else {trial_id: metrics}
        for tid, m in members.items():
            inject_fault(tid, m["epoch"], study_dir)
        members = {tid: {**m, **where} for tid, m in members.items()}
        final = all(m.get("status") != C.RUNNING for m in members.values())
        if pack:
            first = next(iter(members.values()))
            metrics = {"epoch": first["epoch"], "status": C.OK if final else C.RUNNING, C.PACK_RESULTS: members}
        else:
            metrics = members[trial_id]
        if checkpoint is None or not with_checkpoint:
            send(metrics)
            return
        if final:  # weights are enough, resume never needs more
            checkpoint = {"epoch": checkpoint["epoch"], "model": checkpoint["model"], "final": True, **({"pack": checkpoint["pack"]} if pack else {})}
        with tempfile.TemporaryDirectory(prefix="rsb-ckpt-") as d:
            ckpt_file.save(checkpoint, Path(d) / C.CHECKPOINT_FILE)
            send(metrics, checkpoint=checkpoint_cls.from_directory(d))

    return report


def _point(config: Mapping[str, Any], seeds: Sequence[int]) -> dict[str, Any]:
    """A search trial's point from its Ray config: the sampled params, and its seed when the
    point trains several (Ray's Repeater numbers a point's repeats 0..k-1 in the config)."""
    from ray.tune.search.repeater import TRIAL_INDEX

    point = {k: v for k, v in config.items() if k not in ("trial_id", TRIAL_INDEX)}
    if TRIAL_INDEX in config:
        point["seed"] = seeds[config[TRIAL_INDEX]]
    return point


def _trainable(config: Mapping[str, Any], study_data: StudyData, run: Mapping[str, Any], resolver=None) -> None:
    """The Tune function trainable: the trial with Ray's reporting and checkpoints; a
    multi-worker trial launches Ray Train's TorchTrainer from here (the Train V2 pattern).
    ``run``: what this run of the study decided per trial (checkpoints to resume from, the
    torch threads of trials that started before) and where the study is."""
    import logging

    from ray import tune

    from rsb_tune.training.custom import trial_function

    logging.getLogger("ray").setLevel(logging.WARNING)  # no "Checkpoint successfully created" per epoch

    trial_id = _trial_id(config, tune.get_context().get_trial_id())
    cfg = dict(config.get("config") or resolver(_point(config, run["seeds"])))
    cfg["threads"] = cfg.get("threads") or run["threads"].get(trial_id) or run["default_threads"]
    # the trial's own dataset (a pack's trials share theirs); your own trainer loads its own
    data = study_data.for_config(cfg) if study_data.splits else None
    resume_path = run["resume_from"].get(trial_id)
    train = trial_function(cfg)  # the built-in trial, or your own trainer
    if cfg.get("workers_per_trial", 1) > 1:
        _fit_ddp(trial_id, cfg, data, resume_path, run)
        return
    resume = _load_resume(tune.get_checkpoint(), resume_path, tune.Checkpoint, run["storage"][1])
    if resume is not None and resume.get("final"):
        return  # finished already (its last result is on disk): nothing to redo
    pack = config.get("pack")
    if pack:  # K trials that differ only in their seeds, trained batched in this process
        from rsb_tune.training.packed import train_pack

        members = {tid: {**c, "threads": cfg["threads"]} for tid, c in pack["members"].items()}
        report = _make_reporter(trial_id, run["errors_dir"], tune.report, tune.Checkpoint, pack=True)
        train_pack(members, report, data, resume=resume, pack_id=pack["id"])
        return
    train(cfg, _make_reporter(trial_id, run["errors_dir"], tune.report, tune.Checkpoint), data, resume=resume)


def _ddp_worker_loop(loop_config: Mapping[str, Any]) -> None:
    """One rank of a data-parallel trial (torch.distributed set up by Ray Train)."""
    import logging

    import ray.train

    from rsb_tune.training.trial import train

    logging.getLogger("ray").setLevel(logging.WARNING)  # no per-report INFO lines from Ray Train
    resume = _load_resume(ray.train.get_checkpoint(), loop_config["resume_path"], ray.train.Checkpoint, loop_config["filesystem"])
    if resume is not None and resume.get("final"):
        return
    rank0 = ray.train.get_context().get_world_rank() == 0
    report = _make_reporter(loop_config["trial_id"], loop_config["study_dir"], ray.train.report, ray.train.Checkpoint, with_checkpoint=rank0)
    train(loop_config["config"], report, loop_config["data"], resume=resume)


def _fit_ddp(trial_id: str, cfg: Mapping[str, Any], data: DatasetSplits, resume_path: str | None, run: Mapping[str, Any]) -> None:
    """Run one trial on ``workers_per_trial`` processes with Ray Train's TorchTrainer (gloo on
    CPU, NCCL on GPU); rank 0's metrics and checkpoints reach this Tune trial."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    storage_path, storage_fs = run["storage"]
    gpus = float(run["gpus_per_trial"])
    worker_resources = {"CPU": float(run["cpus_per_trial"])} | ({"GPU": gpus} if gpus else {})
    trainer = TorchTrainer(
        _ddp_worker_loop,
        train_loop_config={"config": dict(cfg), "data": data, "resume_path": resume_path, "filesystem": storage_fs, "trial_id": trial_id, "study_dir": run["errors_dir"]},
        torch_config=TorchConfig(backend="nccl" if gpus else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=cfg["workers_per_trial"], use_gpu=bool(gpus), resources_per_worker=worker_resources),
        run_config=ray.train.RunConfig(
            name=trial_id,
            storage_path=f"{storage_path}/train",
            storage_filesystem=storage_fs,
            callbacks=[TuneReportCallback()],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            failure_config=ray.train.FailureConfig(max_failures=0),  # Tune retries the trial
        ),
    )
    trainer.fit()


# --------------------------------------------------------------------------- the callback


def _callback(recorder: lifecycle.Recorder, tid, seeds: Sequence[int] = ()):
    """Ray's callback, forwarding to the study's Recorder (which writes everything down)."""
    from ray import tune

    class StudyCallback(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            recorder.trial_started(tid(trial), _point(trial.config, seeds))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            recorder.result(tid(trial), result)

        def on_trial_save(self, iteration, trials, trial, **info):
            if trial.checkpoint is not None:
                recorder.checkpoint_saved(tid(trial), trial.checkpoint.path)

        def on_trial_recover(self, iteration, trials, trial, **info):
            recorder.trial_failed(tid(trial), _error_text(trial), final=False)

        def on_trial_error(self, iteration, trials, trial, **info):
            recorder.trial_failed(tid(trial), _error_text(trial), final=True)

        def on_trial_complete(self, iteration, trials, trial, **info):
            recorder.trial_completed(tid(trial))

        def on_step_end(self, iteration, trials, **info):
            recorder.step()

        def on_experiment_end(self, trials, **info):
            recorder.ended()

    return StudyCallback()


def _error_text(trial) -> str:
    """The trial's tracebacks: Ray writes them to the trial's local directory before calling the
    callbacks, and copies them to the storage (where ``get_error`` reads) later."""
    try:
        text = Path(trial.error_file).read_text() if trial.error_file else ""
    except OSError:
        text = ""
    return text or trial.get_error() or "unknown error (the trial's process died without a traceback)"


# --------------------------------------------------------------------------- the executor


class RayExecutor(Executor):
    """Ray Tune runs the trials: one ``Tuner`` per run of a study, on a local Ray or a cluster."""

    name = "ray"

    def check(self, opts: RunOptions) -> None:
        check_address(opts.address)
        check_tracking(opts.tracking)

    def slots(self, opts: RunOptions, meta: Mapping[str, Any]) -> int:
        """How many trials can run at once: --max-concurrent, else what the cluster's CPUs (and
        GPUs) hold at the trial's request (a DDP trial's workers each hold --cpus/--gpus-per-trial)."""
        import ray

        _set_ray_env()
        _init_ray(opts)
        workers = int(meta["base_config"].get("workers_per_trial", 1) or 1)
        total = ray.cluster_resources()
        fits = [int(total.get("CPU", 1) // (opts.cpus_per_trial * workers))]
        if opts.gpus_per_trial:
            fits.append(int(total.get("GPU", 0) // (opts.gpus_per_trial * workers)))
        slots = max(1, min(fits))
        return min(slots, opts.max_concurrent) if opts.max_concurrent else slots

    def fit(self, study, data, opts, plan, *, planned: int, done: int, search=None, seeds=None) -> None:
        _set_ray_env()
        _init_ray(opts)
        space, resolver = search if search is not None else (None, None)
        if space is None:
            space = lifecycle.search_of(study)[0]  # a grid's space: its scheduler (asha)
        k = len(space.seeds) if resolver is not None else 1
        num_samples = -(-max(planned - done, 0) // k) * k if resolver is not None else 1  # whole points: k seeds each
        _fit(study, data, opts, plan, space=space, resolver=resolver, num_samples=num_samples, planned=planned, done=done, scheduler_of_seeds=seeds)

    def map(self, fn, jobs, opts, *, shared=None, on_result) -> dict[str, str]:
        """Each job a Ray task holding ``--cpus-per-trial`` CPUs (and ``--gpus-per-trial`` GPUs),
        at most ``--max-concurrent`` at once; ``shared`` is put in the object store once."""
        import ray

        _set_ray_env()
        _init_ray(opts)
        task = ray.remote(fn).options(num_cpus=opts.cpus_per_trial, num_gpus=opts.gpus_per_trial or 0, max_retries=opts.max_failures)
        ref = ray.put(shared)
        queue, pending, errors = list(jobs.items()), {}, {}
        limit = opts.max_concurrent or max(len(queue), 1)
        while queue or pending:
            while queue and len(pending) < limit:
                key, args = queue.pop(0)
                pending[task.remote(*args, ref)] = key
            done, _ = ray.wait(list(pending), num_returns=1)
            for ready in done:
                key = pending.pop(ready)
                try:
                    value = ray.get(ready)
                except ray.exceptions.RayError as e:
                    errors[key] = lifecycle.error_message(str(e))
                    continue
                on_result(key, value)
        return errors


def _resources(opts: RunOptions, threads: Mapping[str, int], ddp: bool):
    """Per trial: what it really uses. A trial that started before keeps its torch threads
    (numerics depend on them), and Ray reserves those CPUs, whatever ``cpus_per_trial`` now is.
    A DDP trial only coordinates: its workers hold the CPUs/GPUs (one set per worker)."""
    from ray.tune import PlacementGroupFactory

    def resources(config):
        if ddp:
            return PlacementGroupFactory([{"CPU": 0, "memory": 1}])
        started = threads.get(config.get("trial_id"))
        cpus = opts.cpus_per_trial if started is None or started == opts.threads else float(started)
        return PlacementGroupFactory([{"CPU": cpus} | ({"GPU": opts.gpus_per_trial} if opts.gpus_per_trial else {})])

    return resources


def _fit(study: StudyDir, data: StudyData, opts: RunOptions, plan: lifecycle.ResumePlan, *, space=None, resolver=None, num_samples: int = 1, planned: int, done: int, scheduler_of_seeds=None) -> None:
    from ray import tune

    from rsb_tune.planning import packs

    warm_up(study, data, plan)  # the trials' compiled CPU loops, here once rather than in each trial
    checkpoints = lifecycle.Checkpoints(study)
    storage = checkpoints.storage()
    # Packs (pack: K): one Ray trial trains the unfinished trials of a pack together.
    units = packs.run_units(study.plan(), plan.todo, plan.resume_from) if resolver is None and scheduler_of_seeds is None else {}
    todo = {tid: cfg for tid, cfg in plan.todo.items() if not any(tid in u.members for u in units.values())}
    resume_from, threads = dict(plan.resume_from), dict(plan.threads)
    pack_of: dict[str, Any] = {}
    for uid, unit in units.items():
        todo[uid] = plan.todo[unit.members[0]]
        pack_of[uid] = {"id": unit.pack_id, "members": {m: plan.todo[m] for m in unit.members}}
        if unit.resume_from:
            resume_from[uid] = unit.resume_from
        if unit.members[0] in plan.threads:
            threads[uid] = plan.threads[unit.members[0]]
    run = {
        "resume_from": resume_from,
        "threads": threads,
        "default_threads": opts.threads,
        "cpus_per_trial": opts.cpus_per_trial,
        "gpus_per_trial": opts.gpus_per_trial,
        "storage": storage,
        "errors_dir": str(study.errors_dir),
        "seeds": tuple(space.seeds) if resolver is not None else (),  # a search point's seeds
    }
    meta = study.meta()
    ddp = int(meta["base_config"].get("workers_per_trial", 1)) > 1
    trainable = tune.with_parameters(_trainable, study_data=data, run=run, resolver=resolver)
    trainable = tune.with_resources(trainable, _resources(opts, threads, ddp))
    metric, mode = meta.get("metric", C.DEFAULT_METRIC), meta.get("mode") or C.default_mode(meta.get("metric", C.DEFAULT_METRIC))
    search_alg = scheduler = None
    if resolver is not None:
        search_alg = _optuna_searcher(study, space, metric, mode)
        param_space: dict[str, Any] = {}
    elif scheduler_of_seeds is not None:  # a sequential study: seeds suggested while its rule says continue
        search_alg, param_space, num_samples = _seed_searcher(study, scheduler_of_seeds, dict(plan.todo)), {}, len(plan.todo)
    else:
        param_space = {
            "trial_id": tune.grid_search(list(todo)),
            "config": tune.sample_from(lambda spec: todo[spec.config["trial_id"]]),
            "pack": tune.sample_from(lambda spec: pack_of.get(spec.config["trial_id"])),
        }
    if space is not None and space.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        max_t = max([int(c["epochs"]) for c in plan.todo.values()] or [int(meta["base_config"]["epochs"])])
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=max_t, grace_period=min(space.grace_period, max_t), reduction_factor=space.reduction_factor)
    progress = lifecycle.Progress(study.name, planned=planned, done=done, quiet=opts.quiet)
    members = {uid: pack_of[uid]["members"].keys() for uid in pack_of}
    recorder = lifecycle.WriteGuard(lifecycle.Recorder(study, plan, progress, resolver=resolver, early_stopping=scheduler is not None, packs={u: tuple(m) for u, m in members.items()}))
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
            name=checkpoints.next_run(),
            storage_path=storage[0],
            storage_filesystem=storage[1],
            verbose=0,
            log_to_file=False,
            stop=_halt_stopper(recorder),
            callbacks=[_callback(recorder, lambda t: _trial_id(t.config, t.trial_id), run["seeds"]), *(TRACKERS[n][2](study) for n in opts.tracking)],
            failure_config=tune.FailureConfig(max_failures=opts.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),  # pruned by the Recorder
        ),
    )
    try:
        with timed("trials"):
            tuner.fit()
    except Exception as e:  # Ray's own writes to the study's storage (its experiment state)
        recorder.raise_if_halted()
        if lifecycle.is_storage_error(e):
            raise lifecycle.storage_failure(study, e) from None
        raise
    finally:
        progress.close()
    recorder.raise_if_halted()


def _halt_stopper(guard: lifecycle.WriteGuard):
    """Stops the whole run once the study cannot be written to (see WriteGuard)."""
    from ray import tune

    class HaltWhenStorageFails(tune.Stopper):
        def __call__(self, trial_id, result):
            return False

        def stop_all(self):
            return guard.halted()

    return HaltWhenStorageFails()


def _optuna_searcher(study: StudyDir, space, metric: str, mode: str):
    """Ray Tune's OptunaSearch over the space's distributions, its TPE sampler's history in
    ``<study>/optuna.db`` (so a resumed study continues the same search). With k seeds, a
    Repeater runs each sampled point k times (seed i of the space for repeat i) and tells the
    sampler the mean of their final ``metric``."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{study.dir / 'optuna.db'}")
    lifecycle.repair_search_history(study, space, metric, storage)
    make = {
        "loguniform": lambda v: optuna.distributions.FloatDistribution(v[0], v[1], log=True),
        "uniform": lambda v: optuna.distributions.FloatDistribution(v[0], v[1]),
        "int": lambda v: optuna.distributions.IntDistribution(v[0], v[1]),
        "choice": lambda v: optuna.distributions.CategoricalDistribution(list(v)),
    }
    dists = {key: make[kind](values) for key, (kind, values) in space.params.items()}
    searcher = OptunaSearch(space=dists, metric=metric, mode=mode, storage=storage, study_name=study.name, seed=space.seeds[0])
    if len(space.seeds) == 1:
        return searcher
    from ray.tune.search import Repeater

    return Repeater(searcher, repeat=len(space.seeds), set_index=True)  # the sampler is told the mean of a point's seeds


# --------------------------------------------------------------------------- sequential studies


def _seed_searcher(study: StudyDir, scheduler: sequential.SeedScheduler, todo: Mapping[str, Mapping[str, Any]]):
    """A Ray Tune searcher over a sequential study's planned seeds: it suggests the next one in
    seed order while :class:`rsb_tune.sequential.engine.SeedScheduler` says so, and FINISHED once the
    rule says stop (Tune then ends the run when the running trials have finished)."""
    from ray.tune.search import Searcher

    metric = scheduler.rule.metric

    class SeedSearcher(Searcher):
        def __init__(self):
            super().__init__()
            self.ids: dict[str, str] = {}  # Ray's trial id -> the study's

        def suggest(self, trial_id):
            nxt = scheduler.next()
            if nxt == sequential.WAIT:
                return None
            if nxt == sequential.FINISH:
                return Searcher.FINISHED
            self.ids[trial_id] = nxt
            return {"trial_id": nxt, "config": dict(todo[nxt])}

        def on_trial_complete(self, trial_id, result=None, error=False):
            tid = self.ids.pop(trial_id, None)
            if tid is None:
                return
            result = result or {}
            status = C.ERROR if error else result.get("status", C.OK)
            scheduler.finished(tid, status, None if error else C.result_value(result, metric))  # records a stop at once

        def save(self, checkpoint_path):
            pass  # the study's event logs are the state: a resume recomputes it

        def restore(self, checkpoint_path):
            pass

    return SeedSearcher()
