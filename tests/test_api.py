"""The Python API: the same checks, options and study as the command line."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import zipfile

import pytest

import rsb_tune
from rsb_tune.errors import ConfigError, UserError
from rsb_tune.options import RUN_OPTIONS, RunOptions
from tests.conftest import REPO, assert_user_error, run_cli, write_minimal_study


def test_public_surface_is_small_and_lazy():
    assert {"seeds", "grid", "resume", "load", "list_studies", "Study", "UserError", "RunOptions"} <= set(rsb_tune.__all__)
    for name in rsb_tune.__all__:
        assert getattr(rsb_tune, name) is not None


def test_every_run_option_is_a_flag_with_the_same_default():
    from rsb_tune.cli import build_parser

    args = build_parser().parse_args(["seeds", "--n", "1"])
    for f in RUN_OPTIONS:
        value = getattr(args, f.name)
        assert (tuple(value) if isinstance(value, list) else value) == f.default, f.name
    resume = build_parser().parse_args(["resume", "x"])
    assert all(hasattr(resume, f.name) for f in RUN_OPTIONS)
    assert {f.name for f in dataclasses.fields(RunOptions)} - {f.name for f in RUN_OPTIONS} == {"reuse_actors"}


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: rsb_tune.seeds(n=0), "n= must be >= 1"),
        (lambda: rsb_tune.seeds(n=2, cpu_per_trial=1), "unknown option 'cpu_per_trial'; did you mean 'cpus_per_trial'"),
        (lambda: rsb_tune.plan_seeds(2, epoch=3), "unknown argument 'epoch'; did you mean 'epochs'"),
        (lambda: rsb_tune.grid("lamb_bc"), "no shipped space of that name; did you mean 'lamb_bce'"),
        (lambda: rsb_tune.plan_seeds(2, model="resnet10"), "--model: model: unknown timm model 'resnet10'"),
        (lambda: rsb_tune.plan_seeds(2, overrides={"opt": "lamd"}), "--set: opt: unknown timm optimizer 'lamd'"),
        (lambda: rsb_tune.plan_seeds(2, overrides=["drop_path=1"]), "drop_path must be < 1.0"),
        (lambda: rsb_tune.load("nope", storage="/nonexistent-rsb"), "no study 'nope'"),
        (lambda: rsb_tune.seeds(n=5, recipe="A3", until="halfwidth<=0.25"), "n=5: a cap of 5 seeds is below the 12"),
        (lambda: rsb_tune.plan_seeds(20, until="halfwidth<=0.25", level=1.0), "level: must be a number strictly between 0 and 1"),
        (lambda: rsb_tune.ab(20, "A3", "A3"), "the two arms are the same configuration"),
        (lambda: rsb_tune.seeds_needed_table("nope", storage="/nonexistent-rsb"), "no study 'nope'"),
    ],
)
def test_errors_are_one_user_error_with_the_cli_line(call, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        call()
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_plan_without_running_describes_every_trial():
    plan = rsb_tune.plan_grid("lamb_bce", epochs=1)
    assert plan.planned == 9 and plan.kind == "grid" and plan.label == "lamb_bce"
    text = "\n".join(plan.describe())
    assert text.startswith("9 trials (grid, recipe A2") and "epochs: 1  # --epochs" in text
    assert "threads: null" in text  # execution is not in the plan: threads come from the run
    seeds = rsb_tune.plan_seeds(3, "A3", seed_start=7, overrides={"drop_path": 0.05})
    assert [c["seed"] for c in seeds.trials.values()] == [7, 8, 9] and all(c["drop_path"] == 0.05 for c in seeds.trials.values())


def _space(tmp_path, body: str):
    path = tmp_path / "space.yaml"
    path.write_text("recipe: A2\nseeds: [0]\n" + body)
    return path


@pytest.mark.parametrize(
    "body,needles",
    [
        ("grid:\n  opt: [lamb, adamw, lambb]\n", ["space.yaml: grid: opt: unknown timm optimizer 'lambb'", "did you mean 'lamb'"]),
        ("grid:\n  opt: [lamb, lambb, adamw]\n", ["space.yaml: grid: opt: unknown timm optimizer 'lambb'"]),
        ("grid:\n  model: [resnet10t, resnet18, resnet1O]\n", ["space.yaml: grid: model: unknown timm model 'resnet1O'", "did you mean 'resnet18'"]),
        ("search: optuna\nnum_samples: 2\nparams:\n  opt: {choice: [lamb, adamw, sgdd]}\n", ["space.yaml: params: opt: unknown timm optimizer 'sgdd'", "did you mean 'sgd'"]),
        ("search: optuna\nnum_samples: 2\nparams:\n  model: {choice: [resnet10t, resnet1O]}\n", ["space.yaml: params: model: unknown timm model 'resnet1O'"]),
    ],
)
def test_every_value_of_a_grid_or_search_is_validated_before_anything_is_written(tmp_path, body, needles):
    path = _space(tmp_path, body)
    proc = run_cli("grid", "--space", str(path), "--storage", str(tmp_path / "store"), cwd=tmp_path)
    assert_user_error(proc, *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space.yaml"]
    dry = run_cli("grid", "--space", str(path), "--dry-run", cwd=tmp_path)
    assert_user_error(dry, *needles)


def test_spaces_command_lists_shipped_spaces_from_any_directory(tmp_path):
    proc = run_cli("spaces", cwd=tmp_path)
    assert proc.returncode == 0
    names = sorted(p.stem for p in (REPO / "search_spaces").glob("*.yaml"))
    listed = [line.split()[0] for line in proc.stdout.splitlines()[: len(names)]]
    assert listed == names and "lr/wd a plateau or a lucky point?" in proc.stdout
    dry = run_cli("grid", "--space", "lamb_bce.yaml", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and dry.stdout.startswith("9 trials"), dry.stderr


def test_the_wheel_ships_every_space_file(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("rsb_tune-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (REPO / "search_spaces").glob("*.yaml"):
        assert f"rsb_tune/search_spaces/{path.name}" in names
    assert "rsb_tune/api.py" in names and "analysis/report.py" in names
    assert {"rsb_tune/serve/app.py", "rsb_tune/serve/templates/study.html", "rsb_tune/serve/static/app.js"} <= names


@pytest.mark.e2e
def test_a_study_from_python_then_again_with_other_cpus_then_loaded(tmp_path):
    storage = str(tmp_path / "st")
    study = rsb_tune.seeds(n=2, recipe="A2", epochs=1, storage=storage, name="py", quiet=True)
    assert isinstance(study, rsb_tune.Study) and study.name == "py"
    trials = study.trials
    assert list(trials.seed) == [0, 1] and (trials.status == "ok").all() and trials.val_top1.notna().all()
    assert len(study.epochs) == 2 and study.config["epochs"] == 1
    status = study.status()
    assert (status.planned, status.done, status.failed, status.n, status.state) == (2, 2, 0, 2, "finished")
    assert status.mean == pytest.approx(trials.val_top1.mean()) and status.exit_code == 0
    assert "python: rsb_tune.load('py', storage=" in "\n".join(status.summary())
    meta = study.meta
    assert meta["format"] == 1 and meta["command"].startswith("rsb_tune.seeds(n=2") and meta["run_options"]["cpus_per_trial"] == 1.0
    # execution options are not the experiment: the same study with other CPUs is the same plan
    again = rsb_tune.seeds(n=2, recipe="A2", epochs=1, storage=storage, name="py", quiet=True, cpus_per_trial=2)
    assert again.meta["run_options"]["cpus_per_trial"] == 2.0 and again.trials.equals(trials)
    with pytest.raises(UserError, match="with a different plan"):
        rsb_tune.seeds(n=2, recipe="A2", epochs=2, storage=storage, name="py", quiet=True)
    loaded = rsb_tune.load("py", storage=storage)
    assert loaded.trials.equals(trials) and [s.name for s in rsb_tune.list_studies(storage)] == ["py"]
    assert (loaded.report() / "index.html").is_file()
    assert rsb_tune.resume("py", storage=storage, quiet=True).status().done == 2  # nothing left to run


def test_a_resumed_trial_keeps_its_threads_and_ray_reserves_them():
    """Execution options may change between runs; a trial that started with 1 thread resumes
    with 1 thread (numerics), and Ray reserves 1 CPU for it, not the new --cpus-per-trial."""
    from rsb_tune.runner.lifecycle import ResumePlan
    from rsb_tune.runner.ray_executor import _resources

    plan = ResumePlan(todo={"t0": {}, "t1": {}}, resume_from={}, threads={"t0": 1}, finished=0)
    reserve = _resources(RunOptions(cpus_per_trial=4, gpus_per_trial=0.5), plan.threads, ddp=False)
    assert reserve({"trial_id": "t0"}).bundles == [{"CPU": 1.0, "GPU": 0.5}]
    assert reserve({"trial_id": "t1"}).bundles == [{"CPU": 4, "GPU": 0.5}]  # a new trial: 4 threads, 4 CPUs
    assert RunOptions(cpus_per_trial=4).threads == 4 and RunOptions(cpus_per_trial=0.5).threads == 1
    assert _resources(RunOptions(), plan.threads, ddp=True)({"trial_id": "t0"}).bundles == [{"memory": 1.0}]  # its workers hold the CPUs


def test_the_default_storage_is_rsb_tune_storage_read_at_each_call(tmp_path, monkeypatch):
    from rsb_tune.options import default_storage

    monkeypatch.chdir(tmp_path)
    write_minimal_study(tmp_path / "rsb-results", "here")
    write_minimal_study(tmp_path / "env", "old", started_at="2026-01-01T00:00:00")
    write_minimal_study(tmp_path / "env", "new", started_at="2026-01-02T00:00:00")
    write_minimal_study(tmp_path / "env", "a-grid", kind="grid", started_at="2026-01-03T00:00:00")
    assert default_storage() == "./rsb-results" and [s.name for s in rsb_tune.list_studies()] == ["here"]
    monkeypatch.setenv("RSB_TUNE_STORAGE", str(tmp_path / "env"))  # after the import: read when called
    assert default_storage() == default_storage(root="..") == str(tmp_path / "env")
    assert [s.name for s in rsb_tune.list_studies()] == ["a-grid", "new", "old"]
    assert [s.name for s in rsb_tune.list_studies(kind="seeds")] == ["new", "old"]
    assert rsb_tune.load("new").path == tmp_path / "env" / "new"
    assert [s.name for s in rsb_tune.list_studies(tmp_path / "rsb-results")] == ["here"]  # a named storage wins
    with pytest.raises(UserError, match="no study 'here'"):
        rsb_tune.load("here")
    monkeypatch.setenv("RSB_TUNE_STORAGE", "rel")  # relative: to the working directory, or to root
    assert default_storage() == "rel" and default_storage(root="..") == os.path.join("..", "rel")
    monkeypatch.setenv("RSB_TUNE_STORAGE", "s3://bucket/prefix")
    assert default_storage(root="..") == "s3://bucket/prefix"
