"""Recipe values against ../shared/RSB_REFERENCE.md (the paper's table)."""

import pytest

from rsb_tune.errors import ConfigError
from rsb_tune.planning.recipes import RECIPES, get_recipe

# Transcribed from RSB_REFERENCE.md's recipe table; independent of rsb_tune/planning/recipes.py.
REFERENCE = {
    "A1": dict(epochs=600, batch_size=2048, img_size=224, test_img_size=224, opt="lamb", lr=5e-3, weight_decay=0.01,
               sched="cosine", warmup_epochs=5, loss="bce", smoothing=0.1, bce_target_thresh=0.2, mixup_alpha=0.2,
               cutmix_alpha=1.0, auto_augment="rand-m7-mstd0.5-inc1", repeated_aug=3, drop_path=0.05, crop_pct=0.95,
               paper_val_top1=80.4, paper_v2_top1=68.47),
    "A2": dict(epochs=300, batch_size=2048, img_size=224, test_img_size=224, opt="lamb", lr=5e-3, weight_decay=0.02,
               sched="cosine", warmup_epochs=5, loss="bce", smoothing=0.0, bce_target_thresh=0.2, mixup_alpha=0.1,
               cutmix_alpha=1.0, auto_augment="rand-m7-mstd0.5-inc1", repeated_aug=3, drop_path=0.05, crop_pct=0.95,
               paper_val_top1=79.8, paper_v2_top1=67.81),
    "A3": dict(epochs=100, batch_size=2048, img_size=160, test_img_size=224, opt="lamb", lr=8e-3, weight_decay=0.02,
               sched="cosine", warmup_epochs=5, loss="bce", smoothing=0.0, bce_target_thresh=0.2, mixup_alpha=0.1,
               cutmix_alpha=1.0, auto_augment="rand-m6-mstd0.5-inc1", repeated_aug=1, drop_path=0.0, crop_pct=0.95,
               paper_val_top1=78.1, paper_v2_top1=65.67),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_recipe_matches_reference(name):
    recipe = get_recipe(name)
    for key, expected in REFERENCE[name].items():
        assert getattr(recipe, key) == pytest.approx(expected), key
    # EMA, dropout, colour jitter and random erasing are off in all three
    assert recipe.color_jitter == 0 and recipe.re_prob == 0


def test_registry_is_the_three_recipes_and_immutable():
    assert list(RECIPES) == ["A1", "A2", "A3"]
    with pytest.raises(TypeError):
        RECIPES["A4"] = RECIPES["A2"]
    with pytest.raises(Exception):
        RECIPES["A2"].lr = 1.0


def test_epoch_ratio_is_6_3_1():
    e = [RECIPES[n].epochs for n in ("A1", "A2", "A3")]
    assert e[0] / e[2] == 6 and e[1] / e[2] == 3


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_unconfirmed_values_are_marked(name):
    assert "bce_target_thresh" in RECIPES[name].unconfirmed
    assert RECIPES[name].to_dict()["unconfirmed"] == ["bce_target_thresh"]


def test_unknown_recipe_suggests():
    with pytest.raises(ConfigError, match="allowed: A1, A2, A3"):
        get_recipe("B2")
    assert get_recipe("a2").name == "A2"
