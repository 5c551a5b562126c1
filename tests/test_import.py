"""Results made elsewhere as studies: a CSV of two arms x three tasks x ten seeds through
`rsb-tune import`, then status, report, compare, list, the browser; epochs and extra metrics;
resume refused in one line; bad files refused in one line naming the file, the row and the column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import assert_user_error, run_cli

TASKS = {"cifar10": 90.0, "cifar100": 70.0, "svhn": 95.0}


def _results(seeds: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for arm, shift in (("a", 1.0), ("b", 0.0)):
        for task, base in TASKS.items():
            for seed in range(seeds):
                rows.append({"arm": arm, "task": task, "seed": seed, "optimizer": "lamb" if arm == "a" else "sgd", "val_top1": base + shift + rng.normal(0, 0.3), "wall_s": rng.uniform(10, 20)})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    storage = tmp_path_factory.mktemp("imported")
    df = _results()
    df.to_csv(storage / "results.csv", index=False)
    run = run_cli("import", str(storage / "results.csv"), "--name", "imp", "--storage", str(storage))
    assert run.returncode == 0, run.stderr
    assert "compare them: rsb-tune compare imp-a imp-b" in run.stdout
    return storage, df


def test_imported_arms_are_studies_with_every_row(imported):
    import rsb_tune

    storage, df = imported
    a, b = rsb_tune.load("imp-a", str(storage)), rsb_tune.load("imp-b", str(storage))
    for study, arm in ((a, "a"), (b, "b")):
        want = df[df.arm == arm].sort_values(["task", "seed"]).reset_index(drop=True)
        got = study.trials.sort_values(["task", "seed"]).reset_index(drop=True)
        assert len(got) == 30 and (got.status == "ok").all()
        np.testing.assert_array_equal(got.val_top1.to_numpy(), want.val_top1.to_numpy())
        np.testing.assert_array_equal(got.wall_s.to_numpy(), want.wall_s.to_numpy())  # every metric column kept
        assert study.meta["imported"].endswith("results.csv") and study.meta["kind"] == "grid" and study.meta["params"] == ["task"]
        assert study.config == {"optimizer": "lamb" if arm == "a" else "sgd"}
    assert {s.name for s in rsb_tune.list_studies(str(storage))} == {"imp-a", "imp-b"}


def test_status_report_compare_and_the_browser_accept_them(imported):
    storage, _ = imported
    status = run_cli("status", "imp-a", "--storage", str(storage))
    assert status.returncode == 0 and "imported from" in status.stdout and "30 ok" in status.stdout, status.stdout
    report = run_cli("report", "imp-b", "--storage", str(storage))
    assert report.returncode == 0 and (storage / "imp-b" / "report" / "index.html").exists(), report.stderr
    compare = run_cli("compare", "imp-a", "imp-b", "--storage", str(storage))
    assert compare.returncode == 0, compare.stderr
    assert compare.stdout.startswith("A (imp-a, n=30) vs B (imp-b, n=30): val_top1")
    assert "grid over task" in compare.stderr  # pooled over the tasks, and said so
    from starlette.testclient import TestClient

    from rsb_tune.serve.app import create_app

    with TestClient(create_app(str(storage), redraw_s=0.0)) as client:
        names = {s["name"]: s for s in client.get("/api/studies").json()["studies"]}
        assert names["imp-a"]["ok"] == 30 and names["imp-a"]["state"] == "finished"
        assert client.get("/studies/imp-a").status_code == 200 and "imported from" in client.get("/studies/imp-a").text


def test_one_task_compare_is_the_paired_question(tmp_path):
    """One task: the arms' rows on the same seeds compare like two seed studies."""
    df = _results()
    df = df[df.task == "cifar10"].drop(columns="task")
    import rsb_tune

    a, b = rsb_tune.import_results(df, name="one", storage=str(tmp_path))
    assert (a.name, b.name, a.meta["kind"]) == ("one-a", "one-b", "seeds")
    result = rsb_tune.compare("one-a", "one-b", storage=str(tmp_path))
    assert "A better" in result.line()


def test_epochs_and_resume(tmp_path):
    import rsb_tune

    rows = [{"seed": s, "epoch": e, "val_loss": 1.0 / e + 0.01 * s, "val_top1": 50 + 10 * e + s} for s in range(3) for e in (1, 2, 3)]
    (study,) = rsb_tune.import_results(pd.DataFrame(rows), name="ep", storage=str(tmp_path), metric="val_loss")
    assert study.meta["mode"] == "min" and len(study.epochs) == 9
    assert list(study.trials.val_loss) == [1 / 3, 1 / 3 + 0.01, 1 / 3 + 0.02] and (study.trials.epochs_done == 3).all()
    assert_user_error(run_cli("resume", "ep", "--storage", str(tmp_path)), "imported", "nothing to resume")
    assert_user_error(run_cli("import", str(tmp_path / "nope.csv"), "--name", "x", "--storage", str(tmp_path)), "nope.csv")


@pytest.mark.parametrize(
    "edit, needles",
    [
        (lambda df: df.assign(seed=df.seed.astype(object).where(df.index != 4, "four")), ("row 5", "column 'seed'", "'four'")),
        (lambda df: df.drop(columns="seed"), ("column 'seed'", "missing")),
        (lambda df: df.assign(val_top1=df.val_top1.astype(object).where(df.index != 7, "bad")), ("row 8", "column 'val_top1'", "'bad'")),
        (lambda df: pd.concat([df, df.iloc[[2]]]), ("row 61", "column 'seed'", "row 3")),
        (lambda df: df.assign(arm=df.arm.where(df.index != 0, "a/b")), ("row 1", "column 'arm'")),
    ],
)
def test_bad_file_is_one_line_naming_file_row_and_column(tmp_path, edit, needles):
    path = tmp_path / "bad.csv"
    edit(_results(seeds=10)).to_csv(path, index=False)
    proc = run_cli("import", str(path), "--name", "bad", "--storage", str(tmp_path / "s"))
    assert_user_error(proc, str(path), *needles)
    assert not (tmp_path / "s" / "bad-a").exists()


def test_plan_seeds_of_a_grid_takes_the_seed_noise_within_its_cells(imported):
    """Three tasks 25 points apart are not seed noise: a grid's sigma is the std within its
    cells, pooled (it was the std over every trial, and plan-seeds asked for thousands of seeds)."""
    import rsb_tune

    storage, df = imported
    table = rsb_tune.seeds_needed_table("imp-a", storage=str(storage), n_sim=200)
    cells = df[df["arm"] == "a"].groupby("task")["val_top1"]
    pooled = float(np.sqrt((cells.var(ddof=1) * (cells.count() - 1)).sum() / (cells.count() - 1).sum()))
    assert table["sigma"].iloc[0] == pytest.approx(pooled)
    assert pooled < 0.5 < df[df["arm"] == "a"]["val_top1"].std()
    assert "within the 3 cells of task" in table.attrs["spread"]
