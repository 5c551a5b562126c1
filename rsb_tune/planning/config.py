"""The trial-config schema and the one precedence chain that resolves it.

Precedence, lowest first (each layer names its source, so errors say where a value came from)::

    recipe (paper values) < schema defaults < dataset profile < space file < command line
    (--model/--epochs/... then --set key=value) < the grid point and seed of one trial

A layer that names ``recipe`` or ``dataset`` (a grid point, a sampled point, the space's base,
``--set``) replaces the bottom of the chain for that config: its recipe is that recipe, its
profile that dataset's, so every trial is resolved from its own (the layers above still win).

Every key declares its scope (:attr:`Field.scope`): whether it may differ between the trials of
one study (a grid axis, a searched param) or holds one value for the whole study.

After the layers, derived values are filled in once, here: the epochs scaled from the recipe
to the dataset profile (the paper's A1:A2:A3 = 6:3:1 ratio is kept), the warm-up scaled with
them, the learning rate rescaled from the recipe's batch to the run's batch, and the seeds
derived from ``seed``. Every trial's resolved config is saved with the study.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from analysis.contract import SEED_COLUMNS, UNKNOWN_SOURCE, KeyDifference
from rsb_tune.data.types import DATA_KEYS, DEFAULT_DATASET, DataOptions
from rsb_tune.errors import ConfigError, suggest

__all__ = [
    "Field",
    "FIELDS",
    "SCOPES",
    "DATA_KEYS",
    "dataset_layers",
    "DERIVED_KEYS",
    "LR_SCALE_RULES",
    "Layer",
    "ResolvedConfig",
    "KeyDifference",
    "differences",
    "follows_from_compared",
    "UNKNOWN_SOURCE",
    "resolve",
    "parse_set",
    "coerce",
    "resolve_lr",
    "derive_seeds",
    "SEED_STREAMS",
]


def _range(low: float | None = None, high: float | None = None, *, low_open=False, high_open=False):
    def check(v):
        if low is not None and (v < low or (low_open and v == low)):
            return f"must be {'>' if low_open else '>='} {low}"
        if high is not None and (v > high or (high_open and v == high)):
            return f"must be {'<' if high_open else '<='} {high}"
        return None

    return check


# Where a key applies: a value per trial, or one per study (see Field.scope).
SCOPES = {
    "trial": "may differ between trials (a grid axis, a searched param): each trial trains with its own value",
    "data": "may differ between trials; names the data a trial trains on: the driver loads each distinct combination once and gives every trial its own",
    "seed": "set per trial from the space's `seeds` (or --seed-start/--n), never a grid axis or a searched param",
    "study": "one value for the whole study (base:, --set): the driver reads it once",
}


@dataclasses.dataclass(frozen=True)
class Field:
    """One trial-config key: its type, allowed values, help and scope. ``default`` is used only
    for keys no recipe or profile sets (recipe keys have their default in the recipe).
    ``scope`` (see :data:`SCOPES`): ``trial`` and ``data`` keys may vary between the trials of a
    study; ``seed`` and ``study`` keys are refused as grid axes and searched params, a
    ``study`` key with ``why`` in the message."""

    type: type
    help: str
    default: Any = "<required>"
    nullable: bool = False
    choices: tuple | None = None
    check: Callable[[Any], str | None] | None = None
    words: tuple[str, ...] = ()  # text values allowed besides the type's (e.g. "auto")
    scope: str = "trial"
    why: str = ""  # a study-scoped key: why it cannot vary between trials

    @property
    def has_default(self) -> bool:
        return self.default != "<required>"


INIT_FROM_KEYS = ("study", "trial_id", "checkpoint")


def _check_init_from(value) -> str | None:
    missing = [k for k in INIT_FROM_KEYS if not isinstance(value.get(k), str) or not value.get(k)]
    extra = sorted(set(value) - set(INIT_FROM_KEYS))
    if missing or extra:
        return f"must be a mapping of exactly {', '.join(INIT_FROM_KEYS)} (strings)"
    return None


_NONNEG = _range(0.0)
_POS = _range(0.0, low_open=True)
_PROB = _range(0.0, 1.0)
_UNIT_OPEN = _range(0.0, 1.0, high_open=True)

LR_SCALE_RULES = ("auto", "sqrt", "linear", "none")
# timm train.py: square-root scaling for LAMB and the Ada family, linear for SGD-like optimizers.
_SQRT_OPTIMIZERS = ("lamb", "lars", "ada", "nadam", "radam", "lion", "adopt", "laprop", "mars", "muon")

_DATA = DataOptions()  # the data keys' defaults (rsb_tune.data.types)

FIELDS: Mapping[str, Field] = {
    # --- what is trained on what
    "recipe": Field(str, "base recipe: a shipped name (A1, A2, A3, T2), a project recipe (recipes/NAME.yaml) or the path of a recipe YAML"),
    "dataset": Field(str, "dataset registry name, timm's names (digits: embedded; folder: folder/.tar at data_path; torch/cifar10, torch/cifar100, torch/mnist, ..., hfds/NAME, wds/NAME)", default=DEFAULT_DATASET, scope="data"),
    "data_path": Field(str, "dataset root: a folder or .tar with train/, val/, optional v2/ (--data), or the --data-dir of a torch/ dataset", default=_DATA.root, nullable=True, scope="data"),
    "v2_path": Field(str, "second test set as v2: a *_data.npy/*_labels.npy pair (CIFAR-10.1) or its folder, or a folder of class folders", default=_DATA.v2_path, nullable=True, scope="data"),
    "val_holdout": Field(float, "fraction of train held out (class-stratified) as val, keeping the dataset's own val/test for last (0: off)", default=_DATA.val_holdout, check=_range(0.0, 0.5, high_open=True), scope="data"),
    "val_holdout_seed": Field(int, "seed of the held-out val split (never the trial seed: the seeds of one split share it)", default=_DATA.val_holdout_seed, check=_range(0, 2**32 - 1), scope="data"),
    "memory_budget_mb": Field(int, "decoded datasets up to this size train from memory (Ray object store); larger ones stream through loader workers", default=_DATA.memory_budget_mb, check=_range(0), scope="data"),
    "model": Field(str, "timm model name"),
    "model_kwargs": Field(dict, "extra keyword arguments for timm.create_model", default={}),
    "init_from": Field(dict, "start from another study's trained weights (set by `rsb-tune finetune`): {study, trial_id, checkpoint: its final checkpoint's directory}; the classifier head is new", default=None, nullable=True, check=lambda v: _check_init_from(v)),
    "img_size": Field(int, "train resolution (px)", check=_range(8, 1024)),
    "test_img_size": Field(int, "eval resolution (px)", check=_range(8, 1024)),
    "batch_size": Field(int, "global batch size of the run", check=_range(1, 65536)),
    "epochs": Field(int, "training epochs (default: the recipe's, scaled by the dataset profile)", check=_range(1, 100000)),
    # --- optimisation
    "opt": Field(str, "timm optimizer name (create_optimizer_v2)"),
    "lr": Field(float, "learning rate at the recipe batch lr_base_batch (the paper's value)", check=_POS),
    "lr_base_batch": Field(int, "batch size that `lr` refers to (the recipe's global batch)", check=_range(1)),
    "lr_scale": Field(str, "rule rescaling lr to batch_size: auto (timm: sqrt for LAMB/Ada, linear otherwise), sqrt, linear, none", default="auto", choices=LR_SCALE_RULES),
    "weight_decay": Field(float, "weight decay", check=_NONNEG),
    "momentum": Field(float, "momentum (SGD-family optimizers)", default=0.9, check=_range(0.0, 1.0, high_open=True)),
    "sched": Field(str, "timm scheduler name (create_scheduler_v2)", choices=("cosine", "tanh", "step", "multistep", "poly", "constant", "none")),
    "warmup_epochs": Field(float, "linear warm-up epochs (default: the recipe's, scaled with epochs)", check=_NONNEG),
    "warmup_lr": Field(float, "lr at the start of warm-up", default=1e-6, check=_NONNEG),
    "min_lr": Field(float, "lr at the end of the schedule", default=0.0, check=_NONNEG),
    # --- loss and regularisation
    "loss": Field(str, "bce (one-vs-all binary cross-entropy, RSB) or ce (soft-target cross-entropy)", choices=("bce", "ce")),
    "smoothing": Field(float, "label smoothing (through Mixup when mixup/cutmix is active)", check=_UNIT_OPEN),
    "bce_target_thresh": Field(float, "BCE: binarise mixed targets above this value", nullable=True, check=_UNIT_OPEN),
    "mixup_alpha": Field(float, "mixup Beta alpha (0: off)", check=_NONNEG),
    "cutmix_alpha": Field(float, "cutmix Beta alpha (0: off)", check=_NONNEG),
    "mixup_prob": Field(float, "probability of applying mixup or cutmix to a batch", default=1.0, check=_PROB),
    "mixup_switch_prob": Field(float, "probability of cutmix instead of mixup when both are on", default=0.5, check=_PROB),
    "drop_path": Field(float, "stochastic depth rate", check=_UNIT_OPEN),
    # --- augmentation (timm create_transform)
    "auto_augment": Field(str, "timm RandAugment string, e.g. rand-m7-mstd0.5-inc1 (null: off)", nullable=True),
    "repeated_aug": Field(int, "repeated augmentation count (1: off)", check=_range(1, 16)),
    "crop_pct": Field(float, "eval centre-crop ratio", check=_range(0.0, 1.0, low_open=True)),
    "scale_min": Field(float, "lower bound of RandomResizedCrop's scale", default=0.08, check=_range(0.0, 1.0, low_open=True)),
    "hflip": Field(float, "horizontal flip probability", default=0.5, check=_PROB),
    "color_jitter": Field(float, "colour jitter strength (inactive while auto_augment is set)", check=_NONNEG),
    "re_prob": Field(float, "random erasing probability", check=_PROB),
    "interpolation": Field(str, "resize interpolation", default="bicubic", choices=("bicubic", "bilinear", "nearest")),
    "augment_impl": Field(str, "training augmentation: auto (batched where the images and ops allow, else per sample), batch (rsb_tune.augment.batched: a compiled kernel on CPU, torch ops on CUDA), pil (timm's per-sample PIL transforms)", default="auto", choices=("auto", "batch", "pil")),
    # --- seeds (derived from `seed` unless given)
    "seed": Field(int, "master seed of the trial", default=0, check=_range(0, 2**31 - 1), scope="seed"),
    "model_seed": Field(int, "weight initialisation seed", default=None, nullable=True, check=_range(0, 2**32 - 1), scope="seed"),
    "data_seed": Field(int, "data order seed", default=None, nullable=True, check=_range(0, 2**32 - 1), scope="seed"),
    "aug_seed": Field(int, "augmentation, mixup/cutmix and drop-path seed", default=None, nullable=True, check=_range(0, 2**32 - 1), scope="seed"),
    # --- execution
    "device": Field(str, "auto (CUDA when available), cpu or cuda", default="auto", choices=("auto", "cpu", "cuda")),
    "amp": Field(str, "mixed precision: auto (bf16 on CUDA that supports it and on a CPU with bf16 matrix units, AMX or AVX-512 BF16, ~1.2-1.5x faster there; fp32 elsewhere and for a model with a convolution whose bf16 gradient the CPU gets wrong), off, bf16, fp16 (CUDA)", default="auto", choices=("auto", "off", "bf16", "fp16")),
    "channels_last": Field(str, "channels-last memory format: auto (on for CUDA), on, off", default="auto", choices=("auto", "on", "off")),
    "workers_per_trial": Field(int, "data-parallel (DDP) processes per trial; the global batch stays batch_size", default=1, check=_range(1, 1024), scope="study",
                                why="the driver sizes every trial's Ray resources from the study's value: one coordinator, or the workers of a data-parallel trial"),
    "threads": Field(int, "torch threads per trial (default: the trial's CPUs)", default=None, nullable=True, check=_range(1, 512)),
    "workers": Field(int, "data loader worker processes per trial (0: load in the trial process)", default=_DATA.workers, check=_range(0, 64)),
    "eval_batch_size": Field(int, "evaluation batch size", default=256, check=_range(1, 65536)),
    "pack": Field(int, "seeds trained together in one process, batched (torch.func.vmap): K, or auto (on a GPU per trial: up to 32; else 1)", default=1, words=("auto",), check=_range(1, 4096)),
    "checkpoint_every": Field(int, "checkpoint every K epochs (the final epoch is always checkpointed)", default=1, check=_range(1, 100000)),
}

# Keys filled in by the resolver: recorded in every resolved config, never settable.
DERIVED_KEYS = ("lr_resolved", "lr_scale_rule", "epoch_scale")
# The keys that say which data a trial trains on (rsb_tune.data.registry loads each combination once).


@dataclasses.dataclass(frozen=True)
class Layer:
    """One level of the precedence chain: values and the name of where they came from."""

    source: str
    values: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class ResolvedConfig:
    """A validated trial config with, for each key, the layer that set it."""

    values: Mapping[str, Any]
    sources: Mapping[str, str]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.values)


# --------------------------------------------------------------------------- two configs side by side



def follows_from_compared(source: str, *, recipes_differ: bool, datasets_differ: bool) -> bool:
    """Whether a value set by ``source`` may differ between two configs without being named:
    it is derived from other keys (``derived``, ``... scaled with epochs``), comes from a recipe
    and the recipes differ, or from a dataset profile and the datasets differ."""
    if source.startswith("derived") or source.endswith("scaled with epochs"):
        return True
    if recipes_differ and source.startswith("recipe"):
        return True
    return datasets_differ and "profile" in source


def differences(a: ResolvedConfig, b: ResolvedConfig, named: Iterable[str] = ()) -> tuple[KeyDifference, ...]:
    """The keys whose values differ between ``a`` and ``b`` (the seeds aside), in key order.

    A difference is ``compared`` when ``named`` holds its key, when the key is ``recipe``, or
    when either value's source :func:`follows_from_compared`; the rest are confounds."""
    named = set(named)
    missing = object()
    recipes_differ = a.values.get("recipe", missing) != b.values.get("recipe", missing)
    datasets_differ = a.values.get("dataset", missing) != b.values.get("dataset", missing)
    out = []
    for key in sorted(set(a.values) | set(b.values)):
        va, vb = a.values.get(key), b.values.get(key)
        if key in SEED_COLUMNS or (key in a.values and key in b.values and va == vb):
            continue
        sources = (a.sources.get(key, UNKNOWN_SOURCE), b.sources.get(key, UNKNOWN_SOURCE))
        compared = key in named or key == "recipe" or any(follows_from_compared(s, recipes_differ=recipes_differ, datasets_differ=datasets_differ) for s in sources)
        out.append(KeyDifference(key, va, vb, *sources, compared=compared))
    return tuple(out)


def _from_text(value: Any, parse: Callable[[str], Any], noun: str, where: str) -> Any:
    """Numbers written as text (YAML 1.1 reads ``5e-3`` as a string; --set values are text)."""
    if not isinstance(value, str):
        return value
    try:
        return parse(value)
    except ValueError:
        raise ConfigError(f"{where} must be {noun}, got {value!r}") from None


def coerce(key: str, value: Any, source: str) -> Any:
    """Check ``value`` against the schema of ``key``; numeric strings become numbers.

    Raises ConfigError naming the key and the source on an unknown key, a wrong type or a value
    out of range.
    """
    if key in DERIVED_KEYS:
        raise ConfigError(f"{source}: {key!r} is derived by rsb-tune and cannot be set")
    field = FIELDS.get(key)
    if field is None:
        raise ConfigError(f"{source}: unknown key {key!r}{suggest(key, FIELDS)} (see `rsb-tune keys`)")
    where = f"{source}: {key}"
    if isinstance(value, str) and value.lower() in field.words:
        return value.lower()
    if value is None or (isinstance(value, str) and value.lower() in ("null", "none") and field.type is not str):
        if field.nullable:
            return None
        raise ConfigError(f"{where} must not be null")
    t = field.type
    if t is float:
        value = _from_text(value, float, "a number", where)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be finite, got {value!r}")
    elif t is int:
        value = _from_text(value, int, " or ".join(("an integer", *field.words)), where)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
    elif t is str:
        if value is None and field.nullable:
            return None
        if isinstance(value, bool) and field.choices is not None and {"on", "off"} & set(field.choices):
            value = "on" if value else "off"  # YAML 1.1 reads `amp: off` / `--set channels_last=on` as booleans
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        if field.nullable and value.lower() in ("null", "none", "off", ""):
            return None
    elif t is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        value = {str(k): v for k, v in value.items()}
    if field.choices is not None and value not in field.choices:
        raise ConfigError(f"{where}: {value!r} is not allowed; allowed: {', '.join(map(str, field.choices))}{suggest(str(value), map(str, field.choices))}")
    if field.check is not None and value is not None:
        problem = field.check(value)
        if problem:
            raise ConfigError(f"{where} {problem}, got {value!r}")
    return value


def parse_set(items: Iterable[str], source: str = "--set") -> Layer:
    """``["lr=1e-3", "auto_augment=null"]`` -> a Layer; values are parsed as YAML scalars."""
    import yaml

    values: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{source} {item!r}: expected key=value")
        key, _, raw = item.partition("=")
        key = key.strip()
        try:
            parsed = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            parsed = raw
        values[key] = coerce(key, parsed, source)
    return Layer(source, values)


def resolve_lr(lr: float, opt: str, batch_size: int, base_batch: int, rule: str) -> tuple[float, str]:
    """Rescale ``lr`` given at ``base_batch`` to ``batch_size``; returns (lr, concrete rule)."""
    if rule == "auto":
        rule = "sqrt" if opt.lower().startswith(_SQRT_OPTIMIZERS) else "linear"
    ratio = batch_size / base_batch
    factor = {"sqrt": math.sqrt(ratio), "linear": ratio, "none": 1.0}[rule]
    return lr * factor, rule


def _derive_seed(seed: int, stream: int) -> int:
    import numpy as np

    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


SEED_STREAMS = SEED_COLUMNS[1:]  # model_seed, data_seed, aug_seed: stream 0, 1, 2 of a trial's seed


def derive_seeds(seed: int) -> dict[str, int]:
    """A trial's seeds: ``seed`` and the three streams derived from it (weight init, data
    order, augmentation), as every trial, built-in or your own, gets them."""
    return {"seed": int(seed), **{key: _derive_seed(int(seed), stream) for stream, key in enumerate(SEED_STREAMS)}}


def _named(layers: Sequence[Layer], key: str, lookup: Callable[[Any], Any], given: Any) -> Any:
    """What ``lookup`` finds for the value the highest layer gives ``key`` (as for any key,
    the highest wins), else ``given``; an unknown name is an error naming that layer."""
    for layer in reversed(layers):
        if key in layer.values:
            value = coerce(key, layer.values[key], layer.source)
            try:
                return lookup(value)
            except ConfigError as e:
                raise ConfigError(f"{layer.source}: {key}: {e}") from None
    return given


def resolve(recipe, profile, layers: Iterable[Layer] = ()) -> ResolvedConfig:
    """Resolve one config from a recipe (:class:`rsb_tune.planning.recipes.Recipe`), a dataset profile
    (:class:`rsb_tune.data.registry.Profile`) and the layers above them, lowest first. A layer that names
    ``recipe`` or ``dataset`` puts that recipe, or that dataset's profile, in place of the one
    given: a trial of a grid over recipes is resolved from its own recipe."""
    from rsb_tune.data.registry import get_dataset

    layers = tuple(layers)
    recipe = _named(layers, "recipe", recipe.find, recipe)  # through the recipe: its module reads recipe files with this one's schema
    profile = _named(layers, "dataset", lambda name: get_dataset(name).profile, profile)
    raw: dict[str, Any] = {}
    raw_sources: dict[str, str] = {}
    for key, value in recipe.hyperparameters().items():
        raw[key], raw_sources[key] = value, recipe.source_of(key)
    raw["recipe"], raw_sources["recipe"] = recipe.name, recipe.source_of("recipe")
    raw["lr_base_batch"], raw_sources["lr_base_batch"] = recipe.batch_size, recipe.source_of("batch_size")
    for key, field in FIELDS.items():
        if key not in raw and field.has_default:
            raw[key], raw_sources[key] = field.default, "default"
    for key, value in profile.values.items():
        raw[key], raw_sources[key] = coerce(key, value, f"profile {profile.name}"), f"profile {profile.name}"
    return _finish(raw, raw_sources, layers, recipe, profile)


def _finish(raw, raw_sources, layers, recipe, profile) -> ResolvedConfig:
    for layer in layers:
        for key, value in layer.values.items():
            raw[key] = coerce(key, value, layer.source)
            raw_sources[key] = layer.source
    missing = [k for k in FIELDS if k not in raw]
    if missing:
        raise ConfigError(f"no value for {', '.join(missing)} (not in the recipe or profile)")
    values = dict(raw)
    sources = dict(raw_sources)
    values["recipe"] = recipe.name  # the recipe's own spelling (names are case-insensitive)
    # Epochs: the recipe's, scaled to the profile, unless a layer above the recipe set them.
    scale = profile.epoch_scale
    if sources["epochs"].startswith("recipe"):
        values["epochs"] = max(1, round(recipe.epochs * scale))
        sources["epochs"] = f"{sources['epochs']} x epoch_scale {scale} (profile {profile.name})"
    if sources["warmup_epochs"].startswith("recipe"):
        values["warmup_epochs"] = recipe.warmup_epochs * values["epochs"] / recipe.epochs
        sources["warmup_epochs"] = f"{sources['warmup_epochs']} scaled with epochs"
    values["epoch_scale"] = values["epochs"] / recipe.epochs
    sources["epoch_scale"] = "derived"
    values["lr_resolved"], values["lr_scale_rule"] = resolve_lr(
        values["lr"], values["opt"], values["batch_size"], values["lr_base_batch"], values["lr_scale"]
    )
    sources["lr_resolved"] = sources["lr_scale_rule"] = "derived"
    for stream, key in enumerate(SEED_STREAMS):
        if values[key] is None:
            values[key] = _derive_seed(values["seed"], stream)
            sources[key] = "derived from seed"
    _check_cross(values, sources)
    return ResolvedConfig(values=values, sources=sources)


def _check_cross(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    mixing = values["mixup_alpha"] > 0 or values["cutmix_alpha"] > 0
    workers = values["workers_per_trial"]
    if values["batch_size"] % workers:
        raise ConfigError(f"{sources['batch_size']}: batch_size {values['batch_size']} must be divisible by workers_per_trial {workers}")
    if mixing and workers > 1 and (values["batch_size"] // workers) % 2:
        raise ConfigError(f"{sources['batch_size']}: the per-worker batch {values['batch_size'] // workers} must be even while mixup/cutmix is on")
    if mixing and values["batch_size"] % 2:
        raise ConfigError(
            f"{sources['batch_size']}: batch_size {values['batch_size']} must be even while mixup/cutmix is on "
            f"(mixup_alpha={values['mixup_alpha']}, cutmix_alpha={values['cutmix_alpha']})"
        )
    if values["warmup_epochs"] > values["epochs"]:
        raise ConfigError(f"{sources['warmup_epochs']}: warmup_epochs {values['warmup_epochs']} exceeds epochs {values['epochs']}")
    # a dataset without its root is refused when it is loaded (rsb_tune.data.readers), naming its flag


def dataset_layers(*, data: str | None = None, dataset: str | None = None, data_dir: str | None = None) -> list:
    """timm train.py's ``--dataset NAME --data-dir ROOT`` and the short ``--data PATH`` (a folder
    or a .tar; with ``dataset`` it is the root) as config layers. Keyword arguments, so the CLI
    and the Python API call it alike."""
    if data and data_dir:
        raise ConfigError("--data and --data-dir both give the dataset root; use one")
    root = data_dir or data
    layers = []
    if dataset:
        layers.append(Layer("--dataset", {"dataset": dataset}))
    elif data:
        layers.append(Layer("--data", {"dataset": "folder"}))
    if root:
        flag = "--data-dir" if data_dir else "--data"
        layers.append(Layer(flag, {"data_path": str(Path(root).expanduser().resolve())}))
    return layers
