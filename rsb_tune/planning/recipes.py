"""Training recipes as named, immutable values: the paper's A1, A2, A3, DeiT's T2, and recipes
of your own.

A1-A3 hold the paper's ImageNet-1k values for ResNet-50 (Wightman, Touvron, Jegou 2021, arXiv
2110.00476); T2 holds DeiT's published procedure (Touvron et al. 2021, arXiv 2012.12877), the
procedure tuned for DeiT-S that the paper pits against A2. A recipe never holds run-level choices
(dataset, model, image size of a small dataset): those come from a dataset profile and the command
line, see :mod:`rsb_tune.planning.config`.

A recipe of your own is a YAML file, ``recipes/NAME.yaml`` in the project directory (the current
directory) or any path, that ``extends:`` another recipe and changes some of its values, or stands
alone and gives them all::

    # recipes/a2_wd05.yaml: A2 with DeiT's weight decay
    extends: A2
    description: A2 with weight decay 0.05
    weight_decay: 0.05

Its name is the file's stem; it is used wherever a recipe name is (``--recipe``, a space file's
``recipe:`` and grid axes, the Python API). Every value names its source: the file for the values
it sets, the recipe it extends for the rest (:meth:`Recipe.source_of`).

Sources, per shipped value, are in ``../shared/RSB_REFERENCE.md`` and ``docs/recipes.md``. Values the
source does not confirm are listed in :attr:`Recipe.unconfirmed`; they stay overridable like every
other key.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

__all__ = ["Recipe", "RECIPES", "DEFAULT_RECIPE", "PROJECT_DIR", "EXTRA_KEYS", "get_recipe", "recipe_names", "load_recipe", "project_recipes"]

DEFAULT_RECIPE = "A2"  # the recipe of the paper's 100-seed study
PROJECT_DIR = "recipes"  # a project's own recipes: recipes/NAME.yaml under the current directory

# Trial-config keys a recipe may set besides its fields: the procedure's other knobs. Run-level
# choices (the data, the model, execution, seeds) are refused in a recipe file.
EXTRA_KEYS = ("lr_scale", "momentum", "warmup_lr", "min_lr", "mixup_prob", "mixup_switch_prob", "scale_min", "hflip", "interpolation")
# A recipe file's keys that are not trial-config values.
_FILE_KEYS = ("extends", "description", "unconfirmed", "paper_val_top1", "paper_v2_top1")
_META = ("name", "description", "paper_val_top1", "paper_v2_top1", "unconfirmed", "extra", "path", "origin", "reference")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One training procedure; field names are trial-config keys (see :mod:`rsb_tune.planning.config`).
    ``extra`` holds the other procedure keys it sets (:data:`EXTRA_KEYS`); ``path`` is the YAML
    file of a recipe of your own, ``origin`` the source of each of its values that it inherits."""

    name: str
    description: str
    epochs: int
    batch_size: int
    img_size: int
    test_img_size: int
    opt: str
    lr: float
    weight_decay: float
    sched: str
    warmup_epochs: float
    loss: str
    smoothing: float
    bce_target_thresh: float | None
    mixup_alpha: float
    cutmix_alpha: float
    auto_augment: str | None
    repeated_aug: int
    drop_path: float
    crop_pct: float
    color_jitter: float
    re_prob: float
    paper_val_top1: float | None
    paper_v2_top1: float | None
    unconfirmed: frozenset = frozenset()
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)
    path: str | None = None
    origin: Mapping[str, str] = dataclasses.field(default_factory=dict, hash=False)
    reference: str = "ImageNet-1k / ResNet-50 values of the paper (arXiv 2110.00476)"

    def hyperparameters(self) -> dict[str, Any]:
        """The recipe's trial-config values (no name, description, paper results)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in _META}
        return {**out, **self.extra}

    @staticmethod
    def find(spec: "str | Path") -> "Recipe":
        """:func:`get_recipe`, for :func:`rsb_tune.planning.config.resolve` (which validates recipe files' values, so cannot import this module)."""
        return get_recipe(spec)

    @property
    def spec(self) -> str:
        """What :func:`get_recipe` finds it by from any directory: its name, or its file's absolute path."""
        return self.name if self.path is None else str(Path(self.path).resolve())

    def source_of(self, key: str) -> str:
        """Where the recipe's value of ``key`` comes from, as the resolved config records it
        (``recipe A2``; a file's own values: ``recipe NAME (path)``); always starts with ``recipe``."""
        return self.origin.get(key, f"recipe {self.name}" if self.path is None else f"recipe {self.name} ({self.path})")

    def to_dict(self) -> dict[str, Any]:
        """Everything, for ``rsb-tune recipes show``; unconfirmed keys listed by name."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("extra", "origin", "path", "reference", "unconfirmed")}
        out.update(self.extra)
        out["unconfirmed"] = sorted(self.unconfirmed)
        return out


_COMMON = dict(
    batch_size=2048,
    opt="lamb",
    sched="cosine",
    warmup_epochs=5,
    loss="bce",
    # Only community command lines give the BCE target threshold; the paper does not.
    bce_target_thresh=0.2,
    cutmix_alpha=1.0,
    crop_pct=0.95,
    color_jitter=0.0,
    re_prob=0.0,
    test_img_size=224,
    unconfirmed=frozenset({"bce_target_thresh"}),
)

# DeiT's procedure (Touvron et al. 2021, arXiv 2012.12877, Table 9; github.com/facebookresearch/deit
# main.py defaults at 7e160fe, README: DeiT-S on 4 GPUs x 256 images). Each value below is a main.py
# default unless said otherwise.
_T2 = Recipe(
    name="T2",
    description="DeiT's procedure (Touvron et al. 2021), the one tuned for DeiT-S that the paper sets against A2: "
    "AdamW, CE, strong augmentation, 300 epochs",
    epochs=300,
    batch_size=1024,  # README: 4 GPUs x --batch-size 256 for DeiT-S; Table 9: 1024
    img_size=224,  # --input-size
    test_img_size=224,
    opt="adamw",
    lr=1e-3,  # --lr 5e-4 scaled x batch/512 (main.py's linear rule): 1e-3 at 1024
    weight_decay=0.05,
    sched="cosine",
    warmup_epochs=5,
    loss="ce",  # SoftTargetCrossEntropy under mixup (--bce-loss off)
    smoothing=0.1,
    bce_target_thresh=None,
    mixup_alpha=0.8,
    cutmix_alpha=1.0,
    auto_augment="rand-m9-mstd0.5-inc1",
    repeated_aug=3,  # --repeated-aug on: RASampler(num_repeats=3)
    drop_path=0.1,
    crop_pct=0.875,  # --eval-crop-ratio
    color_jitter=0.3,  # --color-jitter (inactive while auto_augment is set, as in timm)
    re_prob=0.25,  # --reprob (DeiT erases with random pixels, --remode pixel; timm's create_transform: constant)
    paper_val_top1=None,  # the paper reports ResNet-50 under A1-A3 only; DeiT-S under T2 is 79.8 (DeiT Table 1)
    paper_v2_top1=None,
    unconfirmed=frozenset(),
    extra={"lr_scale": "linear", "min_lr": 1e-5, "warmup_lr": 1e-6},  # main.py: lr x batch/512; --min-lr; --warmup-lr
    reference="ImageNet-1k / DeiT-S values of DeiT (arXiv 2012.12877, Table 9; facebookresearch/deit main.py)",
)

RECIPES: Mapping[str, Recipe] = MappingProxyType(
    {
        "A1": Recipe(
            name="A1",
            description="600 epochs, the most accurate and most expensive procedure",
            epochs=600,
            img_size=224,
            lr=5e-3,
            weight_decay=0.01,
            smoothing=0.1,
            mixup_alpha=0.2,
            auto_augment="rand-m7-mstd0.5-inc1",
            repeated_aug=3,
            drop_path=0.05,
            paper_val_top1=80.4,
            paper_v2_top1=68.47,
            **_COMMON,
        ),
        "A2": Recipe(
            name="A2",
            description="300 epochs, the procedure of the paper's 100-seed study",
            epochs=300,
            img_size=224,
            lr=5e-3,
            weight_decay=0.02,
            smoothing=0.0,
            mixup_alpha=0.1,
            auto_augment="rand-m7-mstd0.5-inc1",
            repeated_aug=3,
            drop_path=0.05,
            paper_val_top1=79.8,
            paper_v2_top1=67.81,
            **_COMMON,
        ),
        "A3": Recipe(
            name="A3",
            description="100 epochs at low train resolution (160 px), the cheap procedure",
            epochs=100,
            img_size=160,
            lr=8e-3,
            weight_decay=0.02,
            smoothing=0.0,
            mixup_alpha=0.1,
            auto_augment="rand-m6-mstd0.5-inc1",
            repeated_aug=1,
            drop_path=0.0,
            paper_val_top1=78.1,
            paper_v2_top1=65.67,
            **_COMMON,
        ),
        "T2": _T2,
    }
)


def recipe_names() -> list[str]:
    """The shipped recipes, then the project's own (``recipes/*.yaml`` here)."""
    return [*RECIPES, *project_recipes()]


def project_recipes(directory: str | Path = PROJECT_DIR) -> dict[str, str]:
    """name -> path of each recipe file of the project (``recipes/*.yaml`` under the current directory)."""
    folder = Path(directory)
    if not folder.is_dir():
        return {}
    return {p.stem: str(p) for p in sorted(folder.iterdir()) if p.suffix in (".yaml", ".yml") and p.is_file()}


def get_recipe(spec: "str | Path | Recipe") -> Recipe:
    """A recipe by name (a shipped one, case-insensitive, or ``recipes/NAME.yaml`` of the project)
    or by the path of a recipe file; anything else raises :class:`ConfigError`."""
    from rsb_tune.errors import ConfigError, suggest

    if isinstance(spec, Recipe):
        return spec
    key = spec.upper() if isinstance(spec, str) else spec
    if key in RECIPES:
        return RECIPES[key]
    own = project_recipes()
    if isinstance(spec, (str, Path)) and str(spec) in own:
        return load_recipe(own[str(spec)])
    if isinstance(spec, (str, Path)) and str(spec).endswith((".yaml", ".yml")):
        return load_recipe(spec)
    for loaded in reversed(_LOADED.values()):  # a file given by path earlier in this process, named by its stem
        if loaded.name == spec:
            return loaded
    names = [*RECIPES, *own]
    raise ConfigError(f"unknown recipe {spec!r}; allowed: {', '.join(names)}{suggest(str(spec), names)}, or the path of a recipe YAML file (see `rsb-tune recipes`)")


_LOADED: dict[tuple, Recipe] = {}  # (path, mtime, size) -> Recipe: a study resolves every trial from it


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file; every error names the file and the key."""
    from rsb_tune.errors import ConfigError

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: no such recipe file")
    stat = p.stat()
    key = (str(p.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _LOADED:
        _LOADED[key] = _read(p, ())
    return _LOADED[key]


def _parent(spec: Any, path: Path, seen: tuple) -> Recipe:
    """What ``extends:`` names: a shipped recipe, a sibling ``NAME.yaml``, or a path from the file's folder."""
    from rsb_tune.errors import ConfigError, suggest

    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"{path}: extends must be a recipe name or the path of a recipe file, got {spec!r}")
    if spec.upper() in RECIPES:
        return RECIPES[spec.upper()]
    target = path.parent / (spec if spec.endswith((".yaml", ".yml")) else f"{spec}.yaml")
    if not target.is_file():
        siblings = [q.stem for q in path.parent.glob("*.yaml")]
        raise ConfigError(f"{path}: extends: no recipe {spec!r}; shipped: {', '.join(RECIPES)}{suggest(spec, [*RECIPES, *siblings])}, or a recipe file beside this one")
    return _read(target, seen)


def _read(path: Path, seen: tuple) -> Recipe:
    from rsb_tune.errors import ConfigError, suggest
    from rsb_tune.planning.config import FIELDS, coerce
    from rsb_tune.store.yamltext import read_config_file

    where = str(path)
    if path.resolve() in seen:
        chain = " -> ".join(str(s) for s in (*seen, path.resolve()))
        raise ConfigError(f"{where}: extends itself ({chain})")
    raw = read_config_file(path, ConfigError)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of recipe keys to values (extends: A2, lr: ...)")
    name = path.stem
    if name.upper() in RECIPES:
        raise ConfigError(f"{where}: {name!r} is the name of a shipped recipe; give the file another name")
    fields = [f.name for f in dataclasses.fields(Recipe) if f.name not in _META]
    allowed = (*_FILE_KEYS, *fields, *EXTRA_KEYS)
    values: dict[str, Any] = {}
    for k, v in raw.items():
        if k in _FILE_KEYS:
            continue
        if k not in allowed:
            if k in FIELDS:
                raise ConfigError(f"{where}: {k!r} is not a recipe key but a run-level choice (the data, the model, execution, seeds): set it in a space file or with --set")
            raise ConfigError(f"{where}: unknown key {k!r}{suggest(str(k), allowed)}; allowed: {', '.join(allowed)}")
        values[k] = coerce(k, v, where)
    if "opt" in values:
        import timm.optim

        optimizers = timm.optim.list_optimizers()
        if values["opt"].lower() not in optimizers:
            raise ConfigError(f"{where}: opt: unknown timm optimizer {values['opt']!r}{suggest(values['opt'].lower(), optimizers)} (see timm.optim.list_optimizers())")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{where}: description must be a string, got {description!r}")
    marked = raw.get("unconfirmed", [])
    if not isinstance(marked, list) or any(m not in (*fields, *EXTRA_KEYS) for m in marked):
        raise ConfigError(f"{where}: unconfirmed must be a list of recipe keys, got {marked!r}")
    results = {}
    for k in ("paper_val_top1", "paper_v2_top1"):
        v = raw.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ConfigError(f"{where}: {k} must be a number or null, got {v!r}")
        results[k] = None if v is None else float(v)
    if "extends" in raw:
        parent = _parent(raw["extends"], path, (*seen, path.resolve()))
        inherited = parent.hyperparameters()
        origin = {k: parent.source_of(k) for k in inherited if k not in values}
        changed = ", ".join(f"{k}={v}" for k, v in values.items()) or "no change"
        description = description or f"{parent.name} with {changed}"
        unconfirmed = (parent.unconfirmed - set(values)) | set(marked)
        reference = f"{where}: {parent.name} ({parent.reference}) with the values of this file"
    else:
        missing = [k for k in fields if k not in values]
        if missing:
            raise ConfigError(f"{where}: a recipe without `extends:` gives every recipe key; missing: {', '.join(missing)} (or add `extends: A2`)")
        inherited, origin, unconfirmed, reference = {}, {}, set(marked), f"{where}: a stand-alone recipe"
    merged = {**inherited, **values}
    return Recipe(
        name=name,
        description=description,
        **{k: merged[k] for k in fields},
        **results,
        unconfirmed=frozenset(unconfirmed),
        extra={k: merged[k] for k in EXTRA_KEYS if k in merged},
        path=where,
        origin=origin,
        reference=reference,
    )
