"""Checks of a planned study against timm, before anything is written: every distinct model
(with its ``model_kwargs``) builds, every distinct optimizer exists. A grid is checked trial
by trial and a search for every ``choice:`` value, so a misspelled third value fails the
command instead of the trials that would use it. Errors name the file, the key, the value
and the nearest valid names."""

from __future__ import annotations

from typing import Any, Mapping

from rsb_tune.errors import ConfigError, suggest

__all__ = ["check_plan"]

_CHECKED = ("model", "model_kwargs", "opt", "drop_path", "recipe", "dataset")  # a recipe or profile sets some of them


def _source(plan, space, key: str, cfg: Mapping[str, Any] | None = None) -> str:
    """Where the value of ``key`` (in the trial config ``cfg``) comes from, as an error should name it."""
    for i, case in enumerate(space.cases if space is not None and cfg is not None else ()):
        if key in case and all(cfg.get(k) == v for k, v in case.items()):
            return f"{space.path}: cases[{i}]: {key}"
    if space is not None and key in space.grid:
        return f"{space.path}: grid: {key}"
    if space is not None and key in space.params:
        return f"{space.path}: params: {key}"
    return f"{plan.base.sources.get(key, 'config')}: {key}"


def _configs(plan, space) -> list[Mapping[str, Any]]:
    """Every config the study can run: the grid's trials, or the base with each value a search
    can choose for the keys checked here."""
    if plan.resolver is None:  # every trial; of a lazy plan (a dry run), each value of each axis
        return plan.trial_configs() or [plan.base.values]
    out = [plan.base.values]
    for key, (kind, values) in space.params.items():
        if kind == "choice" and key in _CHECKED:
            out.extend(plan.resolver({key: v}) for v in values)
    return out


def check_plan(plan, space=None) -> None:
    """Raise ConfigError for the first model or optimizer of the plan that timm lacks."""
    import timm
    import timm.optim
    import torch

    import rsb_tune.training.models  # noqa: F401 - registers the CIFAR-stem ResNets

    optimizers = timm.optim.list_optimizers()
    seen_opt: set[tuple] = set()
    seen_model: set[tuple] = set()
    for cfg in _configs(plan, space):
        opt = str(cfg["opt"]).lower()
        if (opt, cfg.get("pack", 1) != 1) not in seen_opt:
            seen_opt.add((opt, cfg.get("pack", 1) != 1))
            if opt not in optimizers:
                raise ConfigError(f"{_source(plan, space, 'opt', cfg)}: unknown timm optimizer {cfg['opt']!r}{suggest(opt, optimizers)} (see timm.optim.list_optimizers())")
            if cfg.get("pack", 1) != 1:
                from rsb_tune.training.packed import check_optimizer

                try:
                    check_optimizer(cfg)
                except ValueError as e:
                    raise ConfigError(f"{_source(plan, space, 'opt')}: {e}") from None
        key = (cfg["model"], repr(sorted(cfg["model_kwargs"].items())))
        if key in seen_model:
            continue
        seen_model.add(key)
        if not timm.is_model(cfg["model"]):
            raise ConfigError(f"{_source(plan, space, 'model', cfg)}: unknown timm model {cfg['model']!r}{suggest(cfg['model'], timm.list_models())}")
        try:
            with torch.device("meta"):  # builds the modules without allocating weights
                timm.create_model(cfg["model"], num_classes=10, drop_path_rate=cfg["drop_path"], **cfg["model_kwargs"])
        except TypeError as e:
            raise ConfigError(f"{_source(plan, space, 'model_kwargs', cfg)}: {cfg['model_kwargs']} do not fit {cfg['model']}: {e}") from None
