"""`recipe` and `dataset` as real grid axes, end to end: each trial trains its own recipe and its
own data (real Ray, real training; the per-epoch rows are the proof)."""

from __future__ import annotations

import numpy as np
import pytest

import rsb_tune
from rsb_tune.planning.recipes import get_recipe
from tests.test_datasets import write_cifar10

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def axes(tmp_path_factory):
    """Two small grids run from Python in one Ray session: recipes A2 and A3 on digits (the
    recipes' own epochs: 15 and 5), and digits against a 40-image CIFAR-10 written here (1 epoch)."""
    tmp = tmp_path_factory.mktemp("axes")
    cifar = write_cifar10(tmp / "cifar", n_train=40, n_test=20)
    (tmp / "recipes.yaml").write_text("# A2 or A3?\nseeds: [0]\nbase: {batch_size: 256}\ngrid:\n  recipe: [A2, A3]\n")
    (tmp / "datasets.yaml").write_text(f"# digits or CIFAR?\nseeds: [0]\nbase: {{data_path: {cifar}, epochs: 1, batch_size: 32}}\ngrid:\n  dataset: [digits, torch/cifar10]\n")
    storage = str(tmp / "st")
    return {name: rsb_tune.grid(str(tmp / f"{name}.yaml"), storage=storage, name=name, quiet=True) for name in ("recipes", "datasets")}


def test_a_grid_over_recipes_trains_each_trials_own_recipe(axes):
    study = axes["recipes"]
    trials, epochs = study.trials.set_index("recipe"), study.epochs
    assert list(trials.index) == ["A2", "A3"] and (trials.status == "ok").all()
    assert study.meta["recipe"] == ["A2", "A3"] and study.meta["params"] == ["recipe"]
    for name in ("A2", "A3"):
        recipe, row = get_recipe(name), trials.loc[name]
        assert (row.lr, row.repeated_aug, row.drop_path, row.auto_augment) == (recipe.lr, recipe.repeated_aug, recipe.drop_path, recipe.auto_augment)
        assert row.epochs == row.epochs_done == recipe.epochs // 20  # the digits profile's 0.05 of the paper's
        assert row.batch_size == 256  # the space's base wins over both recipes and the profile
        lr = epochs[epochs.trial_id == row.trial_id].sort_values("epoch")["lr"].to_numpy()
        assert len(lr) == recipe.epochs // 20  # one row per epoch of its own schedule
        assert recipe.lr * 0.8 < lr[0] <= recipe.lr  # after the first epoch: near its own peak lr
        assert lr[-1] < 1e-4  # its cosine ends with its own last epoch
    assert study.plan["t0001"]["recipe"] == "A3" and study.config["recipe"] == "A2"


def test_a_grid_over_datasets_trains_each_on_its_own_data(axes):
    study = axes["datasets"]
    trials = study.trials.set_index("dataset")
    assert list(trials.index) == ["digits", "torch/cifar10"] and (trials.status == "ok").all()
    digits, cifar = trials.loc["digits"], trials.loc["torch/cifar10"]
    assert (digits.n_val, digits.n_v2, cifar.n_val, cifar.n_v2) == (359, 360, 20, 0)
    assert (digits.model, cifar.model) == ("resnet10t", "resnet18_cifar")  # each its own profile
    assert digits.val_loss != cifar.val_loss and np.isnan(cifar.v2_top1) and not np.isnan(digits.v2_top1)
    assert cifar.val_top1 % 5 == pytest.approx(0, abs=1e-6)  # 20 test images: multiples of 5 %
    for row in trials.itertuples():
        pred = np.load(study.path / "predictions" / f"{row.trial_id}.npz")
        assert pred["val_correct"].shape == (row.n_val,) and pred["val_correct"].mean() * 100 == pytest.approx(row.val_top1)
    meta = study.meta
    assert meta["dataset"] == ["digits", "torch/cifar10"] and meta["data_sizes"] is None
    assert [r["sizes"]["n_train"] for r in meta["data_specs"]] == [1078, 40]
