"""Your own training code as a seed study: examples/tiny_mlp.py end to end (a sequential study,
then status, report, plan-seeds), a command that writes JSON lines, a study SIGKILLed mid-trial
that resumes losing nothing, the config rules and the one-line errors."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import assert_user_error, run_cli
from tests.conftest import events, kill_when, start_cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = f"{ROOT / 'examples' / 'tiny_mlp.py'}:train"


@pytest.mark.e2e
def test_example_trainer_sequential_study_then_status_report_plan_seeds(tmp_path):
    storage = str(tmp_path)
    run = run_cli("seeds", "--n", "12", "--trainer", EXAMPLE, "--set", "epochs=2", "--set", "hidden=16", "--until", "halfwidth<=20", "--executor", "local", "--storage", storage, "--name", "mlp", "--quiet")
    assert run.returncode == 0, run.stderr
    study = tmp_path / "mlp"
    trials = pd.read_parquet(study / "trials.parquet")
    assert len(trials) == 12 and (trials.status == "ok").all()
    assert trials.val_top1.between(50, 100).all() and trials.val_top1.nunique() > 1  # the seeds matter
    # the trainer saw its config and the seeds derived as the built-in trial's are
    from rsb_tune.planning.config import derive_seeds

    plan = json.loads((study / "plan.json").read_text())
    assert plan["t0003"] == {"epochs": 2, "hidden": 16, **derive_seeds(3), "trainer": EXAMPLE}
    assert (trials.epochs_done == 2).all() and (trials.hidden == 16).all()
    meta = __import__("yaml").safe_load((study / "study.yaml").read_text())
    assert meta["trainer"] == EXAMPLE and meta["stopping"]["stopped"]
    status = run_cli("status", "mlp", "--storage", storage)
    assert status.returncode == 0 and "trainer tiny_mlp.py:train" in status.stdout and "12 ok" in status.stdout, status.stdout
    report = run_cli("report", "mlp", "--storage", storage)
    assert report.returncode == 0, report.stderr
    assert (study / "report" / "index.html").exists()
    needed = run_cli("plan-seeds", "mlp", "--storage", storage)
    assert needed.returncode == 0 and "seeds needed" in needed.stdout, needed.stderr


def test_command_trainer_reads_json_lines(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import json, os, sys
        seed, lr = int(sys.argv[1]), float(sys.argv[2])
        for epoch in (1, 2):
            with open(os.environ["RSB_TUNE_METRICS"], "a") as f:
                f.write(json.dumps({"epoch": epoch, "val_top1": 80 + seed + epoch, "score": seed * lr}) + "\\n")
    """))
    command = f"{sys.executable} {script} {{seed}} {{lr}}"
    run = run_cli("seeds", "--n", "3", "--trainer-cmd", command, "--set", "lr=0.5", "--executor", "local", "--storage", str(tmp_path), "--name", "c", "--quiet")
    assert run.returncode == 0, run.stderr
    trials = pd.read_parquet(tmp_path / "c" / "trials.parquet")
    assert list(trials.val_top1) == [82.0, 83.0, 84.0] and list(trials.score) == [0.0, 0.5, 1.0]
    assert len(pd.read_parquet(tmp_path / "c" / "epochs.parquet")) == 6
    # a command that fails: the trial errors with the end of its stderr, the study exits 1
    failing = run_cli("seeds", "--n", "1", "--trainer-cmd", f"{sys.executable} -c \"import sys; sys.exit('no GPU here')\"", "--executor", "local", "--storage", str(tmp_path), "--name", "f", "--quiet", "--max-failures", "0")
    assert failing.returncode == 1
    assert "no GPU here" in pd.read_parquet(tmp_path / "f" / "trials.parquet").error[0]


SLOW = """
import sys, time
sys.path.insert(0, {examples!r})
import tiny_mlp


def train(config, report):
    def slow(**metrics):
        report(**metrics)
        time.sleep(0.4)  # time to be killed mid-trial
    slow.resume = report.resume
    tiny_mlp.train(config, slow)
"""


@pytest.mark.e2e
def test_killed_study_of_own_trainer_resumes_losing_nothing(tmp_path):
    """SIGKILLed with a seed finished and another checkpointed mid-way: `resume` keeps the finished
    one, continues the other from its checkpoint (not from epoch 1), and ends with the values of
    an uninterrupted run, bit for bit."""
    slow = tmp_path / "slow.py"
    slow.write_text(SLOW.format(examples=str(ROOT / "examples")))
    args = ["seeds", "--n", "3", "--trainer", f"{slow}:train", "--set", "epochs=4", "--executor", "local", "--quiet"]
    proc = start_cli(*args, "--storage", str(tmp_path / "a"), "--name", "k")
    study = tmp_path / "a" / "k"

    def ready():
        ev = events(study)
        ok = [t for t, rows in ev.items() if any(r.get("status") == "ok" for r in rows)]
        return ok and any(t not in ok and sum(r["type"] == "checkpoint" for r in rows) >= 2 for t, rows in ev.items())

    kill_when(proc, ready, "a finished seed and a checkpointed unfinished one")
    before = events(study)
    done = {t for t, rows in before.items() if any(r.get("status") == "ok" for r in rows)}
    cut = next(t for t, rows in before.items() if t not in done)
    cut_epoch = max(r["epoch"] for r in before[cut] if r["type"] == "result")
    resumed = run_cli("resume", "k", "--storage", str(tmp_path / "a"), "--executor", "local")
    assert resumed.returncode == 0, resumed.stderr
    after = events(study)
    for tid in done:  # finished before the kill: not run again
        assert after[tid] == before[tid]
    epochs_after_kill = [r["epoch"] for r in after[cut][len(before[cut]):] if r["type"] == "result"]
    assert epochs_after_kill and min(epochs_after_kill) > 1 and min(epochs_after_kill) <= cut_epoch + 1  # continued, not restarted
    whole = run_cli(*args, "--storage", str(tmp_path / "b"), "--name", "k")
    assert whole.returncode == 0, whole.stderr
    got, want = (pd.read_parquet(tmp_path / s / "k" / "epochs.parquet") for s in ("a", "b"))
    cols = ["trial_id", "epoch", "train_loss", "val_loss", "val_top1"]
    pd.testing.assert_frame_equal(got[cols], want[cols])


def test_trainer_without_checkpoints_starts_over_and_says_so(tmp_path):
    plain = tmp_path / "plain.py"
    plain.write_text(textwrap.dedent("""
        import os
        def train(config, report):
            for epoch in (1, 2):
                report(epoch=epoch, val_top1=50.0 + config["seed"])
                if epoch == 1 and config["seed"] == 1 and not os.path.exists(config["marker"]):
                    open(config["marker"], "w").close()
                    raise RuntimeError("interrupted")
    """))
    marker = tmp_path / "marker"
    run = run_cli("seeds", "--n", "2", "--trainer", f"{plain}:train", "--set", f"marker={marker}", "--executor", "local", "--max-failures", "0", "--storage", str(tmp_path), "--name", "p", "--quiet")
    assert run.returncode == 1
    resumed = run_cli("resume", "p", "--storage", str(tmp_path), "--executor", "local")
    assert resumed.returncode == 0, resumed.stderr
    assert "t0001: no checkpoint to continue from: it starts over" in resumed.stderr
    epochs = [r["epoch"] for r in events(tmp_path / "p")["t0001"] if r["type"] == "result"]
    assert epochs == [1, 1, 2, 2]  # epoch 1 again: started over (the last epoch twice: running, then ok)


def test_own_trainer_config_rules_and_errors(tmp_path):
    import rsb_tune
    from rsb_tune.errors import ConfigError

    plan = rsb_tune.plan_seeds(2, trainer=EXAMPLE, config={"epochs": 1, "metric": "val_loss", "deep": {"a": [1, 2]}})
    assert plan.trainer["metric"] == "val_loss" and plan.trainer["mode"] == "min"
    assert plan.trials["t0000"]["deep"] == {"a": [1, 2]} and "metric" not in plan.trials["t0000"]
    for bad, needle in [
        (dict(trainer=EXAMPLE, config={"seed": 3}), "'seed' is set by rsb-tune"),
        (dict(trainer=EXAMPLE, epochs=3), "epochs"),
        (dict(trainer=EXAMPLE, recipe="A3"), "recipe"),
        (dict(trainer="examples/nope.py:train"), "no file"),
        (dict(trainer=f"{ROOT / 'examples' / 'tiny_mlp.py'}:nope"), "no function 'nope'"),
        (dict(trainer=EXAMPLE, trainer_cmd="x"), "one of"),
        (dict(trainer=lambda c, r: None), "top-level function"),
    ]:
        with pytest.raises(ConfigError, match=needle):
            rsb_tune.plan_seeds(2, **bad)
    assert_user_error(run_cli("seeds", "--n", "2", "--trainer", "no_such_module:train", "--storage", str(tmp_path)), "--trainer", "no_such_module")
    assert_user_error(run_cli("seeds", "--n", "2", "--trainer", EXAMPLE, "--set", "seed=4", "--storage", str(tmp_path)), "seed")


def test_python_api_with_a_function(tmp_path):
    import rsb_tune

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import tiny_mlp

        study = rsb_tune.seeds(n=2, trainer=tiny_mlp.train, config={"epochs": 1}, executor="local", storage=str(tmp_path), name="api", quiet=True)
    finally:
        sys.path.remove(str(ROOT / "examples"))
    assert study.meta["trainer"] == "tiny_mlp:train" and study.status().done == 2
    assert study.trials.val_top1.notna().all()


@pytest.mark.e2e
def test_ab_of_own_trainer_until_decided(tmp_path):
    """lr 0.1 against 0.01 for two epochs: arm a is clearly better, decided on the same seeds."""
    run = run_cli("ab", "--n", "20", "--trainer", EXAMPLE, "--set", "epochs=2", "--set", "lr=0.1", "--vs-set", "lr=0.01", "--executor", "local", "--storage", str(tmp_path), "--name", "ab", "--quiet")
    assert run.returncode == 0, run.stderr
    assert "stopped: a_better" in run.stdout, run.stdout
    a, b = (pd.read_parquet(tmp_path / f"ab-{arm}" / "trials.parquet") for arm in "ab")
    assert list(a.seed) == list(b.seed) and (a.lr == 0.1).all() and (b.lr == 0.01).all()
    with pytest.raises(Exception, match="same configuration"):
        import rsb_tune

        rsb_tune.plan_ab(20, trainer=EXAMPLE, config={"lr": 0.1})


def test_grid_of_own_trainer_from_a_space_file(tmp_path):
    space = tmp_path / "mlp.yaml"
    space.write_text("metric: val_loss\nseeds: {start: 0, n: 2}\nbase: {epochs: 1}\ngrid:\n  lr: [0.1, 0.01]\n  hidden: [8, 16]\n")
    dry = run_cli("grid", "--space", str(space), "--trainer", EXAMPLE, "--dry-run")
    assert dry.returncode == 0 and "8 trials (grid)" in dry.stdout and "t0007: seed 1, lr 0.01, hidden 16" in dry.stdout, dry.stdout + dry.stderr
    run = run_cli("grid", "--space", str(space), "--trainer", EXAMPLE, "--executor", "local", "--storage", str(tmp_path), "--name", "g", "--quiet")
    assert run.returncode == 0, run.stderr
    trials = pd.read_parquet(tmp_path / "g" / "trials.parquet")
    assert len(trials) == 8 and (trials.status == "ok").all() and trials.groupby(["lr", "hidden"]).size().eq(2).all()
    meta = __import__("yaml").safe_load((tmp_path / "g" / "study.yaml").read_text())
    assert (meta["kind"], meta["params"], meta["metric"], meta["mode"]) == ("grid", ["lr", "hidden"], "val_loss", "min")
    assert run_cli("report", "g", "--storage", str(tmp_path)).returncode == 0
    space.write_text("grid: {seed: [1, 2]}\n")
    assert_user_error(run_cli("grid", "--space", str(space), "--trainer", EXAMPLE, "--storage", str(tmp_path)), str(space), "'seed' cannot be a grid axis")
    space.write_text("grid: {lr: [0.1]}\nrecipe: A2\n")
    assert_user_error(run_cli("grid", "--space", str(space), "--trainer", EXAMPLE, "--storage", str(tmp_path)), "unknown key 'recipe'")


def test_sequential_study_follows_a_metric_of_the_trainers_own(tmp_path):
    """--metric names any metric the command reports; the rule stops at its least seeds (12)."""
    script = tmp_path / "score.py"
    script.write_text("import json, os, sys\nseed = int(sys.argv[1])\nopen(os.environ['RSB_TUNE_METRICS'], 'a').write(json.dumps({'epoch': 1, 'score': 50 + (seed % 3 - 1) * 0.5}) + '\\n')\n")
    run = run_cli("seeds", "--n", "15", "--trainer-cmd", f"{sys.executable} {script} {{seed}}", "--metric", "score", "--until", "halfwidth<=5", "--executor", "local", "--max-concurrent", "1", "--storage", str(tmp_path), "--name", "u", "--quiet")
    assert run.returncode == 0, run.stderr
    trials = pd.read_parquet(tmp_path / "u" / "trials.parquet")
    assert len(trials) == 12 and (trials.status == "ok").all() and trials.score.notna().all()
    status = run_cli("status", "u", "--storage", str(tmp_path))
    assert "stopped by its rule" in status.stdout and "score: mean 50" in status.stdout, status.stdout
