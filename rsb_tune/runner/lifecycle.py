"""A study's life, without Ray: its manifest, its event records, resume planning, checkpoint
bookkeeping, and what the driver does as results arrive.

This module is the only writer of event records (one function per kind of event) and holds
their one reader is :mod:`rsb_tune.store.events`. ``rsb_tune.runner.ray_executor`` runs the trials and forwards
what Ray tells it to a :class:`Recorder`; everything that lands on disk goes through here.

Event records (``events/<trial>.jsonl``, one JSON object a line, fsynced)::

    {"type": "result", "epoch": 3, "status": "running", "val_top1": ..., ...}
    {"type": "checkpoint", "path": ".../ray/run-01/t0000/checkpoint_000002"}
    {"type": "error", "final": false, "error": "RuntimeError: ..."}
    {"type": "restart"}      a resumed study runs an errored trial again
    {"type": "stopped"}      early-stopped by ASHA
    {"type": "abandoned"}    a search point whose driver died
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import posixpath
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from analysis import contract as C
from rsb_tune._log import logger
from rsb_tune.errors import StorageFull, StudyError, UserError
from rsb_tune.store.backends import one_line
from rsb_tune.store.events import read_events, trial_state
from rsb_tune.store.directory import StudyDir, json_default

__all__ = [
    "record_result",
    "record_checkpoint",
    "record_error",
    "record_restart",
    "record_stopped",
    "record_abandoned",
    "record_stopping",
    "build_manifest",
    "trainer_manifest",
    "create_study",
    "check_format",
    "Checkpoints",
    "ResumePlan",
    "prepare_run",
    "resumable_checkpoint",
    "trial_threads",
    "search_of",
    "repair_search_history",
    "Progress",
    "Recorder",
    "WriteGuard",
    "storage_failure",
    "is_storage_error",
    "error_message",
]


# --------------------------------------------------------------------------- event records


def _append(study: StudyDir, trial_id: str, event: Mapping[str, Any]) -> None:
    """Append one JSON line and fsync: a finished result survives any crash after this. A write
    that fails (a full disk) is cut off again, and a line torn by a crash before is ended first,
    so a record never runs into the next one."""
    line = (json.dumps({**event, "time": time.time()}, default=json_default) + "\n").encode()
    with open(study.confined(study.events_dir / f"{trial_id}.jsonl"), "a+b") as f:  # never through a link out
        start = f.seek(0, os.SEEK_END)
        if start and (f.seek(start - 1), f.read(1))[1] != b"\n":
            line = b"\n" + line
        try:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        except OSError:
            f.truncate(start)  # frees what the failed write took; a reader skips a torn line anyway
            raise


def record_result(study: StudyDir, trial_id: str, result: Mapping[str, Any]) -> None:
    """One epoch's report of a trial (the keys of the contract, and runtime_* keys)."""
    keep = {k: v for k, v in result.items() if k in C.RESULT_KEYS or k.startswith("runtime_")}
    theirs = result.get(C.USER_METRICS) or {}  # a custom trainer's own metrics, kept flat
    _append(study, trial_id, {"type": "result", **{k: v for k, v in theirs.items() if k not in keep}, **keep})


def record_checkpoint(study: StudyDir, trial_id: str, path: str) -> None:
    _append(study, trial_id, {"type": "checkpoint", "path": path})


def record_error(study: StudyDir, trial_id: str, message: str, *, final: bool) -> None:
    _append(study, trial_id, {"type": "error", "final": final, "error": message[:500]})


def record_restart(study: StudyDir, trial_id: str) -> None:
    _append(study, trial_id, {"type": "restart"})


def record_stopped(study: StudyDir, trial_id: str) -> None:
    _append(study, trial_id, {"type": C.STOPPED})


def record_abandoned(study: StudyDir, trial_id: str) -> None:
    _append(study, trial_id, {"type": C.ABANDONED})


def record_stopping(study: StudyDir, decision, **extra: Any) -> None:
    """A sequential study's stopping state in study.yaml (``stopping``): the rule and method,
    and whether it stopped, why and after how many seeds (:meth:`rsb_tune.sequential.rule.Decision.record`);
    ``extra``: more keys of the record (a paired arm's names). Kept keys are updated, not lost."""
    previous = study.meta().get("stopping") or {}
    study.update_meta(stopping=_jsonable({**previous, **decision.record(), **extra}))


def error_message(text: str) -> str:
    """The line of a traceback that names the exception (``RuntimeError: ...``)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"^[\w.]*(Error|Exception|Interrupt|Exit)\b.*:", line)]
    return (named or lines or ["error"])[-1]


# --------------------------------------------------------------------------- the manifest


def build_manifest(
    *,
    kind: str,
    plan,
    space=None,
    data,
    command: str,
    stopping: Mapping[str, Any] | None = None,
    lineage: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """study.yaml's content, built in this one place (creation adds name, counts and times).
    ``data``: the study's :class:`rsb_tune.data.registry.StudyData`. ``stopping``: a sequential study's
    rule record (its metric becomes the study's). ``lineage``: a fine-tune's source study
    (:mod:`rsb_tune.planning.finetune`), recorded as ``finetune_from``. ``recipe`` and ``dataset`` are recorded as
    one name, or as the list of the trials' names when they vary; ``data_specs`` holds each
    data spec the trials train on with its split sizes (a trial's ``n_val`` is its own)."""
    from rsb_tune.data.registry import get_dataset
    from rsb_tune.store.directory import git_commit, package_versions

    metric = stopping["metric"] if stopping else space.metric if space else C.DEFAULT_METRIC
    recipes, datasets = plan.values_of("recipe"), plan.values_of("dataset")
    records = data.records()
    one = len(records) == 1
    return {
        "format": C.FORMAT_VERSION,
        "kind": kind,
        "recipe": recipes[0] if len(recipes) == 1 else recipes,
        "metric": metric,
        "mode": space.mode if space else C.default_mode(metric),
        "params": list(plan.params),
        "command": command,
        "base_config": _jsonable(plan.base.values),
        "base_config_sources": dict(plan.base.sources),
        "space": _jsonable(space.raw) if space else None,
        "space_file": space.path if space else None,
        "search": space.search if space else "grid",
        "num_samples": space.num_samples if space and space.search != "grid" else None,
        "seeds_per_sample": len(space.seeds) if space and space.search != "grid" else None,
        "scheduler": space.scheduler if space else None,
        "layers": [{"source": layer.source, "values": _jsonable(dict(layer.values))} for layer in plan.layers],
        "dataset": datasets[0] if len(datasets) == 1 else datasets,
        "data_sizes": records[0]["sizes"] if one else None,
        "data": _jsonable(records[0]["data"] if one else [r["data"] for r in records]),
        "data_specs": _jsonable([{"spec": r["spec"], "sizes": r["sizes"]} for r in records]),
        "profile_notes": dict(get_dataset(datasets[0]).profile.why) if len(datasets) == 1 else {d: dict(get_dataset(d).profile.why) for d in datasets},
        "versions": package_versions(),
        "git_commit": git_commit(),
        **({"stopping": _jsonable(dict(stopping))} if stopping else {}),
        **({"finetune_from": _jsonable(dict(lineage))} if lineage else {}),
    }


def trainer_manifest(*, kind: str, plan, trainer: Mapping[str, Any], command: str, stopping: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """study.yaml of a study of your own trainer: the keys of :func:`build_manifest` that
    apply, and ``trainer`` (its import path, which ``resume`` imports again) or ``trainer_cmd``.
    No recipe and no dataset: the trainer brings its own."""
    from rsb_tune.store.directory import git_commit, package_versions

    return {
        "format": C.FORMAT_VERSION,
        "kind": kind,
        "recipe": None,
        "metric": trainer["metric"],
        "mode": trainer["mode"],
        "params": list(plan.params),
        "command": command,
        "base_config": _jsonable(plan.base.values),
        "base_config_sources": dict(plan.base.sources),
        "space": None,
        "search": "grid",
        "layers": [{"source": layer.source, "values": _jsonable(dict(layer.values))} for layer in plan.layers],
        "dataset": None,
        "data_specs": [],
        **{k: trainer[k] for k in ("trainer", "trainer_cmd") if k in trainer},
        "versions": package_versions(),
        "git_commit": git_commit(),
        **({"stopping": _jsonable(dict(stopping))} if stopping else {}),
    }


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=json_default))


def create_study(study: StudyDir, manifest: Mapping[str, Any], trials: Mapping[str, Mapping[str, Any]]) -> None:
    """Write a new study's manifest and plan (the caller holds its lock)."""
    study.create(manifest, _jsonable(dict(trials)))


def check_format(study: StudyDir, meta: Mapping[str, Any]) -> None:
    """A study written in a format this version cannot continue is refused with one line."""
    version = meta.get("format", 0)
    if version not in C.READABLE_FORMATS:
        readable = ", ".join(map(str, C.READABLE_FORMATS))
        writer = (meta.get("versions") or {}).get("rsb-tune")
        raise StudyError(
            f"{study.meta_path}: study format {version} was written by a newer rsb-tune ({writer or 'version unknown'}); "
            f"this version reads formats {readable}; continue it with rsb-tune {writer + ' or newer' if writer else f'of format {version}'}"
        )


# --------------------------------------------------------------------------- checkpoints


class Checkpoints:
    """Ray's part of a study (``ray/``): the trials write checkpoints there themselves (for an
    object store, straight to the store); this keeps one per trial and finds them on resume."""

    def __init__(self, study: StudyDir):
        self.study = study

    def storage(self) -> tuple[str, Any]:
        """(storage_path, storage_filesystem) for Ray: the store itself for an object store."""
        if self.study.mirror:
            return f"{self.study.mirror.remote}/{C.RAY}", self.study.location.fs
        return str(self.study.ray_dir), None

    def _fs(self):
        import pyarrow.fs

        return self.study.location.fs or pyarrow.fs.LocalFileSystem()

    def _listing(self, recursive: bool) -> list:
        import pyarrow.fs

        try:
            return self._fs().get_file_info(pyarrow.fs.FileSelector(self.storage()[0], recursive=recursive, allow_not_found=True))
        except OSError as e:
            raise StudyError(f"study {self.study.where}: cannot list its checkpoints ({one_line(e)})") from None

    def dirs_with(self, filename: str = C.CHECKPOINT_FILE) -> set[str]:
        """Every directory under ``ray/`` holding ``filename``, relative to it
        (``run-01/t0000/checkpoint_000002``): one listing, not a request per directory."""
        import pyarrow.fs

        root = self.storage()[0]
        infos = self._listing(recursive=True)
        return {posixpath.dirname(i.path[len(root) :].lstrip("/")) for i in infos if i.type == pyarrow.fs.FileType.File and posixpath.basename(i.path) == filename}

    def relative(self, path: str) -> str | None:
        """A recorded path relative to the study's ``ray/``; recorded paths name where the study
        was when they were written, so a moved or copied study still finds its files."""
        path, marker = posixpath.normpath(f"/{path}"), f"/{self.study.name}/{C.RAY}/"
        i = path.rfind(marker)
        return path[i + len(marker) :] if i >= 0 else None

    def path(self, relative: str) -> str:
        return f"{self.storage()[0]}/{relative}"

    def local(self, path: str, filename: str = C.CHECKPOINT_FILE) -> str:
        """A directory on this machine holding ``filename`` of checkpoint ``path`` (as
        :meth:`path` names it): ``path`` itself for a directory study; for an object store, the
        file downloaded (once) into the local copy's ``ray/``, which is never uploaded."""
        if not self.study.mirror:
            return path
        rel = self.relative(path)
        if rel is None:
            raise StudyError(f"study {self.study.where}: checkpoint {path} is not in the study")
        try:
            return str(self.study.mirror.fetch(f"{C.RAY}/{rel}/{filename}").parent)
        except OSError as e:
            raise StudyError(f"study {self.study.where}: cannot download checkpoint {path} ({one_line(e)})") from None

    def runs(self) -> list[str]:
        """Names of the Ray experiments run so far (``run-01``, ...)."""
        import pyarrow.fs

        infos = self._listing(recursive=False)
        return sorted(Path(i.path).name for i in infos if i.type == pyarrow.fs.FileType.Directory and re.fullmatch(r"run-\d+", Path(i.path).name))

    def next_run(self) -> str:
        return f"run-{max([int(r[4:]) for r in self.runs()], default=0) + 1:02d}"

    def discard(self, path: str) -> None:
        """Delete a superseded checkpoint once the record of its successor is safe (for an
        object store: uploaded)."""
        fs = self._fs()

        def delete():
            try:
                fs.delete_dir(path)
            except OSError:
                pass  # gone already

        if self.study.mirror:
            self.study.mirror.after_flush(delete)
        else:
            delete()


# --------------------------------------------------------------------------- resume planning


@dataclasses.dataclass(frozen=True)
class ResumePlan:
    """What a run of a study has to do: trials to run (id -> config), the checkpoint each one
    continues from, the torch threads of trials that already started, and how many finished."""

    todo: Mapping[str, Mapping[str, Any]]
    resume_from: Mapping[str, str]
    threads: Mapping[str, int]
    finished: int
    failed_before: int = 0


def trial_threads(events: list[Mapping[str, Any]]) -> int | None:
    """The torch threads a trial started with (recorded with each result), if it reported."""
    for ev in events:
        if ev.get("type") == "result" and ev.get("runtime_threads"):
            return int(ev["runtime_threads"])
    return None


def prepare_run(study: StudyDir, *, searching: bool = False, only=None) -> ResumePlan:
    """Plan a run of ``study`` from its plan and event logs (called with the study locked).

    Finished trials are kept; an errored trial gets a ``restart`` record; a search's
    interrupted points are ``abandoned`` (the search samples new ones). Checkpoints a dead
    driver left behind are deleted: superseded ones (a checkpoint is deleted only after its
    successor is recorded) and unrecorded ones (written as the driver died; never resumed
    from, since their epoch's results were not recorded). Ray Train's own checkpoints
    (``ray/train/``, DDP trials) are left to Ray Train. ``only``: the trial ids this run may
    touch (a round of a paired study, the in-flight trials of a stopped sequential study);
    the others are neither run nor restarted, and keep their checkpoints."""
    plan = study.plan()
    ckpts = Checkpoints(study)
    on_disk = ckpts.dirs_with()
    todo, resume_from, threads, kept, finished = {}, {}, {}, set(), 0
    for tid, cfg in plan.items():
        events = read_events(study, tid)
        status, _, _ = trial_state(events)
        recorded = [ckpts.relative(ev["path"]) for ev in events if ev.get("type") == "checkpoint"]
        existing = [rel for rel in dict.fromkeys(recorded) if rel in on_disk]
        kept.update(existing[-1:])
        if only is not None and tid not in only:
            continue
        if status in C.KEPT:
            finished += 1
            continue
        if searching:
            record_abandoned(study, tid)
            finished += 1
            continue
        if status == C.ERROR:
            record_restart(study, tid)
        todo[tid] = cfg
        good = resumable_checkpoint(study, tid, existing)
        if good:  # the newest recorded checkpoint that exists and is whole, where the study is now
            resume_from[tid] = ckpts.path(good)
            kept.add(good)
        elif any(ev.get("type") == "result" for ev in events):
            own = " (its trainer saves no state: docs/own-trainer.md)" if "trainer" in cfg or "trainer_cmd" in cfg else ""
            logger.info("%s: no checkpoint to continue from: it starts over%s", tid, own)
        started = trial_threads(events)
        if started:
            threads[tid] = started
    for rel in sorted(on_disk - kept):
        if not rel.startswith("train/"):
            ckpts.discard(ckpts.path(rel))
    return ResumePlan(todo=todo, resume_from=resume_from, threads=threads, finished=finished)


def resumable_checkpoint(study: StudyDir, trial_id: str, existing: list[str]) -> str | None:
    """The newest of a trial's recorded checkpoints (relative to ``ray/``, oldest first) that
    is whole and holds only data, else None (the trial starts over). Each one passed over is
    said on stderr and in ``errors/<trial>.txt``; a refused one (it holds code) is left in
    place to be looked at, a damaged one is deleted."""
    from rsb_tune.training import checkpoint

    ckpts = Checkpoints(study)
    for rel in reversed(existing):
        try:
            checkpoint.check_on(ckpts.storage()[1], ckpts.path(rel))
            return rel
        except (checkpoint.CheckpointCorrupt, checkpoint.CheckpointRefused) as e:
            if isinstance(e, checkpoint.CheckpointCorrupt):
                ckpts.discard(ckpts.path(rel))
            older = existing.index(rel) > 0
            then = "an older checkpoint is tried" if older else "the trial starts over"
            note = f"{trial_id}: checkpoint not used: {e}; {then}"
            logger.warning("%s", note)
            with open(study.errors_dir / f"{trial_id}.txt", "a") as f:
                f.write(note + "\n")
    return None


def search_of(study: StudyDir):
    """(Space, PointResolver) of a search study from its study.yaml, else (space or None, None)."""
    from rsb_tune.planning.config import Layer
    from rsb_tune.planning.space import PointResolver, space_from_mapping

    meta = study.meta()
    if not meta.get("space"):
        return None, None
    space = space_from_mapping(meta["space"], meta.get("space_file") or "space")
    if space.search != "optuna":
        return space, None
    layers = tuple(Layer(layer["source"], layer["values"]) for layer in meta.get("layers", []))
    base = meta["base_config"]  # its recipe and dataset: the study's, as its layers named them
    return space, PointResolver(base["recipe"], base["dataset"], layers, space.seeds[0], f"search in {space.path}")


def _point_key(point: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in point.items()))


def repair_search_history(study: StudyDir, space, metric: str, storage) -> None:
    """Points an Optuna storage still holds as RUNNING after a driver died: completed with
    their value when the events show that they finished (a point with several seeds: the mean
    of its finished seeds, as the searcher would have been told), failed otherwise (the resumed
    search samples another point)."""
    import optuna

    try:
        trials = optuna.load_study(study_name=study.name, storage=storage).trials
    except KeyError:
        return  # first run: no study in the storage yet
    finished: dict[tuple, list[float]] = {}
    for tid, cfg in study.plan().items():
        status, by_epoch, _ = trial_state(read_events(study, tid))
        if status == C.OK and by_epoch:
            finished.setdefault(_point_key({k: cfg[k] for k in space.params}), []).append(float(by_epoch[max(by_epoch)][metric]))
    for t in trials:
        if t.state != optuna.trial.TrialState.RUNNING:
            continue
        values = finished.get(_point_key(t.params))
        if values:
            storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.COMPLETE, values=[sum(values) / len(values)])
        else:
            storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)


# --------------------------------------------------------------------------- progress


def fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """What a run shows while it goes: the planned total and done / running / failed counts
    from the plan and the events, and an ETA from the run times of trials finished in this
    run over the slots in use (shown once one has finished). A live bar on a terminal (tqdm),
    one plain line every ``every`` seconds otherwise."""

    def __init__(self, name: str, *, planned: int, done: int = 0, failed: int = 0, quiet: bool = False, stream=None, every: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.name, self.planned, self.done, self.failed = name, planned, done, failed
        self.stream = stream or sys.stderr
        self.quiet, self.every, self.clock = quiet, every, clock
        self.started: dict[str, float] = {}
        self.durations: list[float] = []
        self.slots = 0
        self.t0 = clock()
        self.last_line = self.t0
        self.bar = None
        self.closed = False
        if not quiet and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=planned, initial=done + failed, desc=name, unit="trial", file=self.stream, dynamic_ncols=True, leave=True)

    def __getstate__(self):  # Ray pickles the Tuner's callbacks (tuner.pkl): no stream, no bar
        return {**self.__dict__, "stream": None, "bar": None}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.stream = sys.stderr

    @property
    def running(self) -> int:
        return len(self.started)

    def trial_started(self, trial_id: str) -> None:
        self.started.setdefault(trial_id, self.clock())
        self.slots = max(self.slots, self.running)
        self._show()

    def trial_ended(self, trial_id: str, *, failed: bool) -> None:
        t = self.started.pop(trial_id, None)
        if t is not None and not failed:
            self.durations.append(self.clock() - t)
        if failed:
            self.failed += 1
        else:
            self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        if self.bar is None and self.done + self.failed == self.planned:
            self.close()

    def eta(self) -> float | None:
        """Seconds left: remaining trials x mean trial time / slots (None before a trial ended)."""
        if not self.durations:
            return None
        remaining = max(self.planned - self.done - self.failed, 0)
        mean = sum(self.durations) / len(self.durations)
        slots = max(self.slots, 1)
        in_flight = sum(max(mean - (self.clock() - t), 0.0) for t in self.started.values())
        queued = max(remaining - self.running, 0)
        return (in_flight + queued * mean) / slots

    def line(self) -> str:
        eta = self.eta()
        elapsed = self.clock() - self.t0
        tail = f", ETA {fmt_duration(eta)}" if eta is not None else ""
        return f"[{self.name}] {self.done}/{self.planned} trials done, {self.running} running, {self.failed} failed | elapsed {fmt_duration(elapsed)}{tail}"

    def tick(self) -> None:
        self._show()

    def _show(self, force: bool = False) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            eta = self.eta()
            self.bar.set_postfix_str(f"{self.running} running, {self.failed} failed" + (f", ETA {fmt_duration(eta)}" if eta is not None else ""), refresh=True)
            return
        now = self.clock()
        if force or now - self.last_line >= self.every:
            self.last_line = now
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        """The last state, once (a bar is closed, a plain display prints its final line)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif not self.quiet and not self.closed:
            print(self.line(), file=self.stream, flush=True)
        self.closed = True


# --------------------------------------------------------------------------- the driver's record


class Recorder:
    """What the driver does as Ray reports: every result appended to the trial's events,
    predictions saved, tables rebuilt as trials finish (throttled while they run), checkpoints
    recorded and pruned to one per trial, errors written with their traceback, progress
    updated, and an object-store study uploaded when a trial ends."""

    def __init__(self, study: StudyDir, plan: ResumePlan, progress: Progress, *, resolver=None, early_stopping: bool = False, packs: Mapping[str, Sequence[str]] | None = None, clock: Callable[[], float] = time.time):
        self.study, self.progress, self.resolver = study, progress, resolver
        self.early_stopping = early_stopping
        self.packs = dict(packs or {})  # a Ray trial that trains a pack -> its trials
        self.diverged: set[str] = set()  # trials of packs that left them (no checkpoint of theirs follows)
        self.checkpoints = Checkpoints(study)
        self.last_checkpoint: dict[str, str] = dict(plan.resume_from)
        self.clock = clock
        # the first rebuild 5 s in, not at the first result: a short study's tables are written
        # once, by the runner at its end (each rebuild reads every event log)
        self.last_table_write = clock()

    def _members(self, trial_id: str) -> Sequence[str]:
        return self.packs.get(trial_id, (trial_id,))

    def trial_started(self, trial_id: str, point: Mapping[str, Any] | None = None) -> None:
        if self.resolver is not None and point is not None:  # a search trial: its config joins the plan
            self.study.add_trial(trial_id, self.resolver(point))
        for tid in self._members(trial_id):
            self.progress.trial_started(tid)

    def result(self, trial_id: str, result: Mapping[str, Any]) -> None:
        if trial_id in self.packs:  # a pack reports each of its trials' results at once
            for tid, member_result in result[C.PACK_RESULTS].items():
                self._result(tid, member_result)
        else:
            self._result(trial_id, result)

    def _result(self, trial_id: str, result: Mapping[str, Any]) -> None:
        from rsb_tune.store.tables import write_predictions

        record_result(self.study, trial_id, result)
        if result.get("checkpoint_path"):  # a DDP trial's checkpoint, saved by Ray Train
            record_checkpoint(self.study, trial_id, result["checkpoint_path"])
        status = result.get("status")
        if status == C.OK:
            write_predictions(self.study, trial_id, result)
        if status == C.DIVERGED:
            self.diverged.add(trial_id)
        finished = status in (C.OK, C.DIVERGED)
        if self.clock() - self.last_table_write > (5 if finished else 30):
            self.tables()  # the fsynced events are the record; the tables follow
        if finished:
            self.progress.trial_ended(trial_id, failed=False)
            self.sync()  # an object-store study: a finished trial is uploaded before going on

    def checkpoint_saved(self, trial_id: str, path: str) -> None:
        """Record the newest checkpoint (for each trial of a pack), then delete the ones it
        supersedes (Ray's own pruning would snapshot the whole experiment each time)."""
        members = [tid for tid in self._members(trial_id) if tid not in self.diverged]
        for tid in members:
            record_checkpoint(self.study, tid, path)
        old = {self.last_checkpoint.get(tid) for tid in self._members(trial_id)} - {None, path}
        for tid in members:
            self.last_checkpoint[tid] = path
        for superseded in old:
            self.checkpoints.discard(superseded)

    def trial_failed(self, trial_id: str, traceback_text: str, *, final: bool) -> None:
        for tid in self._members(trial_id):
            if trial_id in self.packs and trial_state(read_events(self.study, tid))[0] in C.KEPT:
                continue  # a trial of the pack that had finished before it failed
            (self.study.errors_dir / f"{tid}.txt").write_text(traceback_text)
            record_error(self.study, tid, error_message(traceback_text), final=final)
            if final:
                self.progress.trial_ended(tid, failed=True)
        self.tables()
        self.sync()

    def trial_completed(self, trial_id: str) -> None:
        """Ray says the trial ended; one that reported no final status was early-stopped."""
        if not self.early_stopping:
            return
        for tid in self._members(trial_id):
            if trial_state(read_events(self.study, tid))[0] == C.RUNNING:
                record_stopped(self.study, tid)
                self.progress.trial_ended(tid, failed=False)
                self.tables()

    def step(self) -> None:
        self.progress.tick()

    def ended(self) -> None:
        """The run ended: the runner (:mod:`rsb_tune.runner.loops`) writes the tables next."""

    def tables(self) -> None:
        from rsb_tune.store.tables import write_tables

        write_tables(self.study)
        self.last_table_write = self.clock()

    def sync(self) -> None:
        try:
            self.study.sync()
        except UserError as e:  # the upload thread retries; the study goes on
            logger.warning("%s; retrying", e)


_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.ESTALE}
_STORAGE_TEXT = re.compile(r"No space left on device|Disk quota exceeded|Read-only file system|\[Errno (28|122|30)\]")


def is_storage_error(e: BaseException) -> bool:
    """An error of the study's storage itself (full, over quota, read-only, failing)."""
    return (isinstance(e, OSError) and e.errno in _STORAGE_ERRNOS) or bool(_STORAGE_TEXT.search(str(e)))


def storage_failure(study: StudyDir, e: BaseException) -> StorageFull:
    """The one line a run stops with when the study's storage refuses a write."""
    what = f" writing {e.filename}" if getattr(e, "filename", None) else ""
    reason = getattr(e, "strerror", None) or one_line(e)
    return StorageFull(f"study {study.where}: {reason}{what}; the run stopped with every result so far recorded; free space and `rsb-tune resume {study.name}`")


class WriteGuard:
    """The :class:`Recorder` as Ray's callback drives it, halted by the first write to the
    study that fails (a full disk, a quota, a read-only file system) or by a trial that failed
    to write its checkpoint there. After that nothing more is written: the event logs stay a
    prefix of what happened, so that a resumed run re-runs what was not recorded (a trial
    continues from its last recorded checkpoint) and loses nothing. ``failure`` says what
    happened; the run stops (:meth:`halted`) and raises it (:meth:`raise_if_halted`)."""

    _FORWARDED = ("trial_started", "result", "checkpoint_saved", "trial_failed", "trial_completed", "step", "ended")

    def __init__(self, recorder: Recorder):
        self.recorder = recorder
        self.failure: StorageFull | None = None

    def __getattr__(self, name: str):
        if name not in WriteGuard._FORWARDED:
            raise AttributeError(name)
        return lambda *args, **kwargs: self._call(name, *args, **kwargs)

    def _call(self, name: str, *args, **kwargs) -> None:
        if self.failure is not None:
            return
        if name == "trial_failed" and _STORAGE_TEXT.search(args[1]):
            line = next((l.strip() for l in args[1].splitlines() if _STORAGE_TEXT.search(l)), "")
            self.failure = StorageFull(
                f"study {self.recorder.study.where}: trial {args[0]} could not write to the study ({line[:300]}); "
                f"the run stopped with every result so far recorded; free space and `rsb-tune resume {self.recorder.study.name}`"
            )
            return
        try:
            getattr(self.recorder, name)(*args, **kwargs)
        except OSError as e:
            self.failure = storage_failure(self.recorder.study, e)

    def halted(self) -> bool:
        return self.failure is not None

    def raise_if_halted(self) -> None:
        if self.failure is not None:
            raise self.failure
