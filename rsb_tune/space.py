"""Search-space files and the compiler from (recipe, space, command line) to a trial plan.

A space file is YAML::

    # what question this grid answers
    recipe: A2              # base recipe
    metric: val_top1        # what "best" means (reported, never used to stop a seed study)
    mode: max
    seeds: [0, 1, 2]        # a list, or {start: 0, n: 3}; every grid point runs every seed
    base:                   # optional fixed overrides of the recipe
      drop_path: 0.0
    grid:                   # config key -> list of values; the plan is their product
      lr: [2.0e-3, 5.0e-3, 8.0e-3]
      weight_decay: [0.01, 0.02, 0.05]

Every key under ``base`` and ``grid`` is validated against the trial-config schema
(:data:`rsb_tune.config.FIELDS`), with the file and key in the message.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any, Mapping, Sequence

from rsb_tune.config import Layer, ResolvedConfig, coerce, resolve
from rsb_tune.errors import ConfigError, suggest

__all__ = ["Space", "load_space", "Plan", "build_plan", "seed_list"]

SPACE_KEYS = ("description", "recipe", "metric", "mode", "seeds", "base", "grid")
METRICS = ("val_top1", "val_top5", "val_loss", "v2_top1", "v2_top5", "v2_loss", "train_loss")


@dataclasses.dataclass(frozen=True)
class Space:
    path: str
    recipe: str
    metric: str
    mode: str
    seeds: tuple[int, ...]
    base: Mapping[str, Any]
    grid: Mapping[str, tuple]
    raw: Mapping[str, Any]

    def points(self) -> list[dict[str, Any]]:
        keys = list(self.grid)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(self.grid[k] for k in keys))]


def seed_list(spec: Any, where: str) -> tuple[int, ...]:
    """``[0, 1, 2]`` or ``{start: 0, n: 3}`` -> (0, 1, 2); errors name ``where``."""
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"start", "n"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: start, n")
        start = coerce("seed", spec.get("start", 0), f"{where}.start")
        n = spec.get("n")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"{where}.n must be an integer >= 1, got {n!r}")
        seeds = tuple(range(start, start + n))
    elif isinstance(spec, (list, tuple)):
        if not spec:
            raise ConfigError(f"{where}: empty list; give at least one seed")
        seeds = tuple(coerce("seed", s, where) for s in spec)
    else:
        raise ConfigError(f"{where}: expected a list of seeds or {{start: S, n: N}}, got {spec!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}: duplicate seeds")
    return seeds


def load_space(path: str | Path) -> Space:
    """Read and validate a space file; every error names the file and the key."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: no such space file")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{at}: {getattr(e, 'problem', None) or e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: unreadable ({e})") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a mapping with keys {', '.join(SPACE_KEYS)}")
    for key in raw:
        if key not in SPACE_KEYS:
            raise ConfigError(f"{path}: unknown top-level key {key!r}{suggest(str(key), SPACE_KEYS)}; allowed: {', '.join(SPACE_KEYS)}")
    recipe = raw.get("recipe", "A2")
    metric = raw.get("metric", "val_top1")
    if metric not in METRICS:
        raise ConfigError(f"{path}: metric {metric!r} is not allowed; allowed: {', '.join(METRICS)}{suggest(str(metric), METRICS)}")
    mode = raw.get("mode", "min" if str(metric).endswith("loss") else "max")
    if mode not in ("min", "max"):
        raise ConfigError(f"{path}: mode {mode!r} is not allowed; allowed: min, max")
    seeds = seed_list(raw.get("seeds", [0]), f"{path}: seeds")
    base = raw.get("base") or {}
    if not isinstance(base, Mapping):
        raise ConfigError(f"{path}: base must be a mapping of config keys to values")
    base = {k: coerce(k, v, f"{path}: base") for k, v in base.items()}
    grid_raw = raw.get("grid") or {}
    if not isinstance(grid_raw, Mapping):
        raise ConfigError(f"{path}: grid must be a mapping of config keys to lists of values")
    grid = {}
    for key, values in grid_raw.items():
        where = f"{path}: grid"
        if key in ("seed", "model_seed", "data_seed", "aug_seed"):
            raise ConfigError(f"{where}: {key!r} cannot be a grid axis; list seeds under 'seeds'")
        if not isinstance(values, list):
            raise ConfigError(f"{where}: {key} must be a list of values, got {values!r}")
        if not values:
            raise ConfigError(f"{where}: {key} is an empty list")
        grid[key] = tuple(coerce(key, v, where) for v in values)
        if key in base:
            raise ConfigError(f"{path}: {key!r} is both in base and grid")
    return Space(str(path), str(recipe), metric, mode, seeds, base, grid, raw)


@dataclasses.dataclass(frozen=True)
class Plan:
    """A study's trials: id -> fully resolved config (plus the sources of the base config)."""

    base: ResolvedConfig
    trials: Mapping[str, Mapping[str, Any]]
    params: tuple[str, ...]


def build_plan(
    recipe,
    profile,
    *,
    seeds: Sequence[int],
    space: Space | None = None,
    command_line: Sequence[Layer] = (),
) -> Plan:
    """Resolve every trial: recipe < profile < space base < command line < grid point < seed."""
    layers: list[Layer] = []
    if space is not None and space.base:
        layers.append(Layer(space.path, space.base))
    layers.extend(command_line)
    points = space.points() if space is not None and space.grid else [{}]
    params = tuple(space.grid) if space is not None else ()
    for layer in command_line:
        clash = sorted(set(layer.values) & set(params))
        if clash:
            raise ConfigError(f"{layer.source}: {', '.join(clash)} is varied by the grid in {space.path}; remove it from the command line or the grid")
        if "seed" in layer.values:
            raise ConfigError(f"{layer.source}: seed is set per trial; use --seed-start / the space file's seeds")
    base = resolve(recipe, profile, layers)
    trials: dict[str, dict[str, Any]] = {}
    width = max(4, len(str(len(points) * len(seeds) - 1)))
    for point in points:
        grid_layer = Layer(f"grid in {space.path}" if space else "grid", point)
        for seed in seeds:
            cfg = resolve(recipe, profile, [*layers, grid_layer, Layer("seed", {"seed": seed})])
            trials[f"t{len(trials):0{width}d}"] = cfg.to_dict()
    return Plan(base=base, trials=trials, params=params)
