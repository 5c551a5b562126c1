"""The schema, the precedence chain and every validation error."""

import math

import pytest

from rsb_tune.planning.config import FIELDS, Layer, coerce, parse_set, resolve, resolve_lr
from rsb_tune.data.registry import get_dataset
from rsb_tune.errors import ConfigError
from rsb_tune.planning.recipes import get_recipe
from tests.conftest import make_config

PROFILE = get_dataset("digits").profile


def test_precedence_recipe_profile_space_cli_set():
    r = get_recipe("A2")
    cfg = resolve(
        r,
        PROFILE,
        [Layer("space.yaml", {"weight_decay": 0.05, "drop_path": 0.1}), Layer("--epochs", {"epochs": 7}), Layer("--set", {"drop_path": 0.2})],
    )
    assert cfg.values["mixup_alpha"] == 0.1 and cfg.sources["mixup_alpha"] == "recipe A2"
    assert cfg.values["img_size"] == 32 and cfg.sources["img_size"] == "profile digits"
    assert cfg.values["weight_decay"] == 0.05 and cfg.sources["weight_decay"] == "space.yaml"
    assert cfg.values["epochs"] == 7 and cfg.sources["epochs"] == "--epochs"
    assert cfg.values["drop_path"] == 0.2 and cfg.sources["drop_path"] == "--set"
    assert cfg.values["device"] == "auto" and cfg.sources["device"] == "default"


def test_epochs_keep_the_paper_ratio_and_warmup_scales():
    e = {n: make_config(n)["epochs"] for n in ("A1", "A2", "A3")}
    assert e["A1"] == 2 * e["A2"] == 6 * e["A3"]
    cfg = make_config("A2")
    assert cfg["warmup_epochs"] == pytest.approx(5 * cfg["epochs"] / 300)
    assert cfg["epoch_scale"] == pytest.approx(cfg["epochs"] / 300)
    # an explicit warm-up is kept as given
    assert make_config("A2", warmup_epochs=2)["warmup_epochs"] == 2


@pytest.mark.parametrize(
    "opt,rule,batch,expected",
    [("lamb", "auto", 512, 5e-3 * 0.5), ("adamw", "auto", 128, 5e-3 * 0.25), ("sgd", "auto", 512, 5e-3 / 4), ("lamb", "linear", 1024, 2.5e-3), ("lamb", "none", 64, 5e-3)],
)
def test_lr_rescaling_rules(opt, rule, batch, expected):
    lr, concrete = resolve_lr(5e-3, opt, batch, 2048, rule)
    assert lr == pytest.approx(expected)
    assert concrete in ("sqrt", "linear", "none")


def test_lr_recorded_with_rule_and_recipe_value():
    cfg = make_config("A2", lr_scale="auto", batch_size=512)
    assert cfg["lr"] == 5e-3 and cfg["lr_base_batch"] == 2048
    assert cfg["lr_scale_rule"] == "sqrt" and cfg["lr_resolved"] == pytest.approx(5e-3 * math.sqrt(512 / 2048))


def test_seeds_derived_distinct_and_overridable():
    a, b = make_config(seed=1), make_config(seed=2)
    streams = ("model_seed", "data_seed", "aug_seed")
    assert len({a[k] for k in streams}) == 3
    assert all(a[k] != b[k] for k in streams)
    assert make_config(seed=1) == a  # derivation is deterministic
    c = make_config(seed=1, data_seed=5)
    assert c["data_seed"] == 5 and c["model_seed"] == a["model_seed"]


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("nope", 1, "unknown key 'nope'"),
        ("lrr", 1, "did you mean 'lr'"),
        ("lr", 0, "must be > 0.0"),
        ("lr", -1e-3, "must be > 0.0"),
        ("lr", "fast", "must be a number"),
        ("weight_decay", -0.1, "must be >= 0.0"),
        ("mixup_alpha", -1, "must be >= 0.0"),
        ("cutmix_alpha", -0.5, "must be >= 0.0"),
        ("drop_path", 1.0, "must be < 1.0"),
        ("drop_path", -0.1, "must be >= 0.0"),
        ("epochs", 0, "must be >= 1"),
        ("epochs", 2.5, "must be an integer"),
        ("batch_size", "big", "must be an integer"),
        ("loss", "mse", "allowed: bce, ce"),
        ("sched", "cosin", "did you mean 'cosine'"),
        ("repeated_aug", True, "must be an integer"),
        ("lr_resolved", 0.1, "derived"),
        ("model_kwargs", [1], "must be a mapping"),
    ],
)
def test_validation_errors_name_key_and_source(key, value, message):
    with pytest.raises(ConfigError) as e:
        coerce(key, value, "my.yaml")
    assert "my.yaml" in str(e.value) and message in str(e.value)


def test_numbers_from_strings_and_yaml_nulls():
    assert coerce("lr", "5e-3", "x") == 5e-3
    assert coerce("epochs", "3", "x") == 3
    assert coerce("auto_augment", "null", "x") is None
    assert coerce("bce_target_thresh", None, "x") is None


def test_on_and_off_read_as_yaml_booleans_are_the_choices():
    """`--set amp=off` and `channels_last: on` in a space file: YAML 1.1 reads booleans."""
    layer = parse_set(["amp=off", "channels_last=on"])
    assert coerce("amp", layer.values["amp"], "x") == "off" and coerce("channels_last", layer.values["channels_last"], "x") == "on"
    with pytest.raises(ConfigError, match="must be a string"):
        coerce("opt", False, "x")


def test_parse_set():
    layer = parse_set(["lr=1e-3", "auto_augment=null", "model_kwargs={channels: [8, 16, 32, 64]}"])
    assert layer.values == {"lr": 1e-3, "auto_augment": None, "model_kwargs": {"channels": [8, 16, 32, 64]}}
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_set(["lr"])


def test_cross_checks():
    with pytest.raises(ConfigError, match="must be even while mixup/cutmix is on"):
        make_config(batch_size=63)
    make_config(batch_size=63, mixup_alpha=0, cutmix_alpha=0)  # fine without mixing
    with pytest.raises(ConfigError, match="warmup_epochs"):
        make_config(epochs=2, warmup_epochs=3)


def test_every_field_has_help_and_valid_default():
    for key, field in FIELDS.items():
        assert field.help, key
        if field.has_default and field.default is not None:
            assert coerce(key, field.default, "default") == field.default


def test_config_not_mutated():
    r = get_recipe("A2")
    values = {"lr": 1e-3}
    layer = Layer("x", values)
    resolve(r, PROFILE, [layer])
    assert values == {"lr": 1e-3}
    assert r.lr == 5e-3


def test_every_key_declares_its_scope():
    from rsb_tune.planning.config import DATA_KEYS, SCOPES

    assert all(field.scope in SCOPES for field in FIELDS.values())
    assert DATA_KEYS == ("dataset", "data_path", "v2_path", "val_holdout", "val_holdout_seed", "memory_budget_mb")
    assert {k for k, f in FIELDS.items() if f.scope == "seed"} == {"seed", "model_seed", "data_seed", "aug_seed"}
    study = {k: f for k, f in FIELDS.items() if f.scope == "study"}
    assert set(study) == {"workers_per_trial"} and all(f.why for f in study.values())
    assert FIELDS["recipe"].scope == "trial"


def test_a_layer_naming_a_recipe_puts_that_recipe_at_the_bottom():
    cfg = resolve(get_recipe("A2"), PROFILE, [Layer("space.yaml", {"weight_decay": 0.05}), Layer("grid in space.yaml", {"recipe": "a3"})])
    assert cfg.values["recipe"] == "A3" and cfg.sources["recipe"] == "grid in space.yaml"
    assert (cfg.values["lr"], cfg.sources["lr"]) == (8e-3, "recipe A3")
    assert (cfg.values["drop_path"], cfg.values["repeated_aug"], cfg.sources["repeated_aug"]) == (0.0, 1, "recipe A3")
    assert (cfg.values["epochs"], cfg.sources["epochs"]) == (5, "recipe A3 x epoch_scale 0.05 (profile digits)")
    assert (cfg.values["weight_decay"], cfg.sources["weight_decay"]) == (0.05, "space.yaml")  # the layers above still win
    with pytest.raises(ConfigError, match="--set: recipe: unknown recipe 'A4'"):
        resolve(get_recipe("A2"), PROFILE, [Layer("--set", {"recipe": "A4"})])


def test_a_layer_naming_a_dataset_puts_its_profile_at_the_bottom():
    cfg = resolve(get_recipe("A2"), PROFILE, [Layer("grid", {"dataset": "torch/cifar10"}), Layer("--set", {"batch_size": 128})])
    assert (cfg.values["model"], cfg.sources["model"]) == ("resnet18_cifar", "profile cifar10")
    assert (cfg.values["epochs"], cfg.sources["epochs"]) == (60, "recipe A2 x epoch_scale 0.2 (profile cifar10)")
    assert (cfg.values["batch_size"], cfg.sources["batch_size"]) == (128, "--set")
    assert (cfg.values["dataset"], cfg.sources["dataset"]) == ("torch/cifar10", "grid")
