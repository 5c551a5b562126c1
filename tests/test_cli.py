"""The command line through a subprocess: help, recipes, dry runs and bad input."""

import pytest

from tests.conftest import REPO, assert_user_error, run_cli, write_minimal_study


def test_help_imports_nothing_heavy():
    """`rsb-tune --help` is instant because the parser imports no torch, timm, ray or pandas."""
    import subprocess
    import sys

    code = "import sys; from rsb_tune.cli import build_parser; build_parser().format_help(); import rsb_tune; rsb_tune.__all__; print(sorted(m for m in ('torch', 'timm', 'ray', 'pandas', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_help_explains():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for word in ("seeds", "grid", "resume", "status", "report", "compare", "recipes", "spaces", "precedence", "rsb_tune.seeds(", "ab", "plan-seeds"):
        assert word in proc.stdout
    sub = run_cli("seeds", "--help")
    for flag in ("--n", "--recipe", "--seed-start", "--storage", "--set", "--cpus-per-trial", "--gpus-per-trial", "--max-concurrent", "--address", "--dry-run", "--until", "--level", "--metric"):
        assert flag in sub.stdout


def test_recipes_list_and_show():
    listing = run_cli("recipes")
    assert listing.returncode == 0 and all(n in listing.stdout for n in ("A1", "A2", "A3"))
    show = run_cli("recipes", "show", "A2")
    import yaml

    data = yaml.safe_load(show.stdout)
    assert data["epochs"] == 300 and data["opt"] == "lamb" and data["unconfirmed"] == ["bce_target_thresh"]
    assert "bce_target_thresh: 0.2  # unconfirmed" in show.stdout


def test_keys_lists_schema():
    proc = run_cli("keys")
    assert proc.returncode == 0 and "bce_target_thresh" in proc.stdout and "lr_resolved" in proc.stdout


def test_dry_run_prints_count_and_configs(tmp_path):
    proc = run_cli("grid", "--space", str(REPO / "search_spaces" / "lamb_bce.yaml"), "--dry-run", "--storage", str(tmp_path / "s"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("9 trials")
    assert "lr_resolved" in proc.stdout and "# profile digits" in proc.stdout
    assert sum(line.strip().startswith("t000") for line in proc.stdout.splitlines()) == 9
    assert not (tmp_path / "s").exists()


BAD = [
    (["seeds", "--n", "0"], ["--n must be >= 1"]),
    (["seeds", "--n", "2", "--recipe", "A9"], ["unknown recipe 'A9'", "A1, A2, A3"]),
    (["seeds", "--n", "2", "--model", "resnet10"], ["unknown timm model 'resnet10'", "did you mean"]),
    (["seeds", "--n", "2", "--set", "opt=lamd"], ["unknown timm optimizer 'lamd'", "did you mean", "'lamb'"]),
    (["seeds", "--n", "2", "--set", "lr"], ["--set 'lr': expected key=value"]),
    (["seeds", "--n", "2", "--set", "colour=1"], ["unknown key 'colour'"]),
    (["seeds", "--n", "2", "--set", "drop_path=1"], ["drop_path must be < 1.0"]),
    (["seeds", "--n", "2", "--batch-size", "63"], ["batch_size 63 must be even"]),
    (["seeds", "--n", "2", "--epochs", "0"], ["epochs must be >= 1"]),
    (["seeds", "--n", "2", "--set", "sched=cosin"], ["did you mean 'cosine'"]),
    (["seeds", "--n", "2", "--set", "dataset=imagenet"], ["unknown dataset 'imagenet'", "digits, digits-parity, folder"]),
    (["grid", "--space", "nope.yaml"], ["nope.yaml: no such space file", "shipped: ", "lamb_bce"]),
    (["seeds", "--n", "2", "--cpus-per-trial", "0"], ["--cpus-per-trial must be > 0"]),
    (["status", "nope"], ["no study 'nope'"]),
    (["resume", "nope"], ["no study 'nope'"]),
    (["report", "nope"], ["no study 'nope'"]),
    # sequential studies (rsb_tune.sequential.rule, rsb_tune.sequential.engine)
    (["seeds", "--n", "100", "--until", "halfwidth<0.25"], ["--until", "only '<=' is accepted"]),
    (["seeds", "--n", "100", "--until", "halfwidth<=0"], ["--until", "> 0"]),
    (["seeds", "--n", "100", "--until", "halfwidth<=0.25", "--level", "1.5"], ["level", "strictly between 0 and 1"]),
    (["seeds", "--n", "5", "--until", "halfwidth<=0.25"], ["cap of 5 seeds is below the 12"]),
    (["seeds", "--n", "100", "--until", "halfwidth<=0.25", "--method", "betting"], ["below the 1471"]),
    (["seeds", "--n", "100", "--level", "0.9"], ["--level: only with --until"]),
    (["ab", "--n", "20", "--recipe", "A3"], ["the two arms are the same configuration"]),
    (["ab", "--n", "20", "--recipe", "A3", "--vs-set", "model_seed=3"], ["paired arms must share their seeds"]),
    (["ab", "--n", "20", "--recipe", "A2", "--vs-recipe", "A3", "--delta", "0"], ["delta: must be a finite number > 0"]),
    (["plan-seeds", "nope"], ["no study 'nope'"]),
]


@pytest.mark.parametrize("args,needles", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, args, needles):
    storage = tmp_path / "store"
    proc = run_cli(*args, "--storage", str(storage), cwd=tmp_path)
    assert_user_error(proc, *needles)
    assert not storage.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_study_scoped_key_as_a_grid_axis_is_refused_naming_file_and_key(tmp_path):
    space = tmp_path / "ddp.yaml"
    space.write_text("grid:\n  workers_per_trial: [1, 2]\n")
    proc = run_cli("grid", "--space", str(space), "--storage", str(tmp_path / "s"))
    assert_user_error(proc, f"{space}: grid: 'workers_per_trial' cannot be a grid axis: it holds one value per study")
    assert not (tmp_path / "s").exists()


def test_dry_run_of_a_recipe_grid_shows_each_trials_own_recipe(tmp_path):
    space = tmp_path / "recipes.yaml"
    space.write_text("grid:\n  recipe: [A2, A3]\n")
    proc = run_cli("grid", "--space", str(space), "--dry-run", "--storage", str(tmp_path / "s"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("2 trials (grid, recipe A2, A3, dataset digits); varied: recipe")
    t1 = next(line for line in proc.stdout.splitlines() if line.strip().startswith("t0001:"))
    for diff in ("recipe: A3", "lr: 0.008", "epochs: 5", "repeated_aug: 1", "drop_path: 0.0"):
        assert diff in t1, t1


def test_bad_data_folder(tmp_path):
    (tmp_path / "d" / "train" / "a").mkdir(parents=True)
    proc = run_cli("seeds", "--n", "1", "--data", str(tmp_path / "d"), "--storage", str(tmp_path / "s"))
    assert_user_error(proc, "missing sub-folder(s) val")
    proc = run_cli("seeds", "--n", "1", "--data", str(tmp_path / "missing"), "--storage", str(tmp_path / "s"))
    assert_user_error(proc, "no such directory")
    assert not (tmp_path / "s").exists()


def test_unwritable_storage(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = run_cli("seeds", "--n", "1", "--storage", str(blocker / "studies"))
    assert_user_error(proc, "--storage", "not writable")
    assert blocker.read_text() == "not a directory"


def test_rsb_tune_storage_is_every_command_s_default_storage(tmp_path):
    env_storage = tmp_path / "env"
    write_minimal_study(env_storage, "mine")
    env = {"RSB_TUNE_STORAGE": str(env_storage)}
    status = run_cli("status", "mine", cwd=tmp_path, env=env)
    assert status.returncode == 0 and "study mine (seeds, recipe A2)" in status.stdout, status.stderr
    assert_user_error(run_cli("status", "mine", cwd=tmp_path), "no study 'mine'")  # without it: ./rsb-results
    assert_user_error(run_cli("status", "mine", "--storage", str(tmp_path / "other"), cwd=tmp_path, env=env), "no study 'mine'")
    for command in ("seeds", "grid", "ab", "resume", "status", "report", "compare", "plan-seeds", "serve"):
        help = run_cli(command, "--help", cwd=tmp_path, env={**env, "COLUMNS": "1000"}).stdout  # no wrapped path
        assert f"(default {env_storage}: $RSB_TUNE_STORAGE when set, else ./rsb-results)" in help, command


@pytest.mark.e2e
def test_a_study_lands_in_rsb_tune_storage(tmp_path):
    env_storage = tmp_path / "env"
    proc = run_cli("seeds", "--n", "1", "--epochs", "1", "--name", "one", "--quiet", cwd=tmp_path, env={"RSB_TUNE_STORAGE": str(env_storage)})
    assert proc.returncode == 0, proc.stderr
    assert (env_storage / "one" / "trials.parquet").is_file() and not (tmp_path / "rsb-results").exists()
    assert "look at it: rsb-tune status one ; rsb-tune report one ;" in proc.stderr  # the default storage: no --storage
