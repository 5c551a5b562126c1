"""Recipe values against ../shared/RSB_REFERENCE.md (the paper's table) and DeiT's main.py, and recipes of your own."""

from pathlib import Path

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


def test_registry_is_the_paper_recipes_and_t2_and_immutable():
    assert list(RECIPES) == ["A1", "A2", "A3", "T2"]
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
    with pytest.raises(ConfigError, match="allowed: A1, A2, A3, T2"):
        get_recipe("B2")
    assert get_recipe("a2").name == "A2"


# DeiT's settings, transcribed from github.com/facebookresearch/deit main.py (commit 7e160fe) and
# its README (DeiT-S: 4 GPUs x 256); independent of rsb_tune/planning/recipes.py.
DEIT = dict(epochs=300, batch_size=4 * 256, img_size=224, opt="adamw", weight_decay=0.05, sched="cosine", warmup_epochs=5,
            loss="ce", smoothing=0.1, mixup_alpha=0.8, cutmix_alpha=1.0, auto_augment="rand-m9-mstd0.5-inc1",
            repeated_aug=3, drop_path=0.1, re_prob=0.25, crop_pct=0.875, color_jitter=0.3)


def test_t2_is_deits_procedure():
    t2 = get_recipe("t2")
    for key, expected in DEIT.items():
        assert getattr(t2, key) == pytest.approx(expected), key
    # main.py: lr = 5e-4 * batch / 512 (linear), min lr 1e-5
    assert t2.lr == pytest.approx(5e-4 * t2.batch_size / 512)
    assert t2.extra["lr_scale"] == "linear" and t2.extra["min_lr"] == 1e-5
    assert "DeiT-S" in t2.description and t2.paper_val_top1 is None


def test_t2_resolves_with_its_lr_rule_off_the_profile():
    """Away from the digits profile (which sets lr_scale none), T2's lr follows DeiT's linear rule."""
    from rsb_tune.data.registry import get_dataset
    from rsb_tune.planning.config import Layer, resolve

    cfg = resolve(get_recipe("T2"), get_dataset("folder").profile, [Layer("test", {"batch_size": 512})])
    assert cfg.values["lr_resolved"] == pytest.approx(5e-4) and cfg.values["lr_scale_rule"] == "linear"
    assert cfg.sources["min_lr"] == "recipe T2" and cfg.values["loss"] == "ce"


# --------------------------------------------------------------------------- recipes of your own


def _project(tmp_path, monkeypatch, **files):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").mkdir(exist_ok=True)
    for name, text in files.items():
        (tmp_path / "recipes" / f"{name}.yaml").write_text(text)
    return tmp_path


def test_a_recipe_extending_a2_trains_exactly_a2_plus_its_change(tmp_path, monkeypatch):
    """Every trial of a study of the recipe is A2's trial with the one changed value (and the
    recipe's name); the plan names the file as the source of that value and A2 for the rest."""
    import rsb_tune

    _project(tmp_path, monkeypatch, a2_wd05="extends: A2\nweight_decay: 0.05\n")
    mine = rsb_tune.plan_seeds(3, "a2_wd05", epochs=2)
    a2 = rsb_tune.plan_seeds(3, "A2", epochs=2)
    assert list(mine.trials) == list(a2.trials)
    for tid, cfg in mine.trials.items():
        expected = {**a2.trials[tid], "weight_decay": 0.05, "recipe": "a2_wd05"}
        assert dict(cfg) == expected
    sources = mine.plan.base.sources
    assert sources["weight_decay"] == f"recipe a2_wd05 ({Path('recipes') / 'a2_wd05.yaml'})"
    assert sources["lr"] == sources["opt"] == "recipe A2" == a2.plan.base.sources["lr"]
    assert sources["warmup_epochs"] == a2.plan.base.sources["warmup_epochs"]
    described = "\n".join(mine.describe())
    assert "weight_decay: 0.05  # recipe a2_wd05 (recipes/a2_wd05.yaml)" in described and "lr: 0.005  # recipe A2" in described


def test_a_recipe_by_path_a_chain_and_a_grid_over_recipes(tmp_path, monkeypatch):
    """A path works where a name does (a space file's grid axis, the Python API); a recipe may
    extend another file; each trial trains its own recipe."""
    import rsb_tune
    from rsb_tune.planning.recipes import load_recipe

    monkeypatch.chdir(tmp_path)
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "base.yaml").write_text("extends: T2\ndrop_path: 0.0\nunconfirmed: [drop_path]\n")
    (tmp_path / "lib" / "top.yaml").write_text("extends: base\ndescription: T2 without drop path, lr 2e-3\nlr: 2.0e-3\n")
    top = load_recipe("lib/top.yaml")
    assert (top.name, top.lr, top.drop_path, top.opt, top.unconfirmed) == ("top", 2e-3, 0.0, "adamw", frozenset({"drop_path"}))
    assert top.source_of("drop_path") == "recipe base (lib/base.yaml)" and top.source_of("lr") == "recipe top (lib/top.yaml)"
    assert top.source_of("opt") == "recipe T2"
    space = tmp_path / "space.yaml"
    space.write_text("# which recipe?\nseeds: [0, 1]\ngrid:\n  recipe: [A2, lib/top.yaml]\n")
    plan = rsb_tune.plan_grid(space, epochs=1)
    got = {(c["recipe"], c["opt"], c["lr"], c["drop_path"], c["seed"]) for c in plan.trials.values()}
    assert got == {("A2", "lamb", 5e-3, 0.05, 0), ("A2", "lamb", 5e-3, 0.05, 1), ("top", "adamw", 2e-3, 0.0, 0), ("top", "adamw", 2e-3, 0.0, 1)}
    assert rsb_tune.plan_seeds(1, str(tmp_path / "lib" / "top.yaml"), epochs=1).plan.base.values["recipe"] == "top"


def test_a_stand_alone_recipe_gives_every_key(tmp_path, monkeypatch):
    from rsb_tune.planning.recipes import load_recipe

    full = "\n".join(f"{k}: {v if v is not None else 'null'}" for k, v in get_recipe("A3").hyperparameters().items())
    _project(tmp_path, monkeypatch, alone=full.replace("opt: lamb", "opt: sgd"), half="lr: 0.1\n")
    alone = load_recipe("recipes/alone.yaml")
    assert alone.hyperparameters() == {**get_recipe("A3").hyperparameters(), "opt": "sgd"}
    assert alone.source_of("lr") == "recipe alone (recipes/alone.yaml)"
    with pytest.raises(ConfigError, match=r"recipes/half.yaml: a recipe without `extends:` gives every recipe key; missing: epochs, batch_size"):
        get_recipe("half")


@pytest.mark.parametrize(
    "text,message",
    [
        ("extends: A2\nlrr: 0.1\n", "bad.yaml: unknown key 'lrr'; did you mean 'lr'"),
        ("extends: A2\nmodel: resnet50\n", "bad.yaml: 'model' is not a recipe key but a run-level choice"),
        ("extends: A2\nlr: fast\n", "bad.yaml: lr must be a number, got 'fast'"),
        ("extends: A2\nrepeated_aug: 2.5\n", "bad.yaml: repeated_aug must be an integer"),
        ("extends: A2\nopt: lamm\n", "bad.yaml: opt: unknown timm optimizer 'lamm'; did you mean 'lamb'"),
        ("extends: A9\n", "bad.yaml: extends: no recipe 'A9'"),
        ("extends: bad\n", "bad.yaml: extends itself"),
        ("extends: A2\nlr: 0.1\nlr: 0.2\n", "bad.yaml: key 'lr' is given twice"),
        ("extends: A2\nunconfirmed: [nope]\n", "bad.yaml: unconfirmed must be a list of recipe keys"),
        ("- extends\n", "bad.yaml: expected a mapping"),
        ("extends: A2\nloss: hinge\n", "bad.yaml: loss: 'hinge' is not allowed; allowed: bce, ce"),
    ],
)
def test_recipe_file_errors_name_the_file_and_key(tmp_path, monkeypatch, text, message):
    _project(tmp_path, monkeypatch, bad=text)
    with pytest.raises(ConfigError) as e:
        get_recipe("bad")
    assert message in str(e.value)


def test_a_recipe_file_cannot_take_a_shipped_name_and_unknown_names_list_the_project(tmp_path, monkeypatch):
    _project(tmp_path, monkeypatch, a2="extends: A2\n", mine="extends: A2\n")
    with pytest.raises(ConfigError, match="'a2' is the name of a shipped recipe"):
        get_recipe("recipes/a2.yaml")
    assert get_recipe("a2").path is None  # the name is A2's
    with pytest.raises(ConfigError, match=r"allowed: A1, A2, A3, T2, a2, mine; did you mean 'mine'"):
        get_recipe("mien")


def test_recipes_cli_lists_and_shows_a_project_recipe(tmp_path, monkeypatch):
    from tests.conftest import assert_user_error, run_cli

    _project(tmp_path, monkeypatch, a2_wd05="extends: A2\nweight_decay: 0.05\n", broken="extends: A2\nwd: 1\n")
    show = run_cli("recipes", "show", "a2_wd05", cwd=tmp_path)
    assert show.returncode == 0, show.stderr
    assert "weight_decay: 0.05  # recipe a2_wd05 (recipes/a2_wd05.yaml)" in show.stdout and "lr: 0.005  # recipe A2" in show.stdout
    t2 = run_cli("recipes", "show", "T2", cwd=tmp_path)
    assert "auto_augment: rand-m9-mstd0.5-inc1" in t2.stdout and "DeiT" in t2.stdout
    assert_user_error(run_cli("recipes", cwd=tmp_path), "recipes/broken.yaml: unknown key 'wd'")
    (tmp_path / "recipes" / "broken.yaml").unlink()
    listing = run_cli("recipes", cwd=tmp_path)
    assert "a2_wd05" in listing.stdout and "(recipes/a2_wd05.yaml)" in listing.stdout and "T2" in listing.stdout
    assert_user_error(run_cli("seeds", "--n", "2", "--recipe", "a2_wd5", "--dry-run", cwd=tmp_path), "unknown recipe 'a2_wd5'", "did you mean 'a2_wd05'")


def test_a_search_resolves_a_recipe_file_from_any_directory(tmp_path, monkeypatch):
    """A search resolves its points as it runs (in the trial too): it names a recipe file by its
    absolute path, so a trial in another working directory finds it."""
    import rsb_tune

    _project(tmp_path, monkeypatch, mine="extends: T2\nweight_decay: 0.1\n")
    space = tmp_path / "search.yaml"
    space.write_text("recipe: mine\nsearch: optuna\nnum_samples: 2\nparams: {lr: {loguniform: [1.0e-4, 1.0e-2]}}\n")
    resolver = rsb_tune.plan_grid(space, epochs=1).plan.resolver
    assert Path(resolver.recipe).is_absolute()
    monkeypatch.chdir(tmp_path.parent)
    cfg = resolver({"lr": 2e-3})
    assert (cfg["recipe"], cfg["weight_decay"], cfg["opt"], cfg["lr"]) == ("mine", 0.1, "adamw", 2e-3)
