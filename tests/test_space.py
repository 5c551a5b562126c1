"""The search-space compiler and its errors."""

from pathlib import Path

import pytest

from rsb_tune.config import Layer
from rsb_tune.data import get_dataset
from rsb_tune.errors import ConfigError
from rsb_tune.recipes import get_recipe
from rsb_tune.space import build_plan, load_space, seed_list

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
    from rsb_tune.space import find_space, shipped_spaces
    from rsb_tune.validate import check_plan

    path = REPO / "search_spaces" / f"{name}.yaml"
    assert path.read_text().lstrip().startswith("#"), "each space file opens with the question it answers"
    assert shipped_spaces()[name][1], "the question is listed by `rsb-tune spaces`"
    assert find_space(name) == find_space(f"{name}.yaml") and load_space(find_space(name)).raw == load_space(path).raw
    space = load_space(path)
    plan = build_plan(get_recipe(space.recipe), PROFILE, seeds=space.seeds, space=space)
    assert len(plan.trials) >= 4 if space.search == "grid" else plan.resolver is not None
    check_plan(plan, space)  # every model and optimizer exists in timm


def test_every_shipped_space_is_package_data():
    from rsb_tune.space import shipped_spaces

    assert sorted(shipped_spaces()) == SHIPPED and len(SHIPPED) >= 6


def test_an_existing_path_wins_over_a_shipped_name(tmp_path, monkeypatch):
    from rsb_tune.space import find_space

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
        ("seeds: []\n", "empty list"),
        ("seeds: {start: 0, n: 0}\n", "must be an integer >= 1"),
        ("metric: val_acc\n", "metric 'val_acc' is not allowed"),
        ("mode: maximize\n", "allowed: min, max"),
        ("base: {drop_path: 1.5}\n", "drop_path must be < 1.0"),
        ("base: {lr: 1.0e-3}\ngrid: {lr: [1.0e-3]}\n", "both in base and grid"),
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
