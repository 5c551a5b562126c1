"""The search-space compiler and its errors."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from rsb_tune.planning.config import Layer
from rsb_tune.data.registry import get_dataset
from rsb_tune.errors import ConfigError
from rsb_tune.planning.recipes import get_recipe
from rsb_tune.planning.space import build_plan, load_space, seed_list

REPO = Path(__file__).resolve().parents[1]
PROFILE = get_dataset("digits").profile


def write(tmp_path, text, name="space.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_grid_times_seeds(tmp_path):
    p = write(tmp_path, "recipe: A2\nseeds: [3, 4]\nbase: {drop_path: 0.0}\ngrid:\n  lr: [1.0e-3, 2e-3]\n  opt: [lamb, adamw, sgd]\n")
    space = load_space(p)
    plan = build_plan(get_recipe(space.recipe), PROFILE, seeds=space.seeds, space=space)
    assert len(plan.trials) == 2 * 3 * 2 and plan.params == ("lr", "opt")
    combos = {(c["lr"], c["opt"], c["seed"]) for c in plan.trials.values()}
    assert combos == {(lr, o, s) for lr in (1e-3, 2e-3) for o in ("lamb", "adamw", "sgd") for s in (3, 4)}
    assert all(c["drop_path"] == 0.0 for c in plan.trials.values())
    assert list(plan.trials) == [f"t{i:04d}" for i in range(12)]


SHIPPED = sorted(p.stem for p in (REPO / "search_spaces").glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_spaces_compile_and_validate(name):
    from rsb_tune.planning.space import find_space, shipped_spaces
    from rsb_tune.planning.validate import check_plan

    path = REPO / "search_spaces" / f"{name}.yaml"
    assert path.read_text().lstrip().startswith("#"), "each space file opens with the question it answers"
    assert shipped_spaces()[name][1], "the question is listed by `rsb-tune spaces`"
    assert find_space(name) == find_space(f"{name}.yaml") and load_space(find_space(name)).raw == load_space(path).raw
    space = load_space(path)
    plan = build_plan(get_recipe(space.recipe), PROFILE, seeds=space.seeds, space=space)
    assert len(plan.trials) >= 4 if space.search == "grid" else plan.resolver is not None
    check_plan(plan, space)  # every model and optimizer exists in timm


def test_every_shipped_space_is_package_data():
    from rsb_tune.planning.space import shipped_spaces

    assert sorted(shipped_spaces()) == SHIPPED and len(SHIPPED) >= 6


def test_an_existing_path_wins_over_a_shipped_name(tmp_path, monkeypatch):
    from rsb_tune.planning.space import find_space

    monkeypatch.chdir(tmp_path)
    assert find_space("lamb_bce.yaml") != "lamb_bce.yaml"  # no such file here: the shipped one
    (tmp_path / "lamb_bce.yaml").write_text("recipe: A3\n")
    assert find_space("lamb_bce.yaml") == "lamb_bce.yaml" and load_space(find_space("lamb_bce.yaml")).recipe == "A3"
    with pytest.raises(ConfigError, match="no shipped space of that name; did you mean 'lamb_bce'"):
        find_space("lamb_bc")


@pytest.mark.parametrize(
    "text,message",
    [
        ("grid: {lr: [1, 2]\n", "malformed YAML at line"),
        ("- a\n- b\n", "expected a mapping"),
        ("grids: {lr: [1e-3]}\n", "unknown top-level key 'grids'; did you mean 'grid'"),
        ("grid: {lrr: [1.0e-3]}\n", "unknown key 'lrr'"),
        ("grid: {lr: []}\n", "lr is an empty list"),
        ("grid: {lr: 0.1}\n", "must be a list"),
        ("grid: {lr: [0.1, -1]}\n", "lr must be > 0.0"),
        ("grid: {epochs: [one]}\n", "must be an integer"),
        ("grid: {seed: [1, 2]}\n", "list seeds under 'seeds'"),
        ("search: optuna\nnum_samples: 2\nparams: {model_seed: {int: [0, 9]}}\n", "'model_seed' cannot be a searched param; list seeds under 'seeds'"),
        ("grid: {workers_per_trial: [1, 2]}\n", "grid: 'workers_per_trial' cannot be a grid axis: it holds one value per study (the driver sizes"),
        ("search: optuna\nnum_samples: 2\nparams: {workers_per_trial: {choice: [1, 2]}}\n", "'workers_per_trial' cannot be a searched param: it holds one value per study"),
        ("search: optuna\nnum_samples: 2\nparams: {val_holdout: {uniform: [0.1, 0.2]}}\n", "val_holdout names the data trials train on: search it as {choice: [values]}"),
        ("recipe: A2\nbase: {recipe: A3}\n", "recipe is given both at the top level and in base"),
        ("seeds: []\n", "empty list"),
        ("seeds: {start: 0, n: 0}\n", "must be an integer >= 1"),
        ("metric: val_acc\n", "metric 'val_acc' is not allowed"),
        ("mode: maximize\n", "allowed: min, max"),
        ("base: {drop_path: 1.5}\n", "drop_path must be < 1.0"),
        ("base: {lr: 1.0e-3}\ngrid: {lr: [1.0e-3]}\n", "both in base and grid"),
        # cases: errors name the case's index
        ("cases: {model: resnet10t}\n", "cases must be a non-empty list of mappings"),
        ("cases: []\n", "cases must be a non-empty list of mappings"),
        ("cases:\n  - {model: resnet10t}\n  - resnet18\n", "space.yaml: cases[1] must be a non-empty mapping"),
        ("cases:\n  - {model: resnet10t}\n  - {modle: resnet18}\n", "space.yaml: cases[1]: unknown key 'modle'; did you mean 'model'"),
        ("cases:\n  - {lr: fast}\n", "space.yaml: cases[0]: lr must be a number"),
        ("cases:\n  - {seed: 3}\n", "cases[0]: 'seed' cannot be set by a case; list seeds under 'seeds'"),
        ("cases:\n  - {workers_per_trial: 2}\n", "cases[0]: 'workers_per_trial' cannot be set by a case: it holds one value per study"),
        ("cases:\n  - {recipe: A2}\ngrid: {recipe: [A2, T2]}\n", "cases[0]: 'recipe' is also in grid"),
        ("base: {model: resnet18}\ncases:\n  - {model: resnet10t}\n", "cases[0]: 'model' is also in base"),
        ("cases:\n  - {model: resnet10t}\n  - {model: resnet10t}\n", "cases[1] repeats cases[0]"),
        ("search: optuna\nnum_samples: 2\ncases:\n  - {model: resnet10t}\nparams: {lr: {loguniform: [1.0e-3, 1.0e-2]}}\n", "`search: optuna` samples `params`; remove `cases`"),
    ],
)
def test_space_errors_name_file_and_key(tmp_path, text, message):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_space(p)
    assert str(p) in str(e.value) and message in str(e.value)


def test_missing_space_file(tmp_path):
    with pytest.raises(ConfigError, match="no such space file"):
        load_space(tmp_path / "nope.yaml")


def test_set_cannot_override_a_grid_axis(tmp_path):
    space = load_space(write(tmp_path, "grid: {lr: [1.0e-3, 2.0e-3]}\n"))
    with pytest.raises(ConfigError, match="varied by the grid"):
        build_plan(get_recipe("A2"), PROFILE, seeds=(0,), space=space, command_line=[Layer("--set", {"lr": 0.1})])


def test_seed_list_forms():
    assert seed_list([5, 6], "x") == (5, 6)
    assert seed_list({"start": 10, "n": 3}, "x") == (10, 11, 12)
    with pytest.raises(ConfigError, match="duplicate"):
        seed_list([1, 1], "x")


def _resolved(tmp_path, text, command_line=()):
    space = load_space(write(tmp_path, text))
    return build_plan(get_recipe(space.recipe), PROFILE, seeds=space.seeds, space=space, command_line=command_line)


def test_a_grid_over_recipes_resolves_each_trial_from_its_own_recipe(tmp_path):
    plan = _resolved(tmp_path, "recipe: A2\nbase: {weight_decay: 0.05}\ngrid: {recipe: [A2, A3]}\n", [Layer("--set", {"mixup_alpha": 0.3})])
    assert plan.params == ("recipe",) and plan.values_of("recipe") == ["A2", "A3"]
    for cfg in plan.trials.values():
        recipe = get_recipe(cfg["recipe"])
        assert (cfg["lr"], cfg["repeated_aug"], cfg["drop_path"], cfg["auto_augment"]) == (recipe.lr, recipe.repeated_aug, recipe.drop_path, recipe.auto_augment)
        assert cfg["epochs"] == round(recipe.epochs * PROFILE.epoch_scale) and cfg["warmup_epochs"] == pytest.approx(recipe.warmup_epochs * cfg["epochs"] / recipe.epochs)
        assert cfg["weight_decay"] == 0.05 and cfg["mixup_alpha"] == 0.3  # base: and the command line still win
    a2, a3 = plan.trials.values()
    assert (a2["recipe"], a2["lr"], a2["epochs"], a2["repeated_aug"], a2["drop_path"]) == ("A2", 5e-3, 15, 3, 0.05)
    assert (a3["recipe"], a3["lr"], a3["epochs"], a3["repeated_aug"], a3["drop_path"]) == ("A3", 8e-3, 5, 1, 0.0)


def test_a_grid_point_naming_an_unknown_recipe_or_dataset_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"grid in .*space.yaml: recipe: unknown recipe 'A9'"):
        _resolved(tmp_path, "grid: {recipe: [A2, A9]}\n")
    with pytest.raises(ConfigError, match=r"grid in .*space.yaml: dataset: unknown dataset 'cifar'"):
        _resolved(tmp_path, "grid: {dataset: [digits, cifar]}\n")


def test_a_grid_over_datasets_gives_each_trial_its_profile_and_its_data(tmp_path):
    from rsb_tune.planning.config import DATA_KEYS
    from rsb_tune.data.registry import load_study_data
    from tests.test_datasets import write_cifar10

    root = write_cifar10(tmp_path / "c", n_train=40, n_test=20)
    plan = _resolved(tmp_path, f"base: {{data_path: {root}, eval_batch_size: 128}}\ngrid: {{dataset: [digits, torch/cifar10]}}\n")
    digits, cifar = plan.trials.values()
    assert (digits["dataset"], digits["model"], digits["batch_size"], digits["epochs"]) == ("digits", "resnet10t", 64, 15)
    assert (cifar["dataset"], cifar["model"], cifar["batch_size"], cifar["epochs"], cifar["lr_scale"]) == ("torch/cifar10", "resnet18_cifar", 512, 60, "sqrt")
    assert digits["eval_batch_size"] == cifar["eval_batch_size"] == 128 and digits["data_path"] == cifar["data_path"] == str(root)
    data = load_study_data(plan.configs(DATA_KEYS))
    assert len(data.splits) == 2
    assert (len(data.for_config(digits).val), len(data.for_config(cifar).val)) == (359, 20)
    # study.yaml says so, and a resumed study loads each dataset again from it
    from rsb_tune.runner import lifecycle
    from rsb_tune.store import manifest

    meta = yaml.safe_load(yaml.safe_dump(lifecycle.build_manifest(kind="grid", plan=plan, data=data, command="test")))
    assert meta["dataset"] == ["digits", "torch/cifar10"] and meta["recipe"] == "A2" and meta["data_sizes"] is None
    assert [manifest.data_sizes(meta, cfg)["n_val"] for cfg in (digits, cifar)] == [359, 20]
    again = load_study_data(manifest.data_configs(meta))
    assert [len(again.for_config(cfg).train) for cfg in (digits, cifar)] == [1078, 40]


def test_a_grid_over_the_held_out_split_loads_each_split_once(tmp_path):
    from rsb_tune.planning.config import DATA_KEYS
    from rsb_tune.data.registry import load_study_data

    plan = _resolved(tmp_path, "seeds: [0, 1]\nbase: {val_holdout: 0.2}\ngrid: {val_holdout_seed: [0, 1]}\n")
    data = load_study_data(plan.configs(DATA_KEYS))
    assert len(plan.trials) == 4 and len(data.splits) == 2
    first, same, other, _ = (data.for_config(cfg) for cfg in plan.trials.values())  # seeds 0, 1 of split seed 0, then of 1
    assert first is same and first.info["val_holdout"]["seed"] == 0 and other.info["val_holdout"]["seed"] == 1
    assert len(first.val) == len(other.val) and not np.array_equal(first.val.images, other.val.images)


def test_a_search_over_recipes_resolves_each_point_from_its_recipe(tmp_path):
    plan = _resolved(tmp_path, "search: optuna\nnum_samples: 4\nparams:\n  recipe: {choice: [A2, A3]}\n  lr: {loguniform: [1.0e-3, 1.0e-2]}\n")
    assert plan.values_of("recipe") == ["A2", "A3"]
    a3 = plan.resolver({"recipe": "A3", "lr": 2e-3})
    assert (a3["recipe"], a3["lr"], a3["epochs"], a3["drop_path"], a3["repeated_aug"]) == ("A3", 2e-3, 5, 0.0, 1)


# --------------------------------------------------------------------------- cases: keys varied together

VIT = {"img_size": 32, "patch_size": 4, "embed_dim": 48, "depth": 2, "num_heads": 3}


def test_cases_cross_the_grid_and_the_seeds_and_keep_their_own_kwargs(tmp_path):
    """Each case is its own layer: the ViT's model_kwargs never reach the ResNet case, which keeps
    the profile's; every case runs every recipe under every seed."""
    from rsb_tune.planning.validate import check_plan

    p = write(tmp_path, f"seeds: [0, 1]\ncases:\n  - {{model: resnet10t}}\n  - {{model: vit_tiny_patch16_224, model_kwargs: {VIT}}}\ngrid:\n  recipe: [A2, T2]\n")
    space = load_space(p)
    plan = build_plan(get_recipe("A2"), PROFILE, seeds=space.seeds, space=space)
    assert plan.params == ("model", "model_kwargs", "recipe") and len(plan.trials) == 2 * 2 * 2
    got = sorted((c["model"], c["recipe"], c["seed"], repr(c["model_kwargs"])) for c in plan.trials.values())
    resnet_kwargs = repr(dict(PROFILE.values["model_kwargs"]))
    assert got == sorted((m, r, s, resnet_kwargs if m == "resnet10t" else repr(VIT)) for m in ("resnet10t", "vit_tiny_patch16_224") for r in ("A2", "T2") for s in (0, 1))
    for cfg in plan.trials.values():  # each trial trains its own recipe
        assert (cfg["opt"], cfg["loss"]) == (("lamb", "bce") if cfg["recipe"] == "A2" else ("adamw", "ce"))
    check_plan(plan, space)
    assert plan.base.values["model_kwargs"] == PROFILE.values["model_kwargs"]  # the base config holds no case


def test_a_case_value_names_its_case_as_its_source(tmp_path):
    from rsb_tune.planning.config import resolve

    p = write(tmp_path, "cases:\n  - {drop_path: 0.0}\n  - {drop_path: 0.2, lr: 1.0e-3}\n")
    space = load_space(p)
    assert list(space.cases) == [{"drop_path": 0.0}, {"drop_path": 0.2, "lr": 1e-3}] and space.varied == ("drop_path", "lr")
    layer = Layer(f"cases[1] in {p}", space.cases[1])
    cfg = resolve(get_recipe("A2"), PROFILE, [layer])
    assert cfg.sources["lr"] == f"cases[1] in {p}"
    plan = build_plan(get_recipe("A2"), PROFILE, seeds=(0,), space=space)
    assert [c["lr"] for c in plan.trials.values()] == [5e-3, 1e-3]  # the first case keeps the recipe's lr


def test_a_case_whose_model_kwargs_do_not_fit_is_named_by_its_index(tmp_path):
    import rsb_tune

    p = write(tmp_path, "cases:\n  - {model: resnet10t}\n  - {model: vit_tiny_patch16_224, model_kwargs: {img_size: 32, patch_size: 4, heads: 3}}\n")
    with pytest.raises(ConfigError, match=r"space.yaml: cases\[1\]: model_kwargs: .* do not fit vit_tiny_patch16_224"):
        rsb_tune.plan_grid(p, epochs=1)
    p = write(tmp_path, "cases:\n  - {model: resnet10t}\n  - {model: vit_tiny_patch4_32}\n")
    with pytest.raises(ConfigError, match=r"space.yaml: cases\[1\]: model: unknown timm model 'vit_tiny_patch4_32'"):
        rsb_tune.plan_grid(p, epochs=1)


def test_the_plan_lists_the_cells_and_n_sets_the_seeds_per_cell():
    import rsb_tune

    plan = rsb_tune.plan_grid("arch_x_procedure", n=3, epochs=1)
    assert [c["seed"] for c in plan.trials.values()] == [0, 1, 2] * 4 and plan.space.raw["seeds"] == {"start": 0, "n": 3}
    lines = plan.describe()
    at = lines.index("cells (4, the grid's points; each runs its seeds):")
    cells = lines[at + 1 : at + 5]
    assert [(("resnet10t" in c) + 2 * ("vit_" in c), c.split("recipe=")[1].split(":")[0]) for c in cells] == [(1, "A2"), (1, "T2"), (2, "A2"), (2, "T2")]
    assert cells[0].endswith("3 trials (t0000..t0002)")
    with pytest.raises(ConfigError, match="n=? must be >= 1"):
        rsb_tune.plan_grid("arch_x_procedure", n=0)
