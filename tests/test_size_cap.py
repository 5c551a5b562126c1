"""A study's size is capped before anything is expanded (rsb_tune.options.MAX_TRIALS, raised with
``--max-trials`` / ``max_trials=``): ``--n``, a grid's product, a search's ``num_samples`` and
``seeds: {start, n}`` are each refused with one line naming the cap and the flag, at once; a dry
run of a large plan under a raised cap lists its count and first trials without resolving them."""

from __future__ import annotations

import tracemalloc

import pytest

import rsb_tune
from rsb_tune.errors import ConfigError
from rsb_tune.options import MAX_TRIALS
from rsb_tune.planning.space import GridTrials, load_space
from tests.conftest import assert_user_error, run_cli

AXES = ("lr", "weight_decay", "drop_path", "smoothing", "warmup_epochs", "mixup_alpha")


def _million(tmp_path):
    """A one-line space of 10**6 grid points (six axes of ten values)."""
    axes = ", ".join(f"{key}: [{', '.join(str(round(0.001 * (i + 1), 3)) for i in range(10))}]" for key in AXES)
    path = tmp_path / "million.yaml"
    path.write_text("grid: {" + axes + "}\n")
    return path


def test_the_cap_is_documented_and_shared():
    assert MAX_TRIALS == 100_000
    assert "--max-trials" in run_cli("seeds", "--help").stdout


def test_n_of_ten_billion_is_one_line(tmp_path):
    proc = run_cli("seeds", "--n", "10000000000", "--storage", str(tmp_path / "s"), cwd=tmp_path)
    assert_user_error(proc, "--n 10000000000", "10,000,000,000", "100,000", "--max-trials")
    assert not (tmp_path / "s").exists()
    assert_user_error(run_cli("ab", "--n", "200000", "--dry-run", cwd=tmp_path), "--n 200000", "--max-trials")


def test_a_million_point_space_is_one_line(tmp_path):
    space = _million(tmp_path)
    with pytest.raises(ConfigError, match=r"10 x 10 x 10 x 10 x 10 x 10 points x 1 seeds\): 1,000,000 trials.*max_trials="):
        load_space(space)
    assert_user_error(run_cli("grid", "--space", str(space), "--dry-run", cwd=tmp_path), "million.yaml", "1,000,000", "--max-trials")
    one_axis = tmp_path / "axis.yaml"  # a million values on one line: refused while it is parsed
    one_axis.write_text("grid: {lr: [" + ",".join(["1"] * 10**6) + "]}\n")
    with pytest.raises(ConfigError, match="axis.yaml: more than 100,000 values"):
        load_space(one_axis)


@pytest.mark.parametrize(
    "text,needle",
    [
        ("seeds: {start: 0, n: 1000000000}\n", "seeds.n: 1,000,000,000 trials"),
        ("search: optuna\nnum_samples: 100000000\nparams:\n  lr: {loguniform: [1.0e-3, 1.0e-1]}\n", "num_samples (100000000 points x 1 seeds): 100,000,000 trials"),
        ("seeds: {start: 0, n: 1000}\ngrid:\n  lr: [" + ", ".join(["1.0e-3"] * 1) + ", 2.0e-3]\n  weight_decay: [" + ", ".join(str(i / 1000) for i in range(100)) + "]\n", "(2 x 100 points x 1000 seeds): 200,000 trials"),
    ],
)
def test_every_count_of_a_space_file_is_capped(tmp_path, text, needle):
    path = tmp_path / "big.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="max_trials=") as info:
        rsb_tune.plan_grid(path)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_the_cap_is_raised_by_the_flag_and_checked_itself():
    with pytest.raises(ConfigError, match="max_trials"):
        rsb_tune.plan_seeds(3, max_trials=0)
    assert len(rsb_tune.plan_seeds(3, epochs=1, max_trials=3).trials) == 3
    with pytest.raises(ConfigError, match="n=4: 4 trials, more than the cap of 3"):
        rsb_tune.plan_seeds(4, max_trials=3)


def test_a_dry_run_of_a_million_trials_is_summarised_quickly(tmp_path):
    space = _million(tmp_path)
    from unittest import mock

    resolved = []
    real = GridTrials._resolve

    def counting(self, *args, **kwargs):
        resolved.append(args)
        return real(self, *args, **kwargs)

    with mock.patch.object(GridTrials, "_resolve", counting):  # a spy: the real resolution, counted
        plan = rsb_tune.plan_grid(space, max_trials=10**6, lazy=True, epochs=1)
        lines = plan.describe()
    # a summary resolves the axes' values and the first trials, never the million (which took
    # ~4 min and 3.2 GB, and a listing of every cell ~2.5 min after that)
    assert len(resolved) < 2 * 1000, len(resolved)
    tracemalloc.start()
    rsb_tune.plan_grid(space, max_trials=10**6, lazy=True, epochs=1).describe()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert isinstance(plan.trials, GridTrials) and len(plan.trials) == 10**6
    assert lines[0].startswith("1000000 trials (grid")
    assert any("the first 5 of 1,000,000" in line for line in lines)
    assert peak < 50 << 20, peak
    with pytest.raises(ConfigError, match="lazy"):
        rsb_tune.start(plan, storage=str(tmp_path / "s"))


def test_a_lazy_plan_is_the_plan_it_describes(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("seeds: [3, 5]\ngrid:\n  lr: [1.0e-3, 2.0e-3, 3.0e-3]\n  weight_decay: [0.01, 0.05]\n")
    eager, lazy = rsb_tune.plan_grid(path, epochs=1), rsb_tune.plan_grid(path, epochs=1, lazy=True)
    assert dict(lazy.trials.items()) == dict(eager.trials) and list(lazy.trials) == list(eager.trials)
    assert "t9999" not in lazy.trials and "x" not in lazy.trials and len(lazy.trials) == 12
    seeds = rsb_tune.plan_seeds(10**6, max_trials=10**6, lazy=True, epochs=1)
    assert seeds.trials["t999999"]["seed"] == 999999


def test_a_dry_run_on_the_command_line_under_a_raised_cap(tmp_path):
    proc = run_cli("grid", "--space", str(_million(tmp_path)), "--dry-run", "--max-trials", "1000000", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "the first 5 of 1,000,000" in proc.stdout and len(proc.stdout.splitlines()) < 150  # the base config, 5 cells, 5 trials: not a million lines
