"""A fine-tune study's plan: trial i of a source study, continued on another dataset.

:func:`plan_finetune` turns a source study (its name, recipe and, per finished trial, its
resolved config and the directory of its final checkpoint) into a :class:`StudyPlan` of kind
``finetune``: one trial per source trial, under the same trial id, resolved through the one
precedence chain::

    source recipe < defaults < target profile < fine-tuning recipe (FINETUNE_RECIPE)
    < the source's model (model, model_kwargs) < command line < the source trial (seed, init_from)

Each trial's ``init_from`` names its source trial's final checkpoint: the trial loads those
weights (as data only) on every layer but the classifier, which is new for the target's
classes (:func:`rsb_tune.training.trial.initial_model`), then trains as any trial does.

Its seeds are its own: ``seed`` = the source trial's seed + :data:`FINETUNE_SEED_OFFSET`, and the
three streams derived from it as for any trial, so a fine-tune never replays its source's data
order or augmentation draws, and trial i of the fine-tune still pairs with trial i of the source.

The fine-tuning recipe is DeiT's, as given by its authors for CIFAR-10 and Stanford Cars
(facebookresearch/deit issue #45, H. Touvron, 2021-01-22): SGD, lr 0.01 at batch 768, weight
decay 1e-4, no random erasing and no stochastic depth; "all other elements are the same as for
training on ImageNet", i.e. DeiT's ImageNet recipe: cross-entropy with label smoothing 0.1,
mixup 0.8, cutmix 1.0, RandAugment rand-m9-mstd0.5-inc1, repeated augmentation 3, cosine
schedule with warm-up. Epochs and warm-up follow the chain (the source recipe's, scaled by the
target's profile); the lr is rescaled to the run's batch by the profile's rule.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from rsb_tune.errors import ConfigError, arg

__all__ = ["FINETUNE_RECIPE", "FINETUNE_SOURCE", "FINETUNE_SEED_OFFSET", "TRANSFER_TARGETS", "SourceTrial", "plan_finetune"]

FINETUNE_SOURCE = "finetune recipe (DeiT, facebookresearch/deit#45)"
FINETUNE_RECIPE: Mapping[str, Any] = {
    "opt": "sgd",
    "lr": 0.01,
    "lr_base_batch": 768,
    "weight_decay": 1e-4,
    "momentum": 0.9,
    "re_prob": 0.0,
    "drop_path": 0.0,
    "loss": "ce",
    "smoothing": 0.1,
    "mixup_alpha": 0.8,
    "cutmix_alpha": 1.0,
    "auto_augment": "rand-m9-mstd0.5-inc1",
    "repeated_aug": 3,
    "sched": "cosine",
}
FINETUNE_SEED_OFFSET = 1_000_000  # a fine-tune's seed: its source trial's + this
TRANSFER_TARGETS: Mapping[str, str] = {"digits": "digits-parity"}  # source dataset -> default target


@dataclasses.dataclass(frozen=True)
class SourceTrial:
    """One finished trial of the source study: its resolved config and its final checkpoint's
    directory."""

    config: Mapping[str, Any]
    checkpoint: str


def plan_finetune(source: str, trials: Mapping[str, SourceTrial], *, dataset: str | None = None, **experiment):
    """The :class:`rsb_tune.planning.study_plan.StudyPlan` of fine-tuning every trial of
    ``trials`` (of the study named ``source``) on ``dataset`` (default: the source dataset's
    transfer target, :data:`TRANSFER_TARGETS`). ``experiment``: ``epochs``, ``overrides``, ...
    as for a seed study (not ``model``: the source's is kept)."""
    from rsb_tune.data.registry import get_dataset
    from rsb_tune.planning.config import FIELDS, Layer, resolve
    from rsb_tune.planning.recipes import get_recipe
    from rsb_tune.planning.space import Plan
    from rsb_tune.planning.study_plan import EXPERIMENT, StudyPlan, _experiment_layers
    from rsb_tune.planning.validate import check_plan

    if not trials:
        raise ConfigError(f"{arg('source', source, flag='--from')}: no finished trial with its final checkpoint to fine-tune from")
    unknown = sorted(set(experiment) - (EXPERIMENT - {"model", "dataset"}))
    if unknown:
        raise ConfigError(f"unknown argument {unknown[0]!r} for a fine-tune (the model is the source's)")
    first = next(iter(trials.values())).config
    recipes = {t.config["recipe"] for t in trials.values()}
    if dataset is None and experiment.get("data") is not None:
        dataset = "folder"
    if dataset is None:
        dataset = TRANSFER_TARGETS.get(first["dataset"])
        if dataset is None:
            raise ConfigError(f"{arg('dataset', flag='--dataset')}: required for a source trained on {first['dataset']!r} (a default target exists for {', '.join(TRANSFER_TARGETS)})")
    spec = get_dataset(dataset)
    common = [Layer(FINETUNE_SOURCE, dict(FINETUNE_RECIPE)), Layer(f"source study {source}", {"model": first["model"], "model_kwargs": first["model_kwargs"]}), *_experiment_layers(dataset=dataset, **experiment)]
    top = FIELDS["seed"].check
    out: dict[str, dict[str, Any]] = {}
    for tid, trial in trials.items():
        seed = int(trial.config["seed"]) + FINETUNE_SEED_OFFSET
        if top(seed):
            raise ConfigError(f"source study {source}: trial {tid}'s seed {trial.config['seed']} + {FINETUNE_SEED_OFFSET} (the fine-tune offset) {top(seed)}")
        own = Layer(f"source trial {source}/{tid}", {"seed": seed, "init_from": {"study": source, "trial_id": tid, "checkpoint": str(trial.checkpoint)}})
        out[tid] = resolve(get_recipe(trial.config["recipe"]), spec.profile, [*common, own]).to_dict()
    base = resolve(get_recipe(first["recipe"]), spec.profile, common)
    plan = Plan(base=base, trials=out, params=("recipe",) if len(recipes) > 1 else (), layers=tuple(common))
    check_plan(plan, None)
    lineage = {
        "study": source,
        "recipe": sorted(recipes)[0] if len(recipes) == 1 else sorted(recipes),
        "dataset": first["dataset"],
        "trials": {tid: {"seed": int(t.config["seed"]), "checkpoint": str(t.checkpoint)} for tid, t in trials.items()},
        "seed_offset": FINETUNE_SEED_OFFSET,
        "recipe_source": FINETUNE_SOURCE,
    }
    return StudyPlan("finetune", get_recipe(first["recipe"]), spec, None, plan, f"{source}-{dataset}", lineage=lineage)
