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
import sys
from pathlib import Path
from typing import Any, Mapping

from analysis import contract as C
from rsb_tune.runner import lifecycle
from rsb_tune._log import logger
from rsb_tune.errors import ConfigError, Interrupted, StudyError, UserError, arg
from rsb_tune.runner.executor import get_executor
from rsb_tune.options import RunOptions, default_storage, run_options
from rsb_tune.planning.recipes import DEFAULT_RECIPE
from rsb_tune.store.manifest import data_configs
from rsb_tune.store.status import StudyStatus, stopping_line
from rsb_tune.store.directory import StudyDir

__all__ = ["seeds", "grid", "plan_seeds", "plan_grid", "start", "resume", "load", "list_studies", "newest_study", "Study", "StudyPlan", "StudyStatus", "compare", "spaces", "ab", "plan_ab", "start_ab", "PairedPlan", "PairedResult", "seeds_needed_table"]


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
    stopping: Any = None  # a sequential study's rule (rsb_tune.sequential.rule.StoppingRule), or None

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
        recipes, datasets = ", ".join(self.plan.values_of("recipe")), ", ".join(self.plan.values_of("dataset"))
        if self.stopping is not None:
            head = f"up to {len(self.trials)} trials, until {self.stopping.text} on {self.stopping.metric} ({self.stopping.method}, level {self.stopping.level:g}, at least {self.stopping.min_seeds} seeds) (seeds, recipe {recipes}, dataset {datasets})"
        elif self.plan.resolver is not None:
            head = f"search: optuna, {self.space.num_samples} trials sampled from " + ", ".join(f"{k} ~ {kind}{list(v)}" for k, (kind, v) in self.space.params.items())
        else:
            head = f"{len(self.trials)} trials ({self.kind}, recipe {recipes}, dataset {datasets}); varied: {', '.join(self.plan.params) or 'seed'}"
        from rsb_tune.planning.config import DATA_KEYS
        from rsb_tune.data.registry import data_summary, get_dataset, load_study_data

        data = load_study_data(self.plan.configs(DATA_KEYS), decode=False).splits.items()
        lines = [head, *(line for spec, splits in data for line in data_summary(get_dataset(dict(spec)["dataset"]), splits).splitlines()), "base config (key: value  # source):"]
        lines += [f"  {key}: {scalar(value)}  # {base.sources[key]}" for key, value in base.values.items()]
        if self.plan.resolver is None:
            lines.append("trials (each: the base config above with these keys changed):")
            for tid, cfg in self.trials.items():
                diff = {k: v for k, v in cfg.items() if base.values.get(k) != v}
                lines.append(f"  {tid}: {yaml.safe_dump(diff, default_flow_style=True, width=10**6).strip()}")
        return lines


def _experiment_layers(data=None, dataset=None, data_dir=None, model=None, epochs=None, batch_size=None, workers_per_trial=None, pack=None, overrides=None):
    """The command-line layers of the precedence chain, from experiment arguments."""
    from rsb_tune.planning.config import Layer, coerce, parse_set
    from rsb_tune.planning.config import dataset_layers

    layers = dataset_layers(data=None if data is None else str(data), dataset=dataset, data_dir=None if data_dir is None else str(data_dir))
    for flag, key, value in (("--model", "model", model), ("--epochs", "epochs", epochs), ("--batch-size", "batch_size", batch_size), ("--workers-per-trial", "workers_per_trial", workers_per_trial), ("--pack", "pack", pack)):
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
    from rsb_tune.planning.config import FIELDS

    dataset = FIELDS["dataset"].default
    for layer in layers:
        dataset = layer.values.get("dataset", dataset)
    return dataset


def plan_seeds(n: int = 100, recipe: str = DEFAULT_RECIPE, *, seed_start: int = 0, until: str | None = None, level: float | None = None, metric: str | None = None, method: str | None = None, **experiment) -> StudyPlan:
    """Plan a seed study: ``recipe`` under seeds ``seed_start .. seed_start + n - 1``.

    With ``until="halfwidth<=X"`` it is a sequential study: ``n`` is the cap, and seeds run in
    seed order until the anytime ``level`` interval (``method``; see :mod:`rsb_tune.sequential.rule`)
    of the mean of ``metric`` (val_top1 by default) is at most +-X wide."""
    from rsb_tune.planning.recipes import get_recipe
    from rsb_tune.planning.space import seed_list

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"{arg('n')} must be >= 1 (an integer), got {n!r}")
    from rsb_tune.planning import packs

    rule = _stopping_rule(until, n, level=level, metric=metric, method=method)
    seeds_ = seed_list({"start": seed_start, "n": n}, "--seed-start/--n")
    plan = _plan("seeds", get_recipe(recipe), seeds_, None, recipe, experiment)
    if rule is not None:
        packs.check(plan.trials.values(), unsupported="a sequential study (--until)")
    return dataclasses.replace(plan, stopping=rule)


def _stopping_rule(until, cap, **rule):
    """The validated ``--until`` rule (None without one; its options alone are refused)."""
    from rsb_tune.sequential import rule as stopping
    from rsb_tune.sequential.engine import SEQUENTIAL_METRICS

    if until is None:
        given = [arg(k) for k, v in rule.items() if v is not None]
        if given:
            raise ConfigError(f"{', '.join(given)}: only with {arg('until', 'halfwidth<=X')} (a sequential study)")
        return None
    return stopping.check_rule(until, cap=cap, metric=rule["metric"] or C.DEFAULT_METRIC, level=rule["level"], method=rule["method"], metrics=SEQUENTIAL_METRICS)


def plan_grid(space: str | Path = "lamb_bce", **experiment) -> StudyPlan:
    """Plan the grid (or search) of a space file: a path, or the name of a shipped space."""
    from rsb_tune.planning.recipes import get_recipe
    from rsb_tune.planning.space import find_space, load_space

    path = find_space(space)
    loaded = load_space(path)
    return _plan("grid", get_recipe(loaded.recipe), loaded.seeds, loaded, Path(path).stem, experiment)


def _plan(kind, recipe, seed_values, space, label, experiment) -> StudyPlan:
    from rsb_tune.data.registry import get_dataset
    from rsb_tune.planning.recipes import get_recipe
    from rsb_tune.planning.space import build_plan
    from rsb_tune.planning.validate import check_plan

    unknown = sorted(set(experiment) - _EXPERIMENT)
    if unknown:
        from rsb_tune.errors import suggest

        raise ConfigError(f"unknown argument {unknown[0]!r}{suggest(unknown[0], _EXPERIMENT)}; experiment arguments: {', '.join(sorted(_EXPERIMENT))}")
    layers = _experiment_layers(**experiment)
    spec = get_dataset(_dataset_of(layers))
    from rsb_tune.planning import packs

    plan = build_plan(recipe, spec.profile, seeds=seed_values, space=space, command_line=layers)
    recipe, spec = get_recipe(plan.base.values["recipe"]), get_dataset(plan.base.values["dataset"])  # as the layers named them
    check_plan(plan, space)
    unsupported = "a search" if plan.resolver is not None else "an early-stopped grid (scheduler: asha)" if space is not None and space.scheduler else None
    packs.check([plan.base.values, *plan.trials.values()], unsupported=unsupported)
    return StudyPlan(kind, recipe, spec, space, plan, str(label))


_EXPERIMENT = frozenset({"data", "dataset", "data_dir", "model", "epochs", "batch_size", "workers_per_trial", "pack", "overrides"})


# --------------------------------------------------------------------------- running


def _storage(storage: str | None) -> str:
    """``storage``, or the default one (:func:`rsb_tune.options.default_storage`) when None."""
    return default_storage() if storage is None else storage


def _split(kwargs: Mapping[str, Any]) -> tuple[dict, dict]:
    """Keyword arguments -> (experiment arguments, run options)."""
    experiment = {k: v for k, v in kwargs.items() if k in _EXPERIMENT}
    options = {k: v for k, v in kwargs.items() if k not in _EXPERIMENT}
    return experiment, options


def seeds(n: int = 100, recipe: str = DEFAULT_RECIPE, *, seed_start: int = 0, until: str | None = None, level: float | None = None, metric: str | None = None, method: str | None = None, storage: str | None = None, name: str | None = None, **kwargs) -> "Study":
    """Run ``recipe`` under ``n`` seeds (the paper's 100-seed study of A2 by default) and return
    the finished :class:`Study`. ``kwargs``: experiment arguments (``epochs=2``, ``model=...``,
    ``overrides={"drop_path": 0.05}``) and run options (``cpus_per_trial=2``, ...).
    ``until="halfwidth<=0.25"``: a sequential study capped at ``n`` seeds (see :func:`plan_seeds`)."""
    experiment, options = _split(kwargs)
    run_options(options)  # a misspelled option fails before the plan is made
    rule = dict(until=until, level=level, metric=metric, method=method)
    plan = plan_seeds(n, recipe, seed_start=seed_start, **rule, **experiment)
    command = _python_call("seeds", n=n, recipe=recipe, seed_start=seed_start or None, **rule, name=name, **experiment)
    return start(plan, storage=storage, name=name, command=command, **options)


def grid(space: str | Path = "lamb_bce", *, storage: str | None = None, name: str | None = None, **kwargs) -> "Study":
    """Run the grid (or search) of ``space`` (a path, or a shipped space's name) and return the
    finished :class:`Study`."""
    experiment, options = _split(kwargs)
    run_options(options)
    plan = plan_grid(space, **experiment)
    return start(plan, storage=storage, name=name, command=_python_call("grid", space=str(space), name=name, **experiment), **options)


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
    opts = run_options(options)
    location = locate(_storage(storage))
    check_writable(location)
    get_executor(opts.executor).check(opts)
    if plan.space is not None and plan.space.scheduler:
        logger.warning(
            "`scheduler: asha` stops trials on intermediate epochs, while the paper selects on the "
            "final checkpoint only; early-stopped trials get status 'stopped' and their metrics are from fewer epochs"
        )
    plan = _packs_resolved(plan, opts)
    study = StudyDir(location, default_name(plan.kind, plan.label) if name is None else name)
    stopping = plan.stopping.record() if plan.stopping is not None else None
    study, data, lock = _open(plan, study, command, stopping, opts)
    with lock:  # held from creation to the end of the run: one driver per study
        return _run(study, data, opts, locked=True)


def _packs_resolved(plan: StudyPlan, opts: RunOptions) -> StudyPlan:
    """``pack: auto`` made a number for where the trials run (see :mod:`rsb_tune.planning.packs`)."""
    from rsb_tune.planning import packs

    trials = packs.resolve_auto(plan.trials, gpus_per_trial=opts.gpus_per_trial)
    return dataclasses.replace(plan, plan=dataclasses.replace(plan.plan, trials=trials))


def _open(plan: StudyPlan, study: StudyDir, command: str | None, stopping: Mapping[str, Any] | None, opts: RunOptions):
    """(study, its data, its acquired lock): the study of ``plan`` created under ``study``'s
    name, or the existing one when its plan (and stopping rule) are the same."""
    from rsb_tune.planning.config import DATA_KEYS
    from rsb_tune.data.registry import load_study_data

    data = load_study_data(plan.plan.configs(DATA_KEYS))  # each dataset the trials name, once
    trials = lifecycle._jsonable(dict(plan.trials))
    if study.exists():
        _check_same_plan(study, trials, stopping)
        logger.info("study %r exists with the same plan: resuming it", study.name)
        return study, data, study.lock().acquire()
    manifest = lifecycle.build_manifest(kind=plan.kind, plan=plan.plan, space=plan.space, data=data, command=command or _command_line(), stopping=stopping)
    created = not study.dir.exists()
    study.dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = study.lock().acquire()
    except StudyError:
        if created and {p.name for p in study.dir.iterdir()} <= {".lock"}:
            import shutil

            shutil.rmtree(study.dir, ignore_errors=True)  # nothing of ours stays, nothing of another driver goes
        raise
    try:
        if study.exists():  # another driver created it between our check and the lock
            _check_same_plan(study, trials, stopping)
        else:
            lifecycle.create_study(study, manifest, trials)
    except BaseException:
        lock.release()
        raise
    until = f" (at most; until {plan.stopping.text})" if plan.stopping is not None else ""
    logger.info("study %s: %s trials%s -> %s", study.name, plan.planned, until, study.where)
    return study, data, lock


def _command_line() -> str:
    argv = sys.argv or [""]
    return " ".join(["rsb-tune", *argv[1:]]) if argv[0].endswith("rsb-tune") else " ".join(argv)


def _check_same_plan(study: StudyDir, trials: Mapping[str, Any], stopping: Mapping[str, Any] | None = None) -> None:
    recorded = study.require().meta().get("stopping") or {}
    if study.plan() != trials or _rule_keys(recorded) != _rule_keys(stopping or {}):
        raise StudyError(
            f"study {study.name!r} already exists in {study.location.display()} with a different plan; "
            f"continue it with `rsb-tune resume {study.name}` or pick another name"
        )


def _rule_keys(record: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a stopping record that defines the rule (not where the study stands)."""
    return {k: record.get(k) for k in ("rule", "cap", "metric", "level", "method", "bounds", "delta")} if record else {}


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
    get_executor(opts.executor).check(opts)
    if paired_rule_of(study.meta()) is not None:
        return _resume_pair(study, opts)
    data = load_study_data(data_configs(study.meta()))
    return _run(study, data, opts)


def _run(study: StudyDir, data, opts: RunOptions, locked: bool = False) -> "Study":
    if not locked:
        with study.lock():
            return _run(study, data, opts, locked=True)
    from rsb_tune.runner.loops import run_study
    from rsb_tune.store.directory import now_iso

    lifecycle.check_format(study, study.meta())
    study.update_meta(run_options=opts.recorded())
    try:
        run_study(study, data, opts, get_executor(opts.executor))
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
    logger.info("\n".join(status.summary(default_storage())))  # the result, also when quiet (no progress)
    return handle


# --------------------------------------------------------------------------- A against B until decided


@dataclasses.dataclass(frozen=True)
class PairedPlan:
    """Two validated seed studies on the same seeds, and the rule that decides between them."""

    a: StudyPlan
    b: StudyPlan
    rule: Any  # rsb_tune.sequential.rule.PairedRule

    def describe(self) -> list[str]:
        rule = self.rule
        head = [f"paired A vs B: up to {rule.cap} seeds per arm, until {rule.record()['rule']} ({rule.method}, level {rule.level:g}, at least {rule.min_seeds} seeds)"]
        return head + [f"arm {arm}: " + line for arm, plan in (("a", self.a), ("b", self.b)) for line in plan.describe()[:1]]


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


def plan_ab(n: int = 100, recipe: str = DEFAULT_RECIPE, vs_recipe: str | None = None, *, delta: float | None = None, level: float | None = None, metric: str | None = None, method: str | None = None, seed_start: int = 0, overrides=None, vs_overrides=None, **experiment) -> PairedPlan:
    """Plan a paired study: arm a is ``recipe`` with ``overrides``, arm b ``vs_recipe`` (default:
    the same recipe) with ``vs_overrides``, both on seeds ``seed_start .. seed_start + n - 1``
    and the other experiment arguments. Arms that differ in anything the recipes and overrides
    do not name are refused."""
    from rsb_tune.sequential import rule as stopping
    from rsb_tune.sequential.engine import SEQUENTIAL_METRICS, check_arms

    metric = metric or C.DEFAULT_METRIC
    rule = stopping.check_paired(cap=n, metric=metric, mode=C.default_mode(metric), delta=delta, level=level, method=method, metrics=SEQUENTIAL_METRICS)
    from rsb_tune.planning import packs

    a = plan_seeds(n, recipe, seed_start=seed_start, overrides=overrides, **experiment)
    b = plan_seeds(n, vs_recipe or recipe, seed_start=seed_start, overrides=vs_overrides, **experiment)
    packs.check([*a.trials.values(), *b.trials.values()], unsupported="a paired study (ab)")
    named = {arm: [k for layer in p.plan.layers if layer.source == "--set" for k in layer.values] for arm, p in (("a", a), ("b", b))}
    if a.trials == b.trials:
        raise ConfigError(f"the two arms are the same configuration; give {arg('vs_recipe')} or {arg('overrides', flag='--set')} / {arg('vs_overrides', flag='--vs-set')} that differ")
    check_arms(a.plan, b.plan, named)
    return PairedPlan(a, b, rule)


def ab(n: int = 100, recipe: str = DEFAULT_RECIPE, vs_recipe: str | None = None, *, delta: float | None = None, level: float | None = None, metric: str | None = None, method: str | None = None, seed_start: int = 0, vs_overrides=None, storage: str | None = None, name: str | None = None, **kwargs) -> PairedResult:
    """Run A against B on the same seeds until the anytime interval of mean(a - b) excludes 0
    (one is better) or lies inside +-``delta`` (equivalent), or ``n`` seeds (the cap). The arms
    are ordinary seed studies ``NAME-a`` and ``NAME-b``, run in rounds: each round runs the next
    batch (``max_concurrent``, else the CPUs over ``cpus_per_trial``; the first round: the
    rule's least n) of seeds of arm a, then of arm b, and decides on the seeds finished in both."""
    experiment, options = _split(kwargs)
    run_options(options)
    rule_args = dict(delta=delta, level=level, metric=metric, method=method)
    paired = plan_ab(n, recipe, vs_recipe, seed_start=seed_start, vs_overrides=vs_overrides, **rule_args, **experiment)
    command = _python_call("ab", n=n, recipe=recipe, vs_recipe=vs_recipe, seed_start=seed_start or None, vs_overrides=vs_overrides, **rule_args, name=name, **experiment)
    return start_ab(paired, storage=storage, name=name, command=command, **options)


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
            opened.append(_open(plan, StudyDir(location, names[arm]), command or _command_line(), record, opts))
        return _run_pair(opened, paired.rule, opts)
    finally:
        for _, _, lock in opened:
            lock.release()


def _run_pair(opened, rule, opts: RunOptions) -> PairedResult:
    """Rounds until the paired rule decides (the caller holds both arms' locks)."""
    import os

    from rsb_tune.sequential import engine as sequential
    from rsb_tune.runner.loops import run_trials
    from rsb_tune.store.directory import now_iso

    (a, data_a, _), (b, data_b, _) = opened
    for study in (a, b):
        lifecycle.check_format(study, study.meta())
        study.update_meta(run_options=opts.recorded())
    executor = get_executor(opts.executor)
    batch = opts.max_concurrent or max(1, int((os.cpu_count() or 1) // opts.cpus_per_trial))
    order = sequential.seed_order(a.plan())
    while True:
        decision = sequential.paired_decision(a, b, rule)
        for study in (a, b):
            lifecycle.record_stopping(study, decision)
        states = [sequential.statuses(a), sequential.statuses(b)]
        finished = {tid: all(s[tid] in C.FINISHED for s in states) for tid, _ in order}
        todo = [] if decision.stop else sequential.next_round(order, finished, batch, rule.min_seeds)
        if not todo:
            break
        try:
            for study, data in ((a, data_a), (b, data_b)):
                run_trials(study, data, opts, executor, todo)
        except KeyboardInterrupt:
            raise Interrupted(a.name) from None
        if not all(sequential.statuses(study)[tid] in C.FINISHED for study in (a, b) for tid in todo):
            raise Interrupted(a.name)  # Ray Tune returns early on a signal
    for study in (a, b):
        study.update_meta(ended_at=now_iso())
    result = PairedResult(Study(a), Study(b), decision)
    logger.info("\n".join([*result.a.status().summary(default_storage())[:2], *result.b.status().summary(default_storage())[:2], *result.lines()]))
    return result


def _resume_pair(study: StudyDir, opts: RunOptions) -> PairedResult:
    """Continue the paired study that ``study`` is an arm of (both arms, from their tables)."""
    from rsb_tune.data.registry import load_study_data
    from rsb_tune.sequential.engine import paired_rule_of

    meta = study.meta()
    rule = paired_rule_of(meta)
    arms = sorted([study, StudyDir(study.location, meta["stopping"]["other_arm"]).require()], key=lambda d: d.meta()["stopping"]["arm"])
    opened = []
    try:
        for arm in arms:
            opened.append((arm, load_study_data(data_configs(arm.meta())), arm.lock().acquire()))
        return _run_pair(opened, rule, opts)
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
            try:
                # through one open file each: pandas opens a path twice (schema, then data), and
                # a table rewritten in between (os.replace) would be read half old, half new
                with open(self._dir.trials_path, "rb") as t, open(self._dir.epochs_path, "rb") as e:
                    return pd.read_parquet(t), pd.read_parquet(e)
            except Exception as e:  # a corrupt table: pyarrow raises several unrelated types
                raise StudyError(f"{self._dir.dir}: cannot read its tables ({type(e).__name__}: {e})") from None
        from rsb_tune.store.tables import build_tables

        return build_tables(self._dir)  # not written yet: built from the event logs

    def status(self) -> StudyStatus:
        """Where the study stands (:func:`rsb_tune.store.study_status`: the one status that the
        CLI, the browser and the report show)."""
        from rsb_tune.sequential.engine import stopping_record
        from rsb_tune.store.backends import StudyLock
        from rsb_tune.store import Manifest, damage_line, damaged_status, read_events, study_status, trial_state

        try:
            meta, plan = self.meta, self.plan
        except StudyError as e:  # a damaged manifest or plan: the study's state says it
            return damaged_status(name=self.name, where=self.where, problem=str(e))
        states, damaged = {}, None
        for tid in plan:
            events = read_events(self._dir, tid)
            states[tid] = trial_state(events)[:2]
            damaged = damaged or damage_line(tid, events)
        return study_status(
            name=self.name, where=self.where, manifest=Manifest.of(meta), states=states,
            running_now=StudyLock(self._dir.dir / ".lock").held(), stopping=stopping_record(self._dir, meta), damaged=damaged,
        )  # fmt: skip

    def tables(self):
        """The study as :class:`analysis.StudyTables` (statistics and figures)."""
        import analysis

        try:
            return analysis.load_study(self.path)
        except analysis.StudyError as e:  # analysis's own error: here a user error, as every study error
            raise StudyError(str(e)) from None

    def report(self, out: str | Path | None = None) -> Path:
        """Write figures, summary.json/md and index.html (default ``<study>/report``); an
        object-store study's report is uploaded next to it. Returns the report's folder."""
        from analysis.report import write_report

        _check_out(out)
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
    paired arms' std (else sigma * sqrt(2), no gain from pairing assumed)."""
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
    sigma = float(ok[metric].std(ddof=1))
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
    table.attrs.update(study=name, metric=metric, n_seeds=len(ok), vs=vs)
    return table


def spaces() -> dict[str, str]:
    """The shipped space files: name -> the question each answers."""
    from rsb_tune.planning.space import shipped_spaces

    return {name: question for name, (_, question) in shipped_spaces().items()}

