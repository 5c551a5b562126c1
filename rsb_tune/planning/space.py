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

Adaptive search instead of a grid (Optuna's TPE through Ray Tune's ``OptunaSearch``; the
sampler's history lives in ``<study>/optuna.db``, so a resumed study continues the search)::

    search: optuna
    num_samples: 20         # sampled points
    seeds: [0, 1, 2]        # every sampled point runs each seed; the sampler sees their mean
    params:
      lr: {loguniform: [1.0e-3, 3.0e-2]}
      weight_decay: {uniform: [0.0, 0.1]}
      repeated_aug: {int: [1, 3]}
      opt: {choice: [lamb, adamw]}

With several seeds a point is one configuration trained with each seed: the study records
every seed's trial (``num_samples`` x seeds trials), and the sampler's history holds one value
per point, the mean of its seeds' final ``metric`` (Ray Tune's ``Repeater`` reports it).

Optional early stopping for grids and searches (never for seed studies; a search with one seed)::

    scheduler: asha
    grace_period: 3         # epochs before a trial can be stopped
    reduction_factor: 3

Every key under ``base``, ``grid`` and ``params`` is validated against the trial-config schema
(:data:`rsb_tune.planning.config.FIELDS`), with the file and key in the message. Any key whose scope is
``trial`` or ``data`` can be a grid axis or a searched param, ``recipe`` and ``dataset``
included: each trial is resolved from its own recipe and its own dataset's profile::

    grid:
      recipe: [A2, A3]          # each trial trains its recipe's epochs, lr, drop path, ...
      dataset: [digits, torch/cifar10]   # each on its own data (data_path from base: or --data-dir)

Axes that vary together are ``cases``: a list of mappings, each a set of keys given together
(a model with its own ``model_kwargs``), crossed with the grid's axes and with the seeds. Each case
is its own layer: what one case sets never reaches another::

    cases:                      # 2 cases x 2 recipes x 3 seeds = 12 trials
      - {model: resnet10t}
      - {model: vit_tiny_patch16_224, model_kwargs: {img_size: 32, patch_size: 4}}
    grid:
      recipe: [A2, T2]

Keys of scope ``seed`` (listed under ``seeds``) and ``study`` (one value per study) are refused
there. A searched data key is a ``choice:`` (the driver loads each value's data once).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from rsb_tune.planning.config import FIELDS, Layer, ResolvedConfig, coerce, resolve
from analysis.contract import DEFAULT_METRIC, METRICS, default_mode
from rsb_tune.errors import ConfigError, suggest
from rsb_tune.planning.limits import MAX_TRIALS, check_size
from rsb_tune.planning.recipes import DEFAULT_RECIPE

__all__ = ["Space", "GridTrials", "load_space", "space_from_mapping", "Plan", "PointResolver", "build_plan", "seed_list", "find_space", "shipped_spaces"]

SPACE_KEYS = ("description", "recipe", "metric", "mode", "seeds", "base", "cases", "grid", "search", "num_samples", "params", "scheduler", "grace_period", "reduction_factor")
DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")


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
    search: str = "grid"
    num_samples: int = 0
    params: Mapping[str, tuple] = dataclasses.field(default_factory=dict)  # key -> (kind, values)
    scheduler: str | None = None
    grace_period: int = 1
    reduction_factor: int = 3
    cases: tuple[Mapping[str, Any], ...] = ()  # sets of keys varied together, crossed with the grid

    @property
    def varied(self) -> tuple[str, ...]:
        """The keys a grid varies: those of the cases (in order of appearance), then the grid's axes."""
        return (*dict.fromkeys(k for case in self.cases for k in case), *self.grid)

    @property
    def search_trials(self) -> int:
        """A search's trials: every sampled point trains each seed."""
        return self.num_samples * len(self.seeds)

    @property
    def size(self) -> int:
        """How many trials the space plans, computed without expanding it: a search's
        ``num_samples`` times its seeds, else its cases times the product of the grid's axis
        lengths times the seeds."""
        if self.search == "optuna":
            return self.search_trials
        return max(1, len(self.cases)) * math.prod(len(v) for v in self.grid.values()) * len(self.seeds)


def seed_list(spec: Any, where: str, max_trials: int | None = None) -> tuple[int, ...]:
    """``[0, 1, 2]`` or ``{start: 0, n: 3}`` -> (0, 1, 2); errors name ``where``, and more than
    ``max_trials`` seeds is refused before any is listed."""
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"start", "n"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: start, n")
        start = coerce("seed", spec.get("start", 0), f"{where}.start")
        n = spec.get("n")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"{where}.n must be an integer >= 1, got {n!r}")
        check_size(n, f"{where}.n", max_trials)
        return tuple(range(start, start + n))  # at most max_trials of them: counted before listed
    elif isinstance(spec, (list, tuple)):
        if not spec:
            raise ConfigError(f"{where}: empty list; give at least one seed")
        seeds = tuple(coerce("seed", s, where) for s in spec)
    else:
        raise ConfigError(f"{where}: expected a list of seeds or {{start: S, n: N}}, got {spec!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}: duplicate seeds")
    return seeds


def _shipped_dir():
    """The shipped space files: ``search_spaces/`` of the checkout, installed as the package
    ``rsb_tune.search_spaces`` (see pyproject.toml)."""
    from importlib.resources import files

    try:
        return files("rsb_tune.search_spaces")
    except ModuleNotFoundError:  # run from a checkout that was not installed
        return Path(__file__).resolve().parents[2] / "search_spaces"


def _question(text: str) -> str:
    """A space file's opening comment, to its first sentence's end: the question it answers."""
    import re

    words = []
    for line in text.splitlines():
        if not line.strip().startswith("#"):
            break
        words.append(line.strip().lstrip("#").strip())
    comment = " ".join(w for w in words if w)
    first = re.match(r".*?[.?!](?=\s|$)", comment)
    return first.group(0) if first else comment


def shipped_spaces() -> dict[str, tuple[str, str]]:
    """name -> (path, the question it answers), for every shipped space file."""
    out = {}
    for entry in sorted(_shipped_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            out[entry.name[: -len(".yaml")]] = (str(entry), _question(entry.read_text()))
    return out


def find_space(spec: str | Path) -> str:
    """A space file's path: ``spec`` itself when that file exists, else the shipped space of
    that name (``lamb_bce`` or ``lamb_bce.yaml``)."""
    if Path(spec).expanduser().is_file():
        return str(Path(spec).expanduser())
    shipped = shipped_spaces()
    name = Path(str(spec)).name
    name = name[: -len(".yaml")] if name.endswith(".yaml") else name
    if name in shipped and Path(str(spec)).parent == Path("."):
        return shipped[name][0]
    raise ConfigError(f"{spec}: no such space file, and no shipped space of that name{suggest(name, shipped)}; shipped: {', '.join(shipped)} (see `rsb-tune spaces`)")


def load_space(path: str | Path, max_trials: int | None = MAX_TRIALS) -> Space:
    """Read and validate a space file; every error names the file and the key. A space of more
    than ``max_trials`` trials is refused before anything is expanded."""
    from rsb_tune.store.yamltext import read_config_file

    if not Path(path).is_file():
        raise ConfigError(f"{path}: no such space file")
    return space_from_mapping(read_config_file(path, ConfigError), path, max_trials)


def space_from_mapping(raw: Any, path: str | Path, max_trials: int | None = None) -> Space:
    """Validate a parsed space file (also used to rebuild a study's space from study.yaml, with
    no cap: its plan was checked when it was made)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a mapping with keys {', '.join(SPACE_KEYS)}")
    for key in raw:
        if key not in SPACE_KEYS:
            raise ConfigError(f"{path}: unknown top-level key {key!r}{suggest(str(key), SPACE_KEYS)}; allowed: {', '.join(SPACE_KEYS)}")
    recipe = raw.get("recipe", DEFAULT_RECIPE)
    metric = raw.get("metric", DEFAULT_METRIC)
    if metric not in METRICS:
        raise ConfigError(f"{path}: metric {metric!r} is not allowed; allowed: {', '.join(METRICS)}{suggest(str(metric), METRICS)}")
    mode = raw.get("mode", default_mode(str(metric)))
    if mode not in ("min", "max"):
        raise ConfigError(f"{path}: mode {mode!r} is not allowed; allowed: min, max")
    seeds = seed_list(raw.get("seeds", [0]), f"{path}: seeds", max_trials)
    base = raw.get("base") or {}
    if not isinstance(base, Mapping):
        raise ConfigError(f"{path}: base must be a mapping of config keys to values")
    base = {k: coerce(k, v, f"{path}: base") for k, v in base.items()}
    if "recipe" in raw and "recipe" in base:
        raise ConfigError(f"{path}: recipe is given both at the top level and in base; give it once")
    grid_raw = raw.get("grid") or {}
    if not isinstance(grid_raw, Mapping):
        raise ConfigError(f"{path}: grid must be a mapping of config keys to lists of values")
    grid = {}
    for key, values in grid_raw.items():
        where = f"{path}: grid"
        _check_varies(key, where, "a grid axis")
        if not isinstance(values, list):
            raise ConfigError(f"{where}: {key} must be a list of values, got {values!r}")
        if not values:
            raise ConfigError(f"{where}: {key} is an empty list")
        grid[key] = tuple(coerce(key, v, where) for v in values)
        if key in base:
            raise ConfigError(f"{path}: {key!r} is both in base and grid")
    cases = _cases(raw.get("cases"), path, base, grid)
    search = raw.get("search", "grid")
    if search not in ("grid", "optuna"):
        raise ConfigError(f"{path}: search {search!r} is not allowed; allowed: grid, optuna")
    params = _distributions(raw.get("params"), path) if search == "optuna" else {}
    if search == "grid" and raw.get("params"):
        raise ConfigError(f"{path}: params (distributions) need `search: optuna`; a grid uses `grid:`")
    if search == "optuna":
        if grid or cases:
            raise ConfigError(f"{path}: `search: optuna` samples `params`; remove `{'grid' if grid else 'cases'}`")
        if len(seeds) > 1 and raw.get("scheduler") == "asha":
            raise ConfigError(f"{path}: `scheduler: asha` stops single trials, not a point's {len(seeds)} seeds; give one seed or leave the scheduler out")
        clash = sorted(set(params) & set(base))
        if clash:
            raise ConfigError(f"{path}: {', '.join(clash)} both in base and params")
    num_samples = raw.get("num_samples", 0 if search == "grid" else None)
    if search == "optuna" and (isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1):
        raise ConfigError(f"{path}: num_samples must be an integer >= 1 with `search: optuna`, got {num_samples!r}")
    scheduler = raw.get("scheduler")
    if scheduler not in (None, "asha"):
        raise ConfigError(f"{path}: scheduler {scheduler!r} is not allowed; allowed: asha (or leave it out)")
    knobs = {}
    defaults = {f.name: f.default for f in dataclasses.fields(Space)}
    for key, low in (("grace_period", 1), ("reduction_factor", 2)):
        default = defaults[key]
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{path}: {key} must be an integer >= {low}, got {value!r}")
        knobs[key] = value
    space = Space(str(path), str(recipe), metric, mode, seeds, base, grid, raw, search, num_samples or 0, params, scheduler, **knobs, cases=cases)
    cells = " x ".join([*([str(len(cases))] if cases else []), *(str(len(v)) for v in grid.values())]) or "1"
    what = f"{path}: num_samples ({num_samples} points x {len(seeds)} seeds)" if search == "optuna" else f"{path}: grid ({cells} points x {len(seeds)} seeds)"
    check_size(space.size, what, max_trials)
    return space


def _cases(spec: Any, path, base: Mapping[str, Any], grid: Mapping[str, tuple]) -> tuple[dict[str, Any], ...]:
    """The validated ``cases:`` list; errors name the file and the case's index."""
    if spec is None:
        return ()
    if not isinstance(spec, list) or not spec:
        raise ConfigError(f"{path}: cases must be a non-empty list of mappings (keys set together), got {spec!r}")
    out = []
    for i, case in enumerate(spec):
        where = f"{path}: cases[{i}]"
        if not isinstance(case, Mapping) or not case:
            raise ConfigError(f"{where} must be a non-empty mapping of config keys to values, got {case!r}")
        for key in case:
            _check_varies(key, where, "set by a case")
            for other, name in ((base, "base"), (grid, "grid")):
                if key in other:
                    raise ConfigError(f"{where}: {key!r} is also in {name}; give it in one place")
        values = {str(k): coerce(k, v, where) for k, v in case.items()}
        if values in out:
            raise ConfigError(f"{where} repeats cases[{out.index(values)}]")
        out.append(values)
    return tuple(out)


def _check_varies(key: Any, where: str, what: str) -> None:
    """A key whose scope lets it differ between trials (see rsb_tune.planning.config.SCOPES)."""
    field = FIELDS.get(key)
    if field is None:
        return  # an unknown key: refused with the schema's message when its values are read
    if field.scope == "seed":
        raise ConfigError(f"{where}: {key!r} cannot be {what}; list seeds under 'seeds'")
    if field.scope == "study":
        raise ConfigError(f"{where}: {key!r} cannot be {what}: it holds one value per study ({field.why}); set it once under base: or on the command line")


def _distributions(spec: Any, path) -> dict[str, tuple]:
    if not isinstance(spec, Mapping) or not spec:
        raise ConfigError(f"{path}: `search: optuna` needs params: a mapping of config keys to distributions ({', '.join(DISTRIBUTIONS)})")
    out = {}
    for key, dist in spec.items():
        where = f"{path}: params: {key}"
        _check_varies(key, f"{path}: params", "a searched param")
        if not isinstance(dist, Mapping) or len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
            raise ConfigError(f"{where}: expected one of {{loguniform: [low, high]}}, {{uniform: [low, high]}}, {{int: [low, high]}}, {{choice: [values]}}")
        kind, values = next(iter(dist.items()))
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: {kind} needs a non-empty list")
        values = tuple(coerce(key, v, where) for v in values)
        if kind != "choice" and FIELDS[key].scope == "data":
            raise ConfigError(f"{where}: {key} names the data trials train on: search it as {{choice: [values]}} (the driver loads each value's data once)")
        if kind != "choice":
            if len(values) != 2 or not values[0] < values[1]:
                raise ConfigError(f"{where}: {kind} needs [low, high] with low < high, got {list(values)}")
            if kind == "loguniform" and values[0] <= 0:
                raise ConfigError(f"{where}: loguniform needs low > 0, got {values[0]}")
            if kind == "int" and not all(isinstance(v, int) for v in values):
                raise ConfigError(f"{where}: int needs integer bounds, got {list(values)}")
        out[str(key)] = (kind, values)
    return out


@dataclasses.dataclass(frozen=True)
class PointResolver:
    """Resolves a point sampled during a search into a full trial config, the same way in the
    driver (to record it) and in the trial (to run it). Picklable; rebuilt from study.yaml.
    ``seed``: the space's first seed, used unless the point names its ``seed``."""

    recipe: str
    dataset: str
    layers: tuple[Layer, ...]
    seed: int
    source: str = "search"

    def __call__(self, point: Mapping[str, Any]) -> dict[str, Any]:
        from rsb_tune.data.registry import get_dataset
        from rsb_tune.planning.recipes import get_recipe

        point = dict(point)
        seed = point.pop("seed", self.seed)  # one of the space's seeds (a point trained with several)
        layers = [*self.layers, Layer(self.source, point), Layer("seed", {"seed": seed})]
        return resolve(get_recipe(self.recipe), get_dataset(self.dataset).profile, layers).to_dict()


@dataclasses.dataclass(frozen=True)
class Plan:
    """A study's trials: id -> fully resolved config (plus the sources of the base config).
    A search (``resolver`` set) has no trials up front: they are recorded as they start. A
    lazy plan's trials are a :class:`GridTrials` (resolved when read; for a dry run)."""

    base: ResolvedConfig
    trials: Mapping[str, Mapping[str, Any]]
    params: tuple[str, ...]
    layers: tuple[Layer, ...] = ()
    resolver: PointResolver | None = None
    choices: Mapping[str, tuple] = dataclasses.field(default_factory=dict)  # a search's `choice:` params

    def configs(self, keys: Sequence[str] = ()) -> list[Mapping[str, Any]]:
        """Every config the study can run, as far as ``keys`` go: a grid's trials; for a search,
        the base config with each combination of the ``choice:`` values its params give
        ``keys`` (a searched data key is always a choice)."""
        if self.resolver is None:
            if isinstance(self.trials, GridTrials):
                return self.trials.samples(keys)
            return list(self.trials.values()) or [self.base.values]
        varied = [k for k in keys if k in self.choices]
        return [self.resolver(dict(zip(varied, combo))) for combo in itertools.product(*(self.choices[k] for k in varied))]

    def trial_configs(self) -> list[Mapping[str, Any]]:
        """The configs a plan's checks look at: every trial, or a lazy plan's samples of each
        axis value (:meth:`GridTrials.samples`); none for a search."""
        return self.trials.samples() if isinstance(self.trials, GridTrials) else list(self.trials.values())

    def values_of(self, key: str) -> list[Any]:
        """The distinct values ``key`` takes over the trials (one, unless it is varied)."""
        return list(dict.fromkeys(cfg[key] for cfg in self.configs((key,))))


def build_plan(
    recipe,
    profile,
    *,
    seeds: Sequence[int],
    space: Space | None = None,
    command_line: Sequence[Layer] = (),
    lazy: bool = False,
) -> Plan:
    """Resolve every trial: recipe < profile < space base < command line < grid point < seed.
    ``lazy``: the trials as a :class:`GridTrials`, each resolved when read (a dry run).
    ``recipe`` and ``profile`` are the study's; a trial whose grid point (or any layer) names
    ``recipe`` or ``dataset`` is resolved from that recipe or that dataset's profile."""
    layers: list[Layer] = []
    if space is not None and space.base:
        layers.append(Layer(space.path, space.base))
    layers.extend(command_line)
    searched = space is not None and space.search == "optuna"
    params = tuple(space.params if searched else space.varied) if space is not None else ()
    for layer in command_line:
        clash = sorted(set(layer.values) & set(params))
        if clash:
            how = "sampled by the search" if searched else "varied by the grid"
            raise ConfigError(f"{layer.source}: {', '.join(clash)} is {how} in {space.path}; remove it from the command line or the space file")
        if "seed" in layer.values:
            raise ConfigError(f"{layer.source}: seed is set per trial; use --seed-start / the space file's seeds")
    base = resolve(recipe, profile, layers)
    if searched:
        resolver = PointResolver(recipe.spec, base.values["dataset"], tuple(layers), seeds[0], f"search in {space.path}")
        for key, (kind, values) in space.params.items():
            for v in values:
                resolver({key: v})
        choices = {key: values for key, (kind, values) in space.params.items() if kind == "choice"}
        return Plan(base=base, trials={}, params=params, layers=tuple(layers), resolver=resolver, choices=choices)
    trials = GridTrials(recipe, profile, tuple(layers), space, seeds)
    return Plan(base=base, trials=trials if lazy else dict(trials.items()), params=params, layers=tuple(layers))


_EVERY = 1000  # a lazy plan this small is checked trial by trial


class GridTrials(Mapping):
    """A grid's (or seed study's) trials, id -> resolved config, each resolved when it is read:
    the order and ids of the plan (grid points in the order of their product, the last axis
    fastest; each point under every seed), without holding them. A dry run of a large plan
    reads its count and first trials from here, in microseconds and no memory."""

    def __init__(self, recipe, profile, layers: tuple[Layer, ...], space: Space | None, seeds: Sequence[int]):
        self._recipe, self._profile, self._layers, self._seeds = recipe, profile, layers, seeds
        self._source = f"grid in {space.path}" if space else "grid"
        self._axes = list(space.grid.items()) if space is not None and space.grid else []
        # cases (keys set together) are the outermost axis: each case under every grid point
        self._cases = [Layer(f"cases[{i}] in {space.path}", case) for i, case in enumerate(space.cases)] if space is not None and space.cases else [None]
        self._points = math.prod(len(values) for _, values in self._axes)
        self._n = len(self._cases) * self._points * len(seeds)
        self._width = max(4, len(str(self._n - 1)))

    def __len__(self) -> int:
        return self._n

    def __iter__(self):
        return (f"t{i:0{self._width}d}" for i in range(self._n))

    def __getitem__(self, trial_id: str) -> dict[str, Any]:
        digits = trial_id[1:] if isinstance(trial_id, str) and trial_id.startswith("t") else ""
        if len(digits) != self._width or not digits.isdigit() or int(digits) >= self._n:
            raise KeyError(trial_id)
        cell_index, seed_index = divmod(int(digits), len(self._seeds))
        case_index, point_index = divmod(cell_index, self._points)
        indices = []
        for _, values in reversed(self._axes):
            point_index, j = divmod(point_index, len(values))
            indices.append(j)
        return self._resolve(list(reversed(indices)), self._seeds[seed_index], case_index)

    def _resolve(self, indices: Sequence[int], seed: int, case: int = 0) -> dict[str, Any]:
        point = {key: values[j] for (key, values), j in zip(self._axes, indices)}
        case_layer = [self._cases[case]] if self._cases[case] is not None else []
        layers = [*self._layers, *case_layer, Layer(self._source, point), Layer("seed", {"seed": seed})]
        return resolve(self._recipe, self._profile, layers).to_dict()

    def samples(self, keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Configs that show every value of the plan's axes without its product: with ``keys``,
        each combination of the axes among them (the others at their first value); without,
        each case, and each value of each axis in turn, the others at their first (under the first seed); every
        trial of a plan of at most :data:`_EVERY` trials, which a dry run checks as a run would."""
        if keys is not None:
            varied = [i for i, (key, _) in enumerate(self._axes) if key in keys]
            combos = itertools.product(*(range(len(self._axes[i][1])) for i in varied))
            return [self._resolve([dict(zip(varied, combo)).get(i, 0) for i in range(len(self._axes))], self._seeds[0], c) for c in range(len(self._cases)) for combo in combos]
        if self._n <= _EVERY:
            return list(self.values())
        out = [self._resolve([0] * len(self._axes), self._seeds[0], c) for c in range(len(self._cases))]
        for i, (_, values) in enumerate(self._axes):
            out += [self._resolve([j if k == i else 0 for k in range(len(self._axes))], self._seeds[0]) for j in range(1, len(values))]
        return out
