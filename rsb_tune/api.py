"""The Python API: plan, run, resume, load and list studies. The command line is a thin layer
over these functions; every check lives here, so a notebook gets the same errors as a shell.

    import rsb_tune
    study = rsb_tune.seeds(n=4, recipe="A2", epochs=2)     # runs, then returns the Study
    study.trials.val_top1.mean()
    study.status()                                          # counts, best and mean so far
    rsb_tune.grid("lamb_bce", epochs=1)                     # a shipped space, by name
    rsb_tune.resume("seeds-A2-20261201-101502", cpus_per_trial=2)
    rsb_tune.load("seeds-A2-20261201-101502").report()

Experiment arguments (what is trained: ``data``, ``model``, ``epochs``, ``batch_size``,
``workers_per_trial``, ``overrides``) go into the study's plan. Run options (see
:class:`rsb_tune.options.RunOptions`: CPUs, GPUs, concurrency, address, tracking) do not.
Bad input raises :class:`rsb_tune.errors.UserError` (its message is the line the CLI prints
with exit code 2) before anything is written.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import sys
from pathlib import Path
from typing import Any, Mapping

from rsb_tune import contract as C
from rsb_tune import lifecycle
from rsb_tune.errors import ConfigError, Interrupted, StudyError
from rsb_tune.options import DEFAULT_STORAGE, RunOptions, run_options
from rsb_tune.recipes import DEFAULT_RECIPE
from rsb_tune.study import StudyDir

__all__ = ["seeds", "grid", "plan_seeds", "plan_grid", "start", "resume", "load", "list_studies", "Study", "StudyPlan", "StudyStatus", "compare", "spaces"]


# --------------------------------------------------------------------------- planning


@dataclasses.dataclass(frozen=True)
class StudyPlan:
    """A validated study before it runs: its kind, recipe, dataset, space and every trial's
    resolved config (a search's trials are sampled as it runs)."""

    kind: str
    recipe: Any
    dataset: Any
    space: Any
    plan: Any
    label: str

    @property
    def trials(self) -> Mapping[str, Mapping[str, Any]]:
        return self.plan.trials

    @property
    def planned(self) -> int:
        return self.space.num_samples if self.plan.resolver is not None else len(self.plan.trials)

    def describe(self) -> list[str]:
        """What ``--dry-run`` prints: the count, the base config with the source of every value,
        and each trial as its difference from the base."""
        import json

        import yaml

        def scalar(v):
            return json.dumps(v) if isinstance(v, (dict, list)) or v is None else str(v)

        base = self.plan.base
        if self.plan.resolver is not None:
            head = f"search: optuna, {self.space.num_samples} trials sampled from " + ", ".join(f"{k} ~ {kind}{list(v)}" for k, (kind, v) in self.space.params.items())
        else:
            head = f"{len(self.trials)} trials ({self.kind}, recipe {self.recipe.name}, dataset {self.dataset.name}); varied: {', '.join(self.plan.params) or 'seed'}"
        lines = [head, "base config (key: value  # source):"]
        lines += [f"  {key}: {scalar(value)}  # {base.sources[key]}" for key, value in base.values.items()]
        if self.plan.resolver is None:
            lines.append("trials (each: the base config above with these keys changed):")
            for tid, cfg in self.trials.items():
                diff = {k: v for k, v in cfg.items() if base.values.get(k) != v}
                lines.append(f"  {tid}: {yaml.safe_dump(diff, default_flow_style=True, width=10**6).strip()}")
        return lines


def _experiment_layers(data=None, model=None, epochs=None, batch_size=None, workers_per_trial=None, overrides=None):
    """The command-line layers of the precedence chain, from experiment arguments."""
    from rsb_tune.config import Layer, coerce, parse_set

    layers = []
    if data is not None:
        layers.append(Layer("--data", {"dataset": "folder", "data_path": str(Path(data).expanduser().resolve())}))
    for flag, key, value in (("--model", "model", model), ("--epochs", "epochs", epochs), ("--batch-size", "batch_size", batch_size), ("--workers-per-trial", "workers_per_trial", workers_per_trial)):
        if value is not None:
            layers.append(Layer(flag, {key: coerce(key, value, flag)}))
    if overrides:
        if isinstance(overrides, Mapping):
            layers.append(Layer("--set", {k: coerce(k, v, "--set") for k, v in overrides.items()}))
        elif isinstance(overrides, str):
            layers.append(parse_set([overrides]))
        else:
            layers.append(parse_set(list(overrides)))
    return layers


def _dataset_of(layers) -> str:
    from rsb_tune.config import FIELDS

    dataset = FIELDS["dataset"].default
    for layer in layers:
        dataset = layer.values.get("dataset", dataset)
    return dataset


def plan_seeds(n: int = 100, recipe: str = DEFAULT_RECIPE, *, seed_start: int = 0, **experiment) -> StudyPlan:
    """Plan a seed study: ``recipe`` under seeds ``seed_start .. seed_start + n - 1``."""
    from rsb_tune.recipes import get_recipe
    from rsb_tune.space import seed_list

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"--n must be >= 1 (an integer), got {n!r}")
    seeds_ = seed_list({"start": seed_start, "n": n}, "--seed-start/--n")
    return _plan("seeds", get_recipe(recipe), seeds_, None, recipe, experiment)


def plan_grid(space: str | Path = "lamb_bce", **experiment) -> StudyPlan:
    """Plan the grid (or search) of a space file: a path, or the name of a shipped space."""
    from rsb_tune.recipes import get_recipe
    from rsb_tune.space import find_space, load_space

    path = find_space(space)
    loaded = load_space(path)
    return _plan("grid", get_recipe(loaded.recipe), loaded.seeds, loaded, Path(path).stem, experiment)


def _plan(kind, recipe, seed_values, space, label, experiment) -> StudyPlan:
    from rsb_tune.data import get_dataset
    from rsb_tune.space import build_plan
    from rsb_tune.validate import check_plan

    unknown = sorted(set(experiment) - _EXPERIMENT)
    if unknown:
        from rsb_tune.errors import suggest

        raise ConfigError(f"unknown argument {unknown[0]!r}{suggest(unknown[0], _EXPERIMENT)}; experiment arguments: {', '.join(sorted(_EXPERIMENT))}")
    layers = _experiment_layers(**experiment)
    spec = get_dataset(_dataset_of(layers))
    plan = build_plan(recipe, spec.profile, seeds=seed_values, space=space, command_line=layers)
    check_plan(plan, space)
    return StudyPlan(kind, recipe, spec, space, plan, str(label))


_EXPERIMENT = frozenset({"data", "model", "epochs", "batch_size", "workers_per_trial", "overrides"})


# --------------------------------------------------------------------------- running


def _split(kwargs: Mapping[str, Any]) -> tuple[dict, dict]:
    """Keyword arguments -> (experiment arguments, run options)."""
    experiment = {k: v for k, v in kwargs.items() if k in _EXPERIMENT}
    options = {k: v for k, v in kwargs.items() if k not in _EXPERIMENT}
    return experiment, options


def seeds(n: int = 100, recipe: str = DEFAULT_RECIPE, *, seed_start: int = 0, storage: str = DEFAULT_STORAGE, name: str | None = None, **kwargs) -> "Study":
    """Run ``recipe`` under ``n`` seeds (the paper's 100-seed study of A2 by default) and return
    the finished :class:`Study`. ``kwargs``: experiment arguments (``epochs=2``, ``model=...``,
    ``overrides={"drop_path": 0.05}``) and run options (``cpus_per_trial=2``, ...)."""
    experiment, options = _split(kwargs)
    run_options(options)  # a misspelled option fails before the plan is made
    plan = plan_seeds(n, recipe, seed_start=seed_start, **experiment)
    command = _python_call("seeds", n=n, recipe=recipe, seed_start=seed_start or None, name=name, **experiment)
    return start(plan, storage=storage, name=name, command=command, **options)


def grid(space: str | Path = "lamb_bce", *, storage: str = DEFAULT_STORAGE, name: str | None = None, **kwargs) -> "Study":
    """Run the grid (or search) of ``space`` (a path, or a shipped space's name) and return the
    finished :class:`Study`."""
    experiment, options = _split(kwargs)
    run_options(options)
    plan = plan_grid(space, **experiment)
    return start(plan, storage=storage, name=name, command=_python_call("grid", space=str(space), name=name, **experiment), **options)


def _python_call(fn: str, **kwargs) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if v is not None)
    return f"rsb_tune.{fn}({args})"


def start(plan: StudyPlan, *, storage: str = DEFAULT_STORAGE, name: str | None = None, command: str | None = None, **options) -> "Study":
    """Create the study of ``plan`` in ``storage`` and run it; the same plan under an existing
    name resumes that study. Returns the :class:`Study` once its run ends."""
    from rsb_tune.data import load_splits
    from rsb_tune.ray_adapter import check_address, check_tracking
    from rsb_tune.storage import check_writable, locate
    from rsb_tune.study import default_name

    opts = run_options(options)
    location = locate(storage)
    check_writable(location)
    check_address(opts.address)
    check_tracking(opts.tracking)
    if plan.space is not None and plan.space.scheduler:
        print(
            "rsb-tune: warning: `scheduler: asha` stops trials on intermediate epochs, while the paper selects on the "
            "final checkpoint only; early-stopped trials get status 'stopped' and their metrics are from fewer epochs",
            file=sys.stderr,
        )
    study = StudyDir(location, name or default_name(plan.kind, plan.label))
    base = plan.plan.base.values
    data = load_splits(base["dataset"], base["data_path"])
    trials = lifecycle._jsonable(dict(plan.trials))
    if study.exists():
        _check_same_plan(study, trials)
        print(f"study {study.name!r} exists with the same plan: resuming it", file=sys.stderr)
        return _run(study, data, opts)
    manifest = lifecycle.build_manifest(kind=plan.kind, recipe=plan.recipe.name, plan=plan.plan, space=plan.space, dataset=plan.dataset, data_sizes=data.sizes(), command=command or _command_line())
    created = not study.dir.exists()
    study.dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = study.lock().acquire()
    except StudyError:
        if created and {p.name for p in study.dir.iterdir()} <= {".lock"}:
            import shutil

            shutil.rmtree(study.dir, ignore_errors=True)  # nothing of ours stays, nothing of another driver goes
        raise
    with lock:  # held from creation to the end of the run: one driver per study
        if study.exists():  # another driver created it between our check and the lock
            _check_same_plan(study, trials)
        else:
            lifecycle.create_study(study, manifest, trials)
        if not opts.quiet:
            print(f"study {study.name}: {plan.planned} trials -> {study.where}", file=sys.stderr)
        return _run(study, data, opts, locked=True)


def _command_line() -> str:
    argv = sys.argv or [""]
    return " ".join(["rsb-tune", *argv[1:]]) if argv[0].endswith("rsb-tune") else " ".join(argv)


def _check_same_plan(study: StudyDir, trials: Mapping[str, Any]) -> None:
    if study.require().plan() != trials:
        raise StudyError(
            f"study {study.name!r} already exists in {study.location.display()} with a different plan; "
            f"continue it with `rsb-tune resume {study.name}` or pick another name"
        )


def resume(name: str, *, storage: str = DEFAULT_STORAGE, **options) -> "Study":
    """Continue a study whose driver stopped: finished trials are kept, unfinished ones continue
    from their last checkpoint, the rest start. Run options may differ from the first run's."""
    from rsb_tune.data import load_splits
    from rsb_tune.ray_adapter import check_address, check_tracking

    opts = run_options(options)
    study = StudyDir(storage, name).require()
    lifecycle.check_format(study, study.meta())
    check_address(opts.address)
    check_tracking(opts.tracking)
    base = study.meta().get("base_config") or {}
    data = load_splits(base.get("dataset", "digits"), base.get("data_path"))
    return _run(study, data, opts)


def _run(study: StudyDir, data, opts: RunOptions, locked: bool = False) -> "Study":
    if not locked:
        with study.lock():
            return _run(study, data, opts, locked=True)
    from rsb_tune.ray_adapter import run_study
    from rsb_tune.study import now_iso

    lifecycle.check_format(study, study.meta())
    study.update_meta(run_options=opts.recorded())
    try:
        run_study(study, data, opts)
    except KeyboardInterrupt:
        raise Interrupted(study.name) from None
    except OSError as e:  # the storage refused a write outside the run (planning, the last tables)
        if lifecycle.is_storage_error(e):
            raise lifecycle.storage_failure(study, e) from None
        raise
    study.update_meta(ended_at=now_iso())
    handle = Study(study)
    status = handle.status()
    if status.unfinished and not status.failed:
        raise Interrupted(study.name)  # Ray Tune returns early on a signal
    if not opts.quiet:
        print("\n".join(status.summary()), file=sys.stderr)
    return handle


# --------------------------------------------------------------------------- reading


@dataclasses.dataclass(frozen=True)
class StudyStatus:
    """Where a study stands: trial counts by status, and its metric's best and mean so far."""

    name: str
    kind: str
    recipe: str | None
    where: str
    planned: int
    counts: Mapping[str, int]
    metric: str
    mode: str
    values: tuple[float, ...]
    best_trial: str | None
    started_at: str | None
    ended_at: str | None
    running_now: bool
    search: str | None = None

    done = property(lambda self: sum(self.counts.get(s, 0) for s in C.COUNTED))
    failed = property(lambda self: sum(self.counts.get(s, 0) for s in C.FAILED))
    running = property(lambda self: self.counts.get(C.RUNNING, 0))
    unfinished = property(lambda self: max(self.planned - self.done - self.failed - self.counts.get(C.ABANDONED, 0), 0))
    n = property(lambda self: len(self.values))
    mean = property(lambda self: statistics.fmean(self.values) if self.values else math.nan)
    std = property(lambda self: statistics.stdev(self.values) if len(self.values) > 1 else math.nan)
    best = property(lambda self: C.better(self.mode)(self.values) if self.values else math.nan)

    @property
    def state(self) -> str:
        """``running`` (a driver holds it), ``finished`` (nothing left) or ``interrupted``."""
        if self.running_now:
            return "running"
        return "finished" if self.unfinished == 0 else "interrupted"

    @property
    def exit_code(self) -> int:
        """What the command that ran it exits with: 0 when every trial finished, else 1."""
        return 0 if self.failed == 0 and self.unfinished == 0 else 1

    def lines(self) -> list[str]:
        """``rsb-tune status``'s text."""
        planned = f"{self.planned} trials to sample ({self.search})" if self.search not in (None, "grid") else f"{self.planned} trials planned"
        shown = [s for s in (*C.FINISHED, C.RUNNING, C.PENDING) if self.counts.get(s) or s in (C.OK, C.ERROR, C.RUNNING)]
        out = [f"study {self.name} ({self.kind}, recipe {self.recipe}): {planned}; {self.state}", "  " + ", ".join(f"{self.counts.get(s, 0)} {s}" for s in shown)]
        if self.values:
            out.append(f"  {self.metric}: mean {self.mean:.2f} ± {self.std:.2f} (std, n={self.n}), best {self.best:.2f} ({self.best_trial})")
        out.append(f"  started {self.started_at}, ended {self.ended_at or '-'}; tables in {self.where}")
        return out

    def summary(self) -> list[str]:
        """What a run prints at its end: trials, the metric, where, and how to look at it."""
        ended = ", ".join(f"{self.counts.get(s, 0)} {s}" for s in C.FINISHED if self.counts.get(s) or s in (C.OK, C.DIVERGED, C.ERROR))
        out = [f"study {self.name}: {ended}" + (f", {self.unfinished} unfinished" if self.unfinished else "") + f" of {self.planned} -> {self.where}"]
        if self.values:
            out.append(f"  {self.metric}: {self.mean:.2f} ± {self.std:.2f} (mean ± std over {self.n} ok trials), best {self.best:.2f} ({self.best_trial})")
        home = self.where[: -len(self.name) - 1]
        default = "://" not in home and Path(home).resolve() == Path(DEFAULT_STORAGE).resolve()
        flag, kwarg = ("", "") if default else (f" --storage {home}", f", storage={home!r}")
        out.append(f"  look at it: rsb-tune status {self.name}{flag} ; rsb-tune report {self.name}{flag} ; python: rsb_tune.load({self.name!r}{kwarg})")
        return out


class Study:
    """A study in a storage: its manifest, plan and tables, where it stands, and its report.
    Reading never takes the study's lock, so a running study can be watched."""

    def __init__(self, directory: StudyDir):
        self._dir = directory

    def __repr__(self) -> str:
        return f"rsb_tune.Study({self.name!r}, where={self.where!r})"

    name = property(lambda self: self._dir.name)
    where = property(lambda self: self._dir.where, doc="the study's home: a directory, or its object-store URI")
    path = property(lambda self: self._dir.dir, doc="the local directory (for an object store: its local copy)")
    directory = property(lambda self: self._dir, doc="the study's files (rsb_tune.study.StudyDir)")

    @property
    def meta(self) -> dict[str, Any]:
        """study.yaml: command, kind, recipe, metric, the resolved base config and its sources, versions."""
        return self._dir.meta()

    @property
    def config(self) -> dict[str, Any]:
        """The resolved base config (every trial is this with its seed and grid point)."""
        return dict(self.meta.get("base_config") or {})

    @property
    def plan(self) -> dict[str, dict[str, Any]]:
        """Every trial's resolved config (a search's: those sampled so far)."""
        return self._dir.plan()

    @property
    def trials(self):
        """One row per finished trial (pandas DataFrame; see README for the columns)."""
        return self._tables()[0]

    @property
    def epochs(self):
        """One row per trial and epoch (pandas DataFrame)."""
        return self._tables()[1]

    def _tables(self):
        import pandas as pd

        if self._dir.trials_path.exists() and self._dir.epochs_path.exists():
            try:
                # through one open file each: pandas opens a path twice (schema, then data), and
                # a table rewritten in between (os.replace) would be read half old, half new
                with open(self._dir.trials_path, "rb") as t, open(self._dir.epochs_path, "rb") as e:
                    return pd.read_parquet(t), pd.read_parquet(e)
            except Exception as e:  # a corrupt table: pyarrow raises several unrelated types
                raise StudyError(f"{self._dir.dir}: cannot read its tables ({type(e).__name__}: {e})") from None
        from rsb_tune.results import build_tables

        return build_tables(self._dir)  # not written yet: built from the event logs

    def status(self) -> StudyStatus:
        from rsb_tune.storage import StudyLock

        meta = self.meta
        metric = meta.get("metric", C.DEFAULT_METRIC)
        counts = lifecycle.counts(self._dir)
        finals = lifecycle.finals(self._dir, metric)
        mode = meta.get("mode") or C.default_mode(metric)
        best = C.better(mode)(finals)[1] if finals else None
        searched = meta.get("num_samples")
        planned = int(searched) + counts.get(C.ABANDONED, 0) if searched else len(self.plan)
        return StudyStatus(
            name=self.name, kind=meta["kind"], recipe=meta.get("recipe"), where=self.where, planned=planned, counts=counts,
            metric=metric, mode=mode, values=tuple(v for v, _ in finals), best_trial=best,
            started_at=meta.get("started_at"), ended_at=meta.get("ended_at"),
            running_now=StudyLock(self._dir.dir / ".lock").held(), search=meta.get("search"),
        )  # fmt: skip

    def tables(self):
        """The study as :class:`analysis.StudyTables` (statistics and figures)."""
        import analysis

        return analysis.load_study(self.path)

    def report(self, out: str | Path | None = None) -> Path:
        """Write figures, summary.json/md and index.html (default ``<study>/report``); an
        object-store study's report is uploaded next to it. Returns the report's folder."""
        from analysis.report import write_report

        try:
            written = Path(write_report(self.path, out))
        except ValueError as e:  # analysis's errors and bad tables carry a message
            raise StudyError(str(e)) from None
        if self._dir.mirror and written.resolve().is_relative_to(self.path.resolve()):
            self._dir.sync(only=written)
        return written


def load(name: str, storage: str = DEFAULT_STORAGE) -> Study:
    """The study ``name`` in ``storage`` (an object-store study is downloaded, checkpoints aside)."""
    return Study(StudyDir(storage, name).require())


def list_studies(storage: str = DEFAULT_STORAGE) -> list[Study]:
    """Every study in ``storage``, newest first."""
    import pyarrow.fs

    from rsb_tune.storage import locate, one_line

    location = locate(storage)
    if location.remote:
        try:
            infos = location.fs.get_file_info(pyarrow.fs.FileSelector(location.fs_root, allow_not_found=True))
        except OSError as e:
            raise StudyError(f"{location.display()}: cannot list it ({one_line(e)})") from None
        names = [Path(i.path).name for i in infos if i.type == pyarrow.fs.FileType.Directory]
        names = [n for n in names if location.fs.get_file_info(f"{location.fs_root}/{n}/{C.MANIFEST}").type == pyarrow.fs.FileType.File]
    else:
        root = location.root
        names = [p.name for p in root.iterdir() if (p / C.MANIFEST).is_file()] if root.is_dir() else []
    out = []
    for n in names:
        try:
            out.append(load(n, location))
        except StudyError:
            continue  # not a study this version can read, or a name it does not accept
    return sorted(out, key=lambda s: str(s.meta.get("started_at") or ""), reverse=True)


def compare(name_a: str, name_b: str, *, storage: str = DEFAULT_STORAGE, out: str | Path | None = None) -> Path:
    """Is A really better than B? Writes the comparison report (default
    ``<storage>/compare-A-vs-B``) and returns its folder."""
    from analysis.report import write_compare_report

    a, b = load(name_a, storage), load(name_b, storage)
    out = out or a.directory.storage / f"compare-{a.name}-vs-{b.name}"
    try:
        return Path(write_compare_report(a.path, b.path, out))
    except ValueError as e:
        raise StudyError(str(e)) from None


def spaces() -> dict[str, str]:
    """The shipped space files: name -> the question each answers."""
    from rsb_tune.space import shipped_spaces

    return {name: question for name, (_, question) in shipped_spaces().items()}

