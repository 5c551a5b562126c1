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
from pathlib import Path
from typing import Any, Mapping

from analysis import contract as C
from rsb_tune.errors import ConfigError, arg
from rsb_tune.planning.recipes import DEFAULT_RECIPE

__all__ = ["StudyPlan", "PairedPlan", "plan_seeds", "plan_grid", "plan_ab", "EXPERIMENT"]


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
        return self.space.search_trials if self.plan.resolver is not None else len(self.plan.trials)

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
            each = f" points x {len(self.space.seeds)} seeds (the sampler sees each point's mean)" if len(self.space.seeds) > 1 else " trials"
            head = f"search: optuna, {self.space.num_samples}{each} sampled from " + ", ".join(f"{k} ~ {kind}{list(v)}" for k, (kind, v) in self.space.params.items())
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

    unknown = sorted(set(experiment) - EXPERIMENT)
    if unknown:
        from rsb_tune.errors import suggest

        raise ConfigError(f"unknown argument {unknown[0]!r}{suggest(unknown[0], EXPERIMENT)}; experiment arguments: {', '.join(sorted(EXPERIMENT))}")
    layers = _experiment_layers(**experiment)
    spec = get_dataset(_dataset_of(layers))
    from rsb_tune.planning import packs

    plan = build_plan(recipe, spec.profile, seeds=seed_values, space=space, command_line=layers)
    recipe, spec = get_recipe(plan.base.values["recipe"]), get_dataset(plan.base.values["dataset"])  # as the layers named them
    from rsb_tune._log import timed

    with timed("check_models"):
        check_plan(plan, space)
    unsupported = "a search" if plan.resolver is not None else "an early-stopped grid (scheduler: asha)" if space is not None and space.scheduler else None
    packs.check([plan.base.values, *plan.trials.values()], unsupported=unsupported)
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
