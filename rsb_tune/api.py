"""The Python API: plan, run, resume, load and list studies. The command line is a thin layer
over these functions; every check lives here, so a notebook gets the same errors as a shell.

    import rsb_tune
    study = rsb_tune.seeds(n=4, recipe="A2", epochs=2)     # runs, then returns the Study
    study.trials.val_top1.mean()
    study.status()                                          # counts, best and mean so far
    rsb_tune.grid("lamb_bce", epochs=1)                     # a shipped space, by name
    rsb_tune.resume("seeds-A2-20261201-101502", cpus_per_trial=2)
    rsb_tune.load("seeds-A2-20261201-101502").report()
    rsb_tune.seeds(200, "A2", until="halfwidth<=0.3")      # sequential: stops when the anytime interval is narrow
    rsb_tune.ab(100, "A2", "A3", delta=0.2)                 # A against B on the same seeds, until decided
    rsb_tune.seeds_needed_table("seeds-A2-20261201-101502")  # how many seeds a question needs
    rsb_tune.finetune("seeds-A2-20261201-101502")           # each trial's weights fine-tuned on digits-parity

Experiment arguments (what is trained: ``data``, ``model``, ``epochs``, ``batch_size``,
``workers_per_trial``, ``overrides``) go into the study's plan. Run options (see
:class:`rsb_tune.options.RunOptions`: CPUs, GPUs, concurrency, address, tracking) do not.
Studies live in ``storage``: a directory or an object-store URI, by default
``$RSB_TUNE_STORAGE`` when set, else ``./rsb-results`` (:func:`rsb_tune.options.default_storage`,
read at each call). Bad input raises :class:`rsb_tune.errors.UserError` before anything is
written; its message names arguments as the caller spells them (:func:`rsb_tune.errors.arg`:
``storage=`` here, ``--storage`` when the CLI prints it, with exit code 2).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from analysis import contract as C
from rsb_tune.runner import lifecycle
from rsb_tune._log import logger
from rsb_tune.errors import ConfigError, StudyError, UserError, arg
from rsb_tune.runner.executor import get_executor
from rsb_tune.options import MAX_TRIALS, default_storage, run_options
from rsb_tune.planning.recipes import DEFAULT_RECIPE
from rsb_tune.store.manifest import data_configs
from rsb_tune.store.status import StudyStatus, read_status, stopping_line
from rsb_tune.planning.study_plan import EXPERIMENT, PairedPlan, StudyPlan, plan_ab, plan_grid, plan_seeds
from rsb_tune.runner import driver
from rsb_tune.store.directory import StudyDir

if TYPE_CHECKING:
    import analysis

__all__ = ["import_results", "seeds", "grid", "plan_seeds", "plan_grid", "start", "resume", "load", "list_studies", "newest_study", "Study", "StudyPlan", "StudyStatus", "compare", "spaces", "ab", "plan_ab", "start_ab", "PairedPlan", "PairedResult", "seeds_needed_table", "finetune", "plan_finetune"]


# --------------------------------------------------------------------------- planning


# --------------------------------------------------------------------------- running


def _storage(storage: str | None) -> str:
    """``storage``, or the default one (:func:`rsb_tune.options.default_storage`) when None."""
    return default_storage() if storage is None else storage


def _split(kwargs: Mapping[str, Any]) -> tuple[dict, dict]:
    """Keyword arguments -> (experiment arguments, run options)."""
    experiment = {k: v for k, v in kwargs.items() if k in EXPERIMENT}
    options = {k: v for k, v in kwargs.items() if k not in EXPERIMENT}
    return experiment, options


def _own(trainer, trainer_cmd, config) -> dict[str, Any]:
    """The own-trainer arguments that were given (seeds, grid and ab take the same three)."""
    return {k: v for k, v in (("trainer", trainer), ("trainer_cmd", trainer_cmd), ("config", config)) if v is not None}


def _recorded(own: dict[str, Any], trainer: Mapping[str, Any] | None) -> dict[str, Any]:
    """``own`` for the study's command line: the trainer as the plan recorded it (a function's
    ``module:function``), not the object passed."""
    if trainer is None:
        return own
    return {**own, **{k: trainer[k] for k in ("trainer",) if k in trainer}}


def seeds(n: int = 100, recipe: str = DEFAULT_RECIPE, *, seed_start: int = 0, until: str | None = None, level: float | None = None, metric: str | None = None, method: str | None = None, trainer=None, trainer_cmd: str | None = None, config: Mapping[str, Any] | None = None, storage: str | None = None, name: str | None = None, max_trials: int = MAX_TRIALS, **kwargs) -> "Study":
    """Run ``recipe`` under ``n`` seeds (the paper's 100-seed study of A2 by default) and return
    the finished :class:`Study`. ``kwargs``: experiment arguments (``epochs=2``, ``model=...``,
    ``overrides={"drop_path": 0.05}``) and run options (``cpus_per_trial=2``, ...).
    ``until="halfwidth<=0.25"``: a sequential study capped at ``n`` seeds (see :func:`plan_seeds`).
    ``trainer=my_train`` (a function ``train(config, report)`` or ``"module:function"``) or
    ``trainer_cmd="python train.py --seed {seed}"``: your own training code under ``n`` seeds,
    each with ``config`` and its seeds (docs/own-trainer.md)."""
    experiment, options = _split(kwargs)
    run_options(options)  # a misspelled option fails before the plan is made
    rule = dict(until=until, level=level, metric=metric, method=method)
    own = _own(trainer, trainer_cmd, config)
    plan = plan_seeds(n, recipe, seed_start=seed_start, max_trials=max_trials, **rule, **own, **experiment)
    own = _recorded(own, plan.trainer)
    command = _python_call("seeds", n=n, recipe=None if plan.trainer else recipe, seed_start=seed_start or None, **rule, **own, name=name, **experiment)
    return start(plan, storage=storage, name=name, command=command, **options)


def grid(space: str | Path = "lamb_bce", *, n: int | None = None, trainer=None, trainer_cmd: str | None = None, config: Mapping[str, Any] | None = None, storage: str | None = None, name: str | None = None, max_trials: int = MAX_TRIALS, **kwargs) -> "Study":
    """Run the grid (or search) of ``space`` (a path, or a shipped space's name) and return the
    finished :class:`Study`; ``n``: seeds per grid point instead of the space's. ``trainer``/``trainer_cmd``/``config``: as for :func:`seeds`, over
    the grid of a space file for your own trainer (docs/own-trainer.md). A space of more than
    ``max_trials`` trials is refused before anything is expanded."""
    experiment, options = _split(kwargs)
    run_options(options)
    own = _own(trainer, trainer_cmd, config)
    plan = plan_grid(space, n=n, max_trials=max_trials, **own, **experiment)
    own = _recorded(own, plan.trainer)
    return start(plan, storage=storage, name=name, command=_python_call("grid", space=str(space), n=n, **own, name=name, **experiment), **options)


def plan_finetune(source: str, *, dataset: str | None = None, storage: str | None = None, **experiment) -> StudyPlan:
    """Plan the fine-tune of study ``source`` on ``dataset`` (default: its dataset's transfer
    target, ``digits-parity`` for digits): trial i starts from source trial i's final weights
    with a new head (see :mod:`rsb_tune.planning.finetune`). A source that is missing or has no
    ok trial with its final checkpoint is a :class:`StudyError`."""
    from rsb_tune.planning import finetune as ft
    from rsb_tune.runner.evaluation import final_checkpoints
    from rsb_tune.store.tables import build_tables

    study = StudyDir(_storage(storage), source).require()
    trials, _ = build_tables(study)
    ok = [] if trials.empty else list(trials.loc[trials["status"] == C.OK, "trial_id"])
    plan = study.plan()
    finals = final_checkpoints(study, sorted(ok))
    where = study.location.uri if study.mirror else lambda path: str(Path(path).resolve())  # a store's: read by each trial from there
    sources = {tid: ft.SourceTrial(plan[tid], where(path)) for tid, path in finals.items() if path is not None}
    if not sources:
        raise StudyError(f"{arg('source', source, flag='--from')}: study {source!r} has no ok trial with its final checkpoint to fine-tune from")
    return ft.plan_finetune(source, sources, dataset=dataset, **experiment)


def finetune(source: str, *, dataset: str | None = None, storage: str | None = None, name: str | None = None, **kwargs) -> "Study":
    """Fine-tune every ok trial of study ``source`` on ``dataset`` (:func:`plan_finetune`) as a
    new study of kind ``finetune`` in the same ``storage``, run it and return it. ``kwargs``:
    experiment arguments (``epochs=1``, ``overrides={...}``) and run options."""
    experiment, options = _split(kwargs)
    run_options(options)
    plan = plan_finetune(source, dataset=dataset, storage=storage, **experiment)
    command = _python_call("finetune", source=source, dataset=dataset, name=name, **experiment)
    return start(plan, storage=storage, name=name, command=command, **options)


def _python_call(fn: str, **kwargs) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if v is not None)
    return f"rsb_tune.{fn}({args})"


def start(plan: StudyPlan, *, storage: str | None = None, name: str | None = None, command: str | None = None, **options) -> "Study":
    """Create the study of ``plan`` in ``storage`` and run it; the same plan under an existing
    name resumes that study. Returns the :class:`Study` once its run ends."""
    from rsb_tune.store.backends import check_writable, locate
    from rsb_tune.store.directory import check_name, default_name

    if name is not None:
        check_name(name)
    if not isinstance(plan.trials, dict) and plan.plan.resolver is None:
        raise ConfigError("this plan was made with lazy=True, to describe it (a dry run); plan it again without lazy= to run it")
    opts = run_options(options)
    location = locate(_storage(storage))
    check_writable(location)
    get_executor(opts.executor).check(opts)
    if plan.space is not None and plan.space.scheduler:
        logger.warning(
            "`scheduler: asha` stops trials on intermediate epochs, while the paper selects on the "
            "final checkpoint only; early-stopped trials get status 'stopped' and their metrics are from fewer epochs"
        )
    plan = driver.packs_resolved(plan, opts)
    study = StudyDir(location, default_name(plan.kind, plan.label) if name is None else name)
    stopping = plan.stopping.record() if plan.stopping is not None else None
    study, data, lock = driver.open_study(plan, study, command, stopping, opts)
    with lock:  # held from creation to the end of the run: one driver per study
        return _finished(study, driver.run(study, data, opts, locked=True))


def _finished(study: StudyDir, status: StudyStatus) -> "Study":
    """The study of a run that ended, its summary logged (also when quiet: there was no progress)."""
    logger.info("\n".join(status.summary(default_storage())))
    return Study(study)


def resume(name: str, *, storage: str | None = None, **options) -> "Study":
    """Continue a study whose driver stopped: finished trials are kept, unfinished ones continue
    from their last checkpoint, the rest start. Run options may differ from the first run's."""
    from rsb_tune.data.registry import load_study_data

    from rsb_tune.sequential.engine import paired_rule_of

    opts = run_options(options)
    storage = _storage(storage)
    if not StudyDir(storage, name).exists() and StudyDir(storage, f"{name}-a").exists():
        name = f"{name}-a"  # the name of a paired study: continue both arms
    study = StudyDir(storage, name).require()
    lifecycle.check_format(study, study.meta())
    _check_resumable(study.meta())
    driver.check_logs(study)  # before the data is loaded: a lost log is one line at once
    get_executor(opts.executor).check(opts)
    if paired_rule_of(study.meta()) is not None:
        return _paired_result(*driver.resume_pair(study, opts))
    data = load_study_data(data_configs(study.meta()))
    return _finished(study, driver.run(study, data, opts))


def _check_resumable(meta: Mapping[str, Any]) -> None:
    """An imported study has nothing to run; a study of your own trainer needs it importable."""
    if meta.get("imported"):
        raise StudyError(f"study {meta.get('name')!r} was imported from {meta.get('imported')}: it has no plan to run, nothing to resume")
    if meta.get("trainer"):
        from rsb_tune.training.custom import load_trainer

        load_trainer(meta["trainer"])


def import_results(results, *, name: str, storage: str | None = None, metric: str | None = None, mode: str | None = None, config=()) -> list["Study"]:
    """Results made elsewhere as studies every command reads (docs/own-trainer.md): ``results``
    is a DataFrame or the path of a .csv, .tsv, .parquet or .jsonl file, one row per seed (or
    per seed and epoch) with a ``seed`` column and metric columns; optional ``arm`` (one study
    per arm, ``NAME-ARM``), ``task``, ``epoch`` and config keys (text and boolean columns, and
    the numeric ones named in ``config``). ``metric``: the one the studies follow (default
    val_top1 when it is a column, else the first numeric one). Returns the studies written."""
    from rsb_tune.runner.imported import import_results as write, read_results

    source = "DataFrame"
    if isinstance(results, (str, Path)):
        source, results = str(results), read_results(results)
    command = _python_call("import_results", results=source, name=name, metric=metric, mode=mode, config=list(config) or None)
    return [Study(d) for d in write(results, name=name, storage=_storage(storage), metric=metric, mode=mode, config=config, source=source, command=command)]


# --------------------------------------------------------------------------- A against B until decided


@dataclasses.dataclass(frozen=True)
class PairedResult:
    """A finished paired study: its two arms (ordinary studies) and the verdict."""

    a: "Study"
    b: "Study"
    decision: Any  # rsb_tune.sequential.rule.Decision of mean(a - b)

    @property
    def verdict(self) -> str:
        """``a_better``, ``b_better``, ``equivalent``, ``cap`` or ``continue``."""
        return self.decision.reason

    @property
    def exit_code(self) -> int:
        """0 when both arms ran every seed they needed without failures, else 1."""
        return max(self.a.status().exit_code, self.b.status().exit_code)

    def lines(self) -> list[str]:
        return [f"A vs B: {self.a.name} against {self.b.name}", "  " + stopping_line(self.a.meta.get("stopping") or {})]


def ab(n: int = 100, recipe: str = DEFAULT_RECIPE, vs_recipe: str | None = None, *, delta: float | None = None, level: float | None = None, metric: str | None = None, method: str | None = None, seed_start: int = 0, vs_overrides=None, trainer=None, trainer_cmd: str | None = None, config: Mapping[str, Any] | None = None, storage: str | None = None, name: str | None = None, max_trials: int = MAX_TRIALS, **kwargs) -> PairedResult:
    """Run A against B on the same seeds until the anytime interval of mean(a - b) excludes 0
    (one is better) or lies inside +-``delta`` (equivalent), or ``n`` seeds (the cap). The arms
    are ordinary seed studies ``NAME-a`` and ``NAME-b``, run in rounds: each round runs the next
    batch (``max_concurrent``, else the CPUs over ``cpus_per_trial``; the first round: the
    rule's least n) of seeds of arm a, then of arm b, and decides on the seeds finished in both."""
    experiment, options = _split(kwargs)
    run_options(options)
    rule_args = dict(delta=delta, level=level, metric=metric, method=method)
    own = _own(trainer, trainer_cmd, config)
    paired = plan_ab(n, recipe, vs_recipe, seed_start=seed_start, vs_overrides=vs_overrides, max_trials=max_trials, **rule_args, **own, **experiment)
    own = _recorded(own, paired.a.trainer)
    command = _python_call("ab", n=n, recipe=None if paired.a.trainer else recipe, vs_recipe=vs_recipe, seed_start=seed_start or None, vs_overrides=vs_overrides, **rule_args, **own, name=name, **experiment)
    return start_ab(paired, storage=storage, name=name, command=command, **options)


def _paired_result(a: StudyDir, b: StudyDir, decision) -> PairedResult:
    result = PairedResult(Study(a), Study(b), decision)
    logger.info("\n".join([*result.a.status().summary(default_storage())[:2], *result.b.status().summary(default_storage())[:2], *result.lines()]))
    return result


def start_ab(paired: PairedPlan, *, storage: str | None = None, name: str | None = None, command: str | None = None, **options) -> PairedResult:
    """Create (or continue) the two arms of ``paired`` and run them until decided."""
    from rsb_tune.sequential.engine import paired_record
    from rsb_tune.store.backends import check_writable, locate
    from rsb_tune.store.directory import check_name, default_name

    if name is not None:
        check_name(name)
    opts = run_options(options)
    location = locate(_storage(storage))
    check_writable(location)
    get_executor(opts.executor).check(opts)
    pair = default_name("ab", f"{paired.a.label}-vs-{paired.b.label}") if name is None else name
    names = {"a": f"{pair}-a", "b": f"{pair}-b"}
    opened = []
    try:
        for arm, plan, other in (("a", paired.a, "b"), ("b", paired.b, "a")):
            record = paired_record(paired.rule, arm=arm, other=names[other], pair=pair)
            opened.append(driver.open_study(plan, StudyDir(location, names[arm]), command or driver.command_line(), record, opts))
        return _paired_result(opened[0][0], opened[1][0], driver.run_pair(opened, paired.rule, opts))
    finally:
        for _, _, lock in opened:
            lock.release()


# --------------------------------------------------------------------------- reading


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
    directory = property(lambda self: self._dir, doc="the study's files (rsb_tune.store.directory.StudyDir)")

    @property
    def meta(self) -> dict[str, Any]:
        """study.yaml: command, kind, recipe, metric, the resolved base config and its sources, versions."""
        return self._dir.meta()

    @property
    def config(self) -> dict[str, Any]:
        """The resolved base config (every trial is this with its seed and grid point)."""
        return dict(self.meta.get("base_config") or {})

    @property
    def resolved_config(self):
        """The base config with the source of each value (:class:`rsb_tune.planning.config.ResolvedConfig`;
        a source not recorded in study.yaml is ``unknown``)."""
        from rsb_tune.planning.config import UNKNOWN_SOURCE, ResolvedConfig

        meta = self.meta
        values, sources = dict(meta.get("base_config") or {}), meta.get("base_config_sources") or {}
        return ResolvedConfig(values, {k: sources.get(k, UNKNOWN_SOURCE) for k in values})

    @property
    def plan(self) -> dict[str, dict[str, Any]]:
        """Every trial's resolved config (a search's: those sampled so far)."""
        return self._dir.plan()

    @property
    def trials(self):
        """One row per finished trial (pandas DataFrame; the columns of ``trials.parquet``, docs/getting-started.md)."""
        return self._tables()[0]

    @property
    def epochs(self):
        """One row per trial and epoch (pandas DataFrame)."""
        return self._tables()[1]

    def _tables(self):
        import pandas as pd

        if self._dir.trials_path.exists() and self._dir.epochs_path.exists():
            trials_path, epochs_path = self._dir.confined(self._dir.trials_path), self._dir.confined(self._dir.epochs_path)
            try:
                # through one open file each: pandas opens a path twice (schema, then data), and
                # a table rewritten in between (os.replace) would be read half old, half new
                with open(trials_path, "rb") as t, open(epochs_path, "rb") as e:
                    return pd.read_parquet(t), pd.read_parquet(e)
            except Exception as e:  # a corrupt table: pyarrow raises several unrelated types
                raise StudyError(f"{self._dir.dir}: cannot read its tables ({type(e).__name__}: {e})") from None
        from rsb_tune.store.tables import build_tables

        return build_tables(self._dir)  # not written yet: built from the event logs

    def status(self) -> StudyStatus:
        """Where the study stands (:func:`rsb_tune.store.status.read_status`: the one status that
        the CLI, the browser and the report show)."""
        return read_status(self._dir)

    @property
    def evals(self):
        """The re-scored trials (``evals.parquet``, see :meth:`evaluate`): one row per trial x
        setting x test set (pandas DataFrame; empty before the first evaluation)."""
        from rsb_tune.store.evals import read_evals

        return read_evals(self._dir)

    def evaluate(self, *, test_sizes=(), crop_pcts=(), splits=("val",), test_sets=(), labels: str | None = None, **options):
        """Re-score every ok trial's final weights (loaded as data only) at each test size x
        crop ratio (default: the trial's own) on each test set: ``splits`` of the study
        (``"val"``, ``"v2"``), ``test_sets`` (``{"name": path}`` or ``"NAME=PATH"`` strings: a
        ``*_data.npy``/``*_labels.npy`` pair or a folder of class folders) and, with ``labels``
        (a JSON list of label lists per val image, as ImageNet-ReaL's real.json), the multi-label
        set ``real``. Runs through the executor of ``options`` (run options: ``executor``,
        ``cpus_per_trial``, ``gpus_per_trial``, ...), adds the rows to ``evals.parquet`` and
        returns the whole table; what is there already is not evaluated again (a killed
        evaluation resumes). A trial that could not be evaluated is a :class:`StudyError` after
        the others are written."""
        from rsb_tune.runner.evaluation import eval_grid, evaluate_study

        grid = eval_grid(test_sizes=test_sizes, crop_pcts=crop_pcts, splits=splits, test_sets=test_sets, labels=labels)
        _, failed = evaluate_study(self._dir, grid, run_options(options))
        if failed:
            tid, why = next(iter(failed.items()))
            raise StudyError(f"study {self.name}: {len(failed)} trial(s) not evaluated ({tid}: {why}); the others are in {C.EVALS}")
        return self.evals

    def tables(self):
        """The study as :class:`analysis.StudyTables` (statistics and figures)."""
        import analysis

        try:
            return analysis.load_study(self.path)
        except analysis.StudyError as e:  # analysis's own error: here a user error, as every study error
            raise StudyError(str(e)) from None

    def factorial(self, *, factors: Sequence[str] | None = None, metric: str | None = None, **options: Any):
        """The analysis of a crossed study (:func:`analysis.factorial.factorial_analysis` on its
        trials): the cell table, the two-way ANOVA, the 2 x 2 interaction with its interval, the
        ranking-flip verdict (``.sentence``), Holm's pairwise comparisons. ``factors``: ``(arm,
        condition)``, by default the two keys the grid varies; ``metric``: the study's. A study
        that does not cross two factors: a user error naming what it varies."""
        from analysis.factorial import factorial_analysis

        meta = self.meta
        try:
            return factorial_analysis(
                self.trials, factors=factors, params=meta.get("params") or None, metric=metric or meta.get("metric"),
                mode=None if metric else meta.get("mode"), **options,
            )
        except ValueError as e:
            raise UserError(f"study {self.name}: {e}") from None

    def transfer(self, *, metric: str | None = None):
        """A fine-tune study's transfer table (:func:`analysis.transfer_table` on its trials, as
        the report and the browser show it): one row per source recipe x target dataset with the
        mean over the seeds, its t-interval and the rank. Its source: ``meta["finetune_from"]``.
        Any other kind of study, or one with no ok trial yet: a user error."""
        from analysis.evals import transfer_table

        meta = self.meta
        if meta.get("kind") != "finetune":
            raise UserError(f"study {self.name}: not a fine-tune (kind {meta.get('kind')}); start one with rsb-tune finetune --from {self.name}")
        try:
            return transfer_table(self.trials, metric=metric or meta.get("metric", "val_top1"))
        except ValueError as e:
            raise UserError(f"study {self.name}: {e}") from None

    def report(self, out: str | Path | None = None) -> Path:
        """Write figures, summary.json/md and index.html (default ``<study>/report``); an
        object-store study's report is uploaded next to it. Returns the report's folder."""
        from analysis.report import REPORT_DIR, write_report

        _check_out(out)
        if out is None:  # <study>/report: never written through a link leading out of the study
            self._dir.confined(self.path / REPORT_DIR)
        try:
            written = Path(write_report(self.path, out))
        except ValueError as e:  # analysis's errors and bad tables carry a message
            raise StudyError(str(e)) from None
        if self._dir.mirror and written.resolve().is_relative_to(self.path.resolve()):
            self._dir.sync(only=written)
        return written


def _check_out(out: str | Path | None) -> None:
    """A report's folder ``out`` may be new or a directory; an existing file is refused."""
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise UserError(f"{arg('out', str(out))}: exists and is not a directory; name a new or existing folder")


def load(name: str, storage: str | None = None) -> Study:
    """The study ``name`` in ``storage`` (default: ``$RSB_TUNE_STORAGE``, else ``./rsb-results``;
    an object-store study is downloaded, checkpoints aside)."""
    return Study(StudyDir(_storage(storage), name).require())


def list_studies(storage: str | None = None, *, kind: str | None = None) -> list[Study]:
    """Every study in ``storage`` (default: ``$RSB_TUNE_STORAGE``, else ``./rsb-results``),
    newest first; with ``kind`` (``"seeds"`` or ``"grid"``), only the studies of that kind. A
    study whose manifest or plan is damaged is listed last (without ``kind``): its ``status()``
    is ``damaged`` and names the file, and reading its files raises :class:`StudyError`. A
    directory that does not exist is a :class:`StudyError` naming it (an object-store prefix
    without studies lists none)."""
    import pyarrow.fs

    from rsb_tune.store.backends import check_listable, locate, one_line
    from rsb_tune.store.directory import is_name

    location = locate(_storage(storage))
    check_listable(location)
    if location.remote:
        try:
            infos = location.fs.get_file_info(pyarrow.fs.FileSelector(location.fs_root, allow_not_found=True))
        except OSError as e:
            raise StudyError(f"{location.display()}: cannot list it ({one_line(e)})") from None
        names = [Path(i.path).name for i in infos if i.type == pyarrow.fs.FileType.Directory]
        names = [n for n in names if location.fs.get_file_info(f"{location.fs_root}/{n}/{C.MANIFEST}").type == pyarrow.fs.FileType.File]
    else:
        names = [p.name for p in location.root.iterdir() if (p / C.MANIFEST).is_file()]
    out, damaged = [], []
    for n in names:
        try:
            study = load(n, location)
        except StudyError:
            if is_name(n):  # its manifest or plan is damaged: listed, its status says what is wrong
                damaged.append(Study(StudyDir(location, n)))
            continue  # else a name this version does not accept
        if kind is None or study.meta.get("kind") == kind:
            out.append(study)
    out.sort(key=lambda s: str(s.meta.get("started_at") or ""), reverse=True)
    return out + (sorted(damaged, key=lambda s: s.name) if kind is None else [])


_MAKE_ONE = {"seeds": "rsb-tune seeds --n 100 --recipe A2", "grid": "rsb-tune grid --space lamb_bce"}


def newest_study(kind: str | None = None, storage: str | None = None) -> Study:
    """The newest study (of ``kind``: ``"seeds"`` or ``"grid"``) in ``storage`` that has a
    finished trial: what a notebook opens on by default. None there (or no such directory) is a
    :class:`StudyError` saying how to make one."""
    storage = _storage(storage)
    try:
        found = next((s for s in list_studies(storage, kind=kind) if _has_trials(s)), None)
    except StudyError:  # no such directory: no study either
        found = None
    if found is None:
        what = f"{kind} study" if kind else "study"
        make = _MAKE_ONE.get(kind or "seeds")
        raise StudyError(
            f"no {what} with a finished trial in {storage}: make one with `{make}` in the project's root, "
            "or set RSB_TUNE_STORAGE to the storage that holds yours (RSB_STUDY: one study's directory)"
        )
    return found


def _has_trials(study: Study) -> bool:
    """Whether ``study`` has a finished trial (a damaged study has none to show)."""
    try:
        return len(study.trials) > 0
    except StudyError:
        return False


def compare(name_a: str, name_b: str, *, storage: str | None = None, out: str | Path | None = None, metric: str | None = None, keys=()) -> "analysis.Comparison":
    """Is A really better than B? Compares study ``name_a`` against ``name_b`` on ``metric``
    (default: A's), writes the comparison report (default ``<storage>/compare-A-vs-B``) and
    returns the answer, an :class:`analysis.Comparison`: the difference of the means (A - B)
    with its 95 % Welch t-interval, P(A > B) over seed pairs, the decision (``"A better"``,
    ``"B better"``, ``"no difference shown"`` or ``"no interval"``), the config keys that differ,
    the warnings, and ``report``, the report's folder; ``str()`` of it is the one-line verdict.

    ``keys``: the config keys the studies are meant to differ in. Besides them, the recipe
    (when the recipes differ) and what follows from the compared keys may differ; any other
    difference of the two studies' resolved base configs (``epochs`` set by ``epochs=``, the
    dataset, the model, ...) is warned about (see :func:`analysis.compare_studies`)."""
    from analysis import compare_studies
    from analysis.report import write_compare_report
    from rsb_tune.errors import suggest
    from rsb_tune.planning.config import FIELDS, differences

    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    unknown = [k for k in keys if k not in FIELDS]
    if unknown:
        raise ConfigError(f"{arg('keys', flag='--key')}: unknown config key {unknown[0]!r}{suggest(unknown[0], FIELDS)} (see `rsb-tune keys`)")
    a, b = load(name_a, storage), load(name_b, storage)
    out = out or a.directory.storage / f"compare-{a.name}-vs-{b.name}"
    _check_out(out)
    try:
        result = compare_studies(a.path, b.path, metric=metric, keys=keys, differences=differences(a.resolved_config, b.resolved_config, keys))
        report = Path(write_compare_report(a.path, b.path, out, comparison=result))
    except ValueError as e:  # analysis's errors and bad tables carry a message
        raise StudyError(str(e)) from None
    return dataclasses.replace(result, report=report)


def seeds_needed_table(name: str, *, halfwidths=(0.25, 0.3, 0.5), deltas=(0.25, 0.5, 1.0), vs: str | None = None, metric: str | None = None, storage: str | None = None, n_sim: int = 2000):
    """How many seeds a question needs, from a finished study's seed std and its test set's
    noise floor (:func:`analysis.seeds_needed_table`): per half-width of the mean's interval,
    and per difference delta to detect with power 0.8 at alpha 0.05, for independent and
    paired arms. ``vs``: a second study on the same seeds, whose paired differences give the
    paired arms' std (else sigma * sqrt(2), no gain from pairing assumed). A grid's sigma is
    the seeds' std within its cells, pooled (``table.attrs["spread"]`` says which)."""
    import analysis

    for what, values in ((arg("halfwidths", flag="--halfwidth"), halfwidths), (arg("deltas", flag="--delta"), deltas)):
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0]
        if bad:
            raise ConfigError(f"{what}: must be finite numbers > 0, got {bad[0]!r}")
    study = load(name, storage)
    metric = metric or study.meta.get("metric", C.DEFAULT_METRIC)
    trials = study.trials
    if metric not in trials.columns:
        raise ConfigError(f"{arg('metric', metric)}: not a column of {name}'s trials")
    ok = trials[(trials["status"] == C.OK) & trials[metric].notna()]
    if len(ok) < 2:
        raise StudyError(f"study {name!r} has {len(ok)} ok trial(s) with {metric}: the seeds' std needs at least 2")
    sigma, spread = float(ok[metric].std(ddof=1)), "over the seeds"
    params = [p for p in study.meta.get("params") or [] if isinstance(p, str) and p in ok.columns]
    if params:  # a grid: the seeds' std within each cell, pooled (the cells' differences are not seed noise)
        cells = ok.groupby([ok[p].astype(str) for p in params])[metric]
        dof = cells.count() - 1
        if (dof > 0).any():
            sigma = math.sqrt(float((cells.var(ddof=1).fillna(0.0) * dof.clip(lower=0)).sum() / dof.clip(lower=0).sum()))
            spread = f"within the {len(dof)} cells of {' x '.join(params)}, pooled"
    if not sigma > 0:
        raise StudyError(f"study {name!r}: {metric} does not vary over its seeds (std 0): nothing to plan")
    try:
        floor = float(analysis.test_set_noise(trials, metric)["binomial_std"])
    except ValueError:
        floor = None  # no test-set size for this metric
    paired_sigma = None
    if vs is not None:
        other = load(vs, storage).trials
        other = other[(other["status"] == C.OK) & other[metric].notna()]
        both = ok[["seed", metric]].merge(other[["seed", metric]], on="seed", suffixes=("_a", "_b"))
        if len(both) < 2:
            raise StudyError(f"studies {name!r} and {vs!r} share {len(both)} ok seed(s): paired differences need at least 2")
        paired_sigma = float((both[f"{metric}_a"] - both[f"{metric}_b"]).std(ddof=1))
    table = analysis.seeds_needed_table(sigma, halfwidths=tuple(halfwidths), deltas=tuple(deltas), paired_sigma=paired_sigma, noise_floor=floor, n_sim=n_sim)
    table.attrs.update(study=name, metric=metric, n_seeds=len(ok), vs=vs, spread=spread)
    return table


def spaces() -> dict[str, str]:
    """The shipped space files: name -> the question each answers."""
    from rsb_tune.planning.space import shipped_spaces

    return {name: question for name, (_, question) in shipped_spaces().items()}

