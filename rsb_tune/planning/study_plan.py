"""A study's plan before it runs: what ``--dry-run`` shows and what the runner creates.

:func:`plan_seeds`, :func:`plan_grid` and :func:`plan_ab` turn the public functions' arguments
(a recipe and seeds, a space file, two arms; the experiment arguments: ``data``, ``model``,
``epochs``, ``batch_size``, ``workers_per_trial``, ``pack``, ``overrides``) into a validated
:class:`StudyPlan` (or :class:`PairedPlan`): every trial's resolved config through the one
precedence chain (:mod:`rsb_tune.planning.config`), checked against timm
(:mod:`rsb_tune.planning.validate`). Nothing is written and nothing runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any, Mapping

from analysis import contract as C
from rsb_tune.errors import ConfigError, arg
from rsb_tune.planning.limits import MAX_TRIALS, check_max_trials, check_size
from rsb_tune.planning.recipes import DEFAULT_RECIPE

__all__ = ["StudyPlan", "PairedPlan", "plan_seeds", "plan_grid", "plan_ab", "EXPERIMENT"]

_ALL, _SHOWN = 100, 5  # a lazy plan's dry run lists every trial up to _ALL, else its first _SHOWN


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
    lineage: Mapping[str, Any] | None = None  # a fine-tune's source (rsb_tune.planning.finetune), recorded in its manifest
    trainer: Mapping[str, Any] | None = None  # your own trainer: {"trainer": path} or {"trainer_cmd": text}, its metric and mode

    @property
    def trials(self) -> Mapping[str, Mapping[str, Any]]:
        return self.plan.trials

    @property
    def planned(self) -> int:
        return self.space.search_trials if self.plan.resolver is not None else len(self.plan.trials)

    def describe(self) -> list[str]:
        """What ``--dry-run`` prints: the count, the base config with the source of every value,
        and each trial as its difference from the base."""
        import yaml

        def scalar(v):
            return json.dumps(v) if isinstance(v, (dict, list)) or v is None else str(v)

        base = self.plan.base
        if self.trainer is not None:
            until = f", until {self.stopping.text}" if self.stopping is not None else ""
            lines = [f"{len(self.trials)} trials ({self.kind}{until}) of {self.trainer.get('trainer') or self.trainer.get('trainer_cmd')}, metric {self.trainer['metric']} ({self.trainer['mode']})", "config (key: value  # source):"]
            lines += [f"  {key}: {scalar(value)}  # {base.sources[key]}" for key, value in base.values.items()]
            return lines + [f"  {tid}: " + ", ".join(f"{k} {scalar(cfg[k])}" for k in ("seed", *self.plan.params)) for tid, cfg in self.trials.items()]
        recipes, datasets = ", ".join(self.plan.values_of("recipe")), ", ".join(self.plan.values_of("dataset"))
        if self.stopping is not None:
            head = f"up to {len(self.trials)} trials, until {self.stopping.text} on {self.stopping.metric} ({self.stopping.method}, level {self.stopping.level:g}, at least {self.stopping.min_seeds} seeds) (seeds, recipe {recipes}, dataset {datasets})"
        elif self.plan.resolver is not None:
            each = f" points x {len(self.space.seeds)} seeds (the sampler sees each point's mean)" if len(self.space.seeds) > 1 else " trials"
            head = f"search: optuna, {self.space.num_samples}{each} sampled from " + ", ".join(f"{k} ~ {kind}{list(v)}" for k, (kind, v) in self.space.params.items())
        else:
            head = f"{len(self.trials)} trials ({self.kind}, recipe {recipes}, dataset {datasets}); varied: {', '.join(self.plan.params) or 'seed'}"
        from rsb_tune.planning.config import DATA_KEYS
        from rsb_tune.data.registry import data_summary, get_dataset, load_study_data

        data = load_study_data(self.plan.configs(DATA_KEYS), decode=False).splits.items()
        lines = [head, *self._cells(scalar), *(line for spec, splits in data for line in data_summary(get_dataset(dict(spec)["dataset"]), splits).splitlines()), "base config (key: value  # source):"]
        lines += [f"  {key}: {scalar(value)}  # {base.sources[key]}" for key, value in base.values.items()]
        if self.plan.resolver is None:
            cut = self._cut
            lines.append("trials (each: the base config above with these keys changed)" + (f"; the first {_SHOWN} of {len(self.trials):,}:" if cut else ":"))
            for tid, cfg in itertools.islice(self.trials.items(), _SHOWN if cut else None):
                diff = {k: v for k, v in cfg.items() if base.values.get(k) != v}
                lines.append(f"  {tid}: {yaml.safe_dump(diff, default_flow_style=True, width=10**6).strip()}")
        return lines

    @property
    def _cut(self) -> bool:
        """A large lazy plan: a dry run shows its first trials and cells only."""
        from rsb_tune.planning.space import GridTrials

        return isinstance(self.trials, GridTrials) and len(self.trials) > _ALL

    def _cells(self, scalar) -> list[str]:
        """The cells of a grid (each combination of its varied keys) and their trials."""
        if self.plan.resolver is not None or not self.plan.params:
            return []
        large = self._cut
        per_cell = max(1, len(self.space.seeds) if self.space is not None else 1)  # trials of a cell: its seeds
        cells: dict[str, list[str]] = {}
        for tid, cfg in itertools.islice(self.trials.items(), _SHOWN * per_cell if large else None):
            cells.setdefault(", ".join(f"{k}={scalar(cfg[k])}" for k in self.plan.params), []).append(tid)
        if large:
            total = len(self.trials) // per_cell
            lines = [f"cells ({total:,}, the grid's points; each runs its seeds); the first {len(cells)}:"]
        else:
            lines = [f"cells ({len(cells)}, the grid's points; each runs its seeds):"]
        return lines + [f"  {cell}: {len(tids)} trials ({tids[0]}{'..' + tids[-1] if len(tids) > 1 else ''})" for cell, tids in cells.items()]


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


def _check_n(n: Any) -> int:
    """``n`` (seeds) when it is an integer >= 1, else a ConfigError naming it."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"{arg('n')} must be >= 1 (an integer), got {n!r}")
    return n


def plan_seeds(n: int = 100, recipe: str = DEFAULT_RECIPE, *, seed_start: int = 0, until: str | None = None, level: float | None = None, metric: str | None = None, method: str | None = None, trainer=None, trainer_cmd: str | None = None, config: Mapping[str, Any] | None = None, max_trials: int = MAX_TRIALS, lazy: bool = False, **experiment) -> StudyPlan:
    """Plan a seed study: ``recipe`` under seeds ``seed_start .. seed_start + n - 1``.

    More than ``max_trials`` seeds (:data:`rsb_tune.options.MAX_TRIALS` by default) is refused
    before anything is planned. ``lazy``: each trial resolved when read (what ``--dry-run``
    shows of a large plan; such a plan describes, it does not run).

    With ``until="halfwidth<=X"`` it is a sequential study: ``n`` is the cap, and seeds run in
    seed order until the anytime ``level`` interval (``method``; see :mod:`rsb_tune.sequential.rule`)
    of the mean of ``metric`` (val_top1 by default) is at most +-X wide."""
    from rsb_tune.planning.recipes import get_recipe
    from rsb_tune.planning.space import seed_list

    check_size(_check_n(n), arg("n", n), check_max_trials(max_trials))
    from rsb_tune.planning import packs

    seeds_ = seed_list({"start": seed_start, "n": n}, "--seed-start/--n")
    if trainer is not None or trainer_cmd is not None or config is not None:
        return plan_trainer(seeds_, trainer=trainer, trainer_cmd=trainer_cmd, config=config, recipe=recipe, until=until, level=level, metric=metric, method=method, **experiment)
    rule = _stopping_rule(until, n, level=level, metric=metric, method=method)
    plan = _plan("seeds", get_recipe(recipe), seeds_, None, recipe, experiment, lazy)
    if rule is not None:
        packs.check(plan.plan.trial_configs(), unsupported="a sequential study (--until)")
    return dataclasses.replace(plan, stopping=rule)


# the keys of a custom trainer's config that are rsb-tune's: seeds (C.SEED_COLUMNS) are set per trial, metric and
# mode name what the study follows (read, not passed on), the rest is where the trial runs
_STUDY_KEYS = ("metric", "mode")


def plan_trainer(seeds_, *, trainer=None, trainer_cmd: str | None = None, config: Mapping[str, Any] | None = None, recipe: str = DEFAULT_RECIPE, until: str | None = None, level=None, metric=None, method=None, overrides=None, space: Mapping[str, Any] | None = None, **experiment) -> StudyPlan:
    """A seed study of your own trainer (a function ``train(config, report)``, see
    :mod:`rsb_tune.training.custom`) or command: each seed's config is ``config`` with the
    ``--set`` values over it (free-form: the built-in recipe's keys do not apply) and the three
    seeds derived from the seed as the built-in trial's are. ``metric``/``mode`` (config keys or
    arguments) name what the study follows; a sequential rule (``until``) may follow any metric
    the trainer reports."""
    from rsb_tune.planning.config import Layer, ResolvedConfig, derive_seeds
    from rsb_tune.planning.space import Plan
    from rsb_tune.sequential import rule as stopping
    from rsb_tune.training import custom

    if (trainer is None) == (trainer_cmd is None):
        raise ConfigError(f"give one of {arg('trainer')} and {arg('trainer_cmd')}" + (f" (with {arg('config')})" if trainer is None else ""))
    if recipe != DEFAULT_RECIPE:
        raise ConfigError(f"{arg('recipe')}: a recipe is the built-in trial's; your trainer takes {arg('config')} / {arg('overrides', flag='--set')}")
    if experiment:
        raise ConfigError(f"{arg(sorted(experiment)[0])}: the built-in trial's; with your own trainer, put it in {arg('config')} or {arg('overrides', flag='--set')}")
    record = {custom.TRAINER: custom.check_trainer(trainer)} if trainer is not None else {custom.TRAINER_CMD: custom.check_command(trainer_cmd)}
    layers = [Layer("config", dict(config or {}))] if config else []
    grid = dict((space or {}).get("grid") or {})
    if space is not None and space.get("base"):
        layers.append(Layer(space["path"], dict(space["base"])))
    if overrides:
        layers.append(_free_set(overrides))
    for layer in layers:
        clash = sorted(set(layer.values) & set(grid))
        if clash and layer.source == "--set":
            raise ConfigError(f"--set: {', '.join(clash)} is varied by the grid in {space['path']}; remove it from the command line or the space file")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for layer in layers:
        for key, value in layer.values.items():
            if key in C.SEED_COLUMNS or key in custom.OURS:
                raise ConfigError(f"{layer.source}: {key!r} is set by rsb-tune per trial (seeds: --seed-start/--n; the trainer: --trainer; threads: --threads)")
            values[str(key)], sources[str(key)] = value, layer.source
    metric = str(metric or values.pop("metric", None) or C.DEFAULT_METRIC)
    mode = values.pop("mode", None) or C.default_mode(metric)
    if mode not in ("max", "min"):
        raise ConfigError(f"{sources.get('mode', 'config')}: mode must be max or min, got {mode!r}")
    sources.pop("metric", None), sources.pop("mode", None)
    rule = None
    if until is not None:
        rule = stopping.check_rule(until, cap=len(seeds_), metric=metric, level=level, method=method, metrics=(metric,))
    elif level is not None or method is not None:
        raise ConfigError(f"{arg('level')}, {arg('method')}: only with {arg('until', 'halfwidth<=X')} (a sequential study)")
    values = json.loads(json.dumps(values, default=str))  # recorded as JSON in the study's plan
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    configs = [{**values, **json.loads(json.dumps(point, default=str)), **derive_seeds(seed), **record} for point in points for seed in seeds_]
    width = max(4, len(str(len(configs) - 1)))
    trials = {f"t{i:0{width}d}": cfg for i, cfg in enumerate(configs)}
    base = ResolvedConfig({**values, **record}, {**sources, **{k: "--trainer" for k in record}})
    plan = Plan(base=base, trials=trials, params=tuple(grid), layers=tuple(layers))
    name = Path(space["path"]).stem if space else record.get(custom.TRAINER, "").rpartition(":")[2] or "cmd"
    return StudyPlan("grid" if space else "seeds", None, None, None, plan, name, stopping=rule, trainer={**record, "metric": metric, "mode": mode})


_TRAINER_SPACE_KEYS = ("grid", "base", "seeds", "metric", "mode")


def _plan_trainer_grid(space, *, overrides=None, **own) -> StudyPlan:
    """The grid of a space file for your own trainer: ``grid`` (key: [values], any keys),
    ``base`` (the config under the grid), ``seeds`` (as the built-in spaces': ``[0, 1]`` or
    ``{start: 0, n: 3}``), ``metric`` and ``mode``; every point under every seed."""
    from collections.abc import Mapping as _Mapping

    from rsb_tune.planning.space import seed_list
    from rsb_tune.store.yamltext import read_config_file

    path = Path(space)
    if not path.is_file():
        raise ConfigError(f"{space}: no such space file (with your own trainer, a space is a file with {', '.join(_TRAINER_SPACE_KEYS)})")
    raw = read_config_file(path, ConfigError) or {}  # as a built-in space file: limits, a key given twice, the line of malformed YAML
    if not isinstance(raw, _Mapping):
        raise ConfigError(f"{path}: expected a mapping with {', '.join(_TRAINER_SPACE_KEYS)}")
    unknown = sorted(set(map(str, raw)) - set(_TRAINER_SPACE_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; a space for your own trainer has {', '.join(_TRAINER_SPACE_KEYS)}")
    grid = raw.get("grid") or {}
    if not isinstance(grid, _Mapping) or any(not isinstance(v, list) or not v for v in grid.values()):
        raise ConfigError(f"{path}: grid must map each key to a non-empty list of values")
    for key in grid:
        if key in C.SEED_COLUMNS or key in _STUDY_KEYS:
            raise ConfigError(f"{path}: grid: {key!r} cannot be a grid axis (seeds: the file's seeds; metric and mode: one per study)")
    base = raw.get("base") or {}
    if not isinstance(base, _Mapping):
        raise ConfigError(f"{path}: base must be a mapping of config keys")
    base = {**base, **{k: raw[k] for k in _STUDY_KEYS if raw.get(k) is not None}}
    seeds_ = seed_list(raw.get("seeds", [0]), f"{path}: seeds")
    return plan_trainer(seeds_, overrides=overrides, space={"path": str(path), "grid": dict(grid), "base": base}, **own)


def _free_set(items) -> Any:
    """``--set key=value`` for your own trainer: values read as YAML scalars, any key."""
    import yaml

    from rsb_tune.planning.config import Layer

    if isinstance(items, Mapping):
        return Layer("--set", dict(items))
    values = {}
    for item in [items] if isinstance(items, str) else items:
        key, eq, raw = str(item).partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            values[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            values[key.strip()] = raw
    return Layer("--set", values)


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


def plan_grid(space: str | Path = "lamb_bce", *, n: int | None = None, max_trials: int = MAX_TRIALS, lazy: bool = False, trainer=None, trainer_cmd: str | None = None, config: Mapping[str, Any] | None = None, **experiment) -> StudyPlan:
    """Plan the grid (or search) of a space file: a path, or the name of a shipped space.
    With ``trainer`` or ``trainer_cmd``: the grid of a space file for your own trainer (see
    docs/own-trainer.md). ``n``: seeds per grid point, from the space's first seed on, instead of
    the space's seeds. A space of more than ``max_trials`` trials (its cases times its grid's
    product of axis lengths times its seeds, or a search's points times its seeds) is refused
    before anything is expanded; ``lazy`` as in :func:`plan_seeds`."""
    if trainer is not None or trainer_cmd is not None or config is not None:
        if n is not None:
            raise ConfigError(f"{arg('n')}: the seeds of a grid for your own trainer are its space file's")
        return _plan_trainer_grid(space, trainer=trainer, trainer_cmd=trainer_cmd, config=config, **experiment)
    from rsb_tune.planning.recipes import get_recipe
    from rsb_tune.planning.space import find_space, load_space, seed_list

    path = find_space(space)
    loaded = load_space(path, check_max_trials(max_trials))
    if n is not None:
        cells = loaded.size // len(loaded.seeds)
        check_size(cells * _check_n(n), f"{path}: {cells} cells x {arg('n')} {n} seeds", max_trials)
        seeds = {"start": loaded.seeds[0], "n": n}
        loaded = dataclasses.replace(loaded, seeds=seed_list(seeds, arg("n")), raw={**loaded.raw, "seeds": seeds})
    return _plan("grid", get_recipe(loaded.recipe), loaded.seeds, loaded, Path(path).stem, experiment, lazy)


def _plan(kind, recipe, seed_values, space, label, experiment, lazy=False) -> StudyPlan:
    from rsb_tune.data.registry import get_dataset
    from rsb_tune.planning.recipes import get_recipe
    from rsb_tune.planning.space import build_plan
    from rsb_tune.planning.validate import check_plan

    unknown = sorted(set(experiment) - EXPERIMENT)
    if unknown:
        from rsb_tune.errors import suggest

        raise ConfigError(f"unknown argument {unknown[0]!r}{suggest(unknown[0], EXPERIMENT)}; experiment arguments: {', '.join(sorted(EXPERIMENT))}")
    layers = _experiment_layers(**experiment)
    spec = get_dataset(_dataset_of(layers))
    from rsb_tune.planning import packs

    plan = build_plan(recipe, spec.profile, seeds=seed_values, space=space, command_line=layers, lazy=lazy)
    recipe, spec = get_recipe(plan.base.values["recipe"]), get_dataset(plan.base.values["dataset"])  # as the layers named them
    from rsb_tune._log import timed

    with timed("check_models"):
        check_plan(plan, space)
    unsupported = "a search" if plan.resolver is not None else "an early-stopped grid (scheduler: asha)" if space is not None and space.scheduler else None
    packs.check([plan.base.values, *plan.trial_configs()], unsupported=unsupported)
    return StudyPlan(kind, recipe, spec, space, plan, str(label))


EXPERIMENT = frozenset({"data", "dataset", "data_dir", "model", "epochs", "batch_size", "workers_per_trial", "pack", "overrides"})



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


def plan_ab(n: int = 100, recipe: str = DEFAULT_RECIPE, vs_recipe: str | None = None, *, delta: float | None = None, level: float | None = None, metric: str | None = None, method: str | None = None, seed_start: int = 0, overrides=None, vs_overrides=None, trainer=None, trainer_cmd: str | None = None, config: Mapping[str, Any] | None = None, max_trials: int = MAX_TRIALS, **experiment) -> PairedPlan:
    """Plan a paired study: arm a is ``recipe`` with ``overrides``, arm b ``vs_recipe`` (default:
    the same recipe) with ``vs_overrides``, both on seeds ``seed_start .. seed_start + n - 1``
    and the other experiment arguments. Arms that differ in anything the recipes and overrides
    do not name are refused."""
    from rsb_tune.sequential import rule as stopping
    from rsb_tune.sequential.engine import SEQUENTIAL_METRICS, check_arms

    check_size(_check_n(n), arg("n", n), check_max_trials(max_trials))  # each arm's cap, before either is planned
    if trainer is not None or trainer_cmd is not None or config is not None:
        return _plan_ab_trainer(n, recipe, vs_recipe, delta=delta, level=level, metric=metric, method=method, seed_start=seed_start, overrides=overrides, vs_overrides=vs_overrides, trainer=trainer, trainer_cmd=trainer_cmd, config=config, **experiment)
    metric = metric or C.DEFAULT_METRIC
    rule = stopping.check_paired(cap=n, metric=metric, mode=C.default_mode(metric), delta=delta, level=level, method=method, metrics=SEQUENTIAL_METRICS)
    from rsb_tune.planning import packs

    a = plan_seeds(n, recipe, seed_start=seed_start, overrides=overrides, max_trials=max_trials, **experiment)
    b = plan_seeds(n, vs_recipe or recipe, seed_start=seed_start, overrides=vs_overrides, max_trials=max_trials, **experiment)
    packs.check([*a.trials.values(), *b.trials.values()], unsupported="a paired study (ab)")
    named = {arm: [k for layer in p.plan.layers if layer.source == "--set" for k in layer.values] for arm, p in (("a", a), ("b", b))}
    if a.trials == b.trials:
        raise ConfigError(f"the two arms are the same configuration; give {arg('vs_recipe')} or {arg('overrides', flag='--set')} / {arg('vs_overrides', flag='--vs-set')} that differ")
    check_arms(a.plan, b.plan, named)
    return PairedPlan(a, b, rule)


def _plan_ab_trainer(n, recipe, vs_recipe, *, delta, level, metric, method, seed_start, overrides, vs_overrides, **own) -> PairedPlan:
    """A paired study of your own trainer: arm a is ``config`` with ``overrides``, arm b
    ``config`` with ``vs_overrides``, on the same seeds; the rule follows the arms' metric."""
    from rsb_tune.planning.space import seed_list
    from rsb_tune.sequential import rule as stopping

    if vs_recipe is not None:
        raise ConfigError(f"{arg('vs_recipe')}: a recipe is the built-in trial's; give arm b's config with {arg('vs_overrides', flag='--vs-set')}")
    seeds_ = seed_list({"start": seed_start, "n": n}, "--seed-start/--n")
    a = plan_trainer(seeds_, recipe=recipe, metric=metric, overrides=overrides, **own)
    b = plan_trainer(seeds_, recipe=recipe, metric=metric, overrides=vs_overrides, **own)
    if a.trials == b.trials:
        raise ConfigError(f"the two arms are the same configuration; give {arg('overrides', flag='--set')} / {arg('vs_overrides', flag='--vs-set')} that differ")
    if (a.trainer["metric"], a.trainer["mode"]) != (b.trainer["metric"], b.trainer["mode"]):
        raise ConfigError("the two arms follow different metrics; set metric and mode in config, not per arm")
    metric, mode = a.trainer["metric"], a.trainer["mode"]
    rule = stopping.check_paired(cap=n, metric=metric, mode=mode, delta=delta, level=level, method=method, metrics=(metric,))
    return PairedPlan(a, b, rule)
