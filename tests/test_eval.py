"""``rsb-tune eval``: a study's trained weights re-scored (issue 25, items 1 and 2).

One real 2-seed, 1-epoch study on the embedded digits (``--executor local``), evaluated in two
steps: a subset under Ray first (a partial evals.parquet), then the whole grid in process,
which must evaluate only what is missing. The training setting reproduces the recorded
``val_top1``/``v2_top1`` and the predictions bit for bit; an extra test set and a ReaL-style
multi-label file are scored as the readers and ImageNet-ReaL define them. The statistics of
:mod:`analysis.evals` are checked against scipy's own t-intervals.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import contract as C
from tests.conftest import assert_user_error, kill_when, run_cli, start_cli

SIZES, CROPS = (24, 32, 40), (0.95, 1.0)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    storage = tmp_path_factory.mktemp("eval")
    proc = run_cli("seeds", "--n", "2", "--epochs", "1", "--executor", "local", "--quiet", "--storage", str(storage), "--name", "s")
    assert proc.returncode == 0, proc.stderr
    import rsb_tune

    return rsb_tune.load("s", storage=str(storage))


def _extra_set(tmp_path):
    """An extra test set in the readers' .npy-pair format, written here: digits' v2 split."""
    from rsb_tune.data.registry import load_splits

    v2 = load_splits("digits").v2
    np.save(tmp_path / "extra_data.npy", np.asarray(v2.images))
    np.save(tmp_path / "extra_labels.npy", np.asarray(v2.labels))
    return tmp_path / "extra_data.npy"


def test_eval_resumes_reproduces_and_reports(study, tmp_path):
    storage = str(study.directory.storage)
    trials = study.trials.set_index("trial_id")
    # a partial evaluation, through Ray: the training size, both crops, val only
    first = run_cli("eval", "s", "--storage", storage, "--test-size", "32", "--crop-pct", *map(str, CROPS), "--cpus-per-trial", "1", "--quiet")
    assert first.returncode == 0, first.stderr
    partial = study.evals
    assert len(partial) == 2 * 2 and set(partial["test_set"]) == {"val"}
    # the whole grid in process, with an extra test set and a multi-label file for val
    n_val = int(trials["n_val"].iloc[0])
    from rsb_tune.data.registry import load_splits

    real = [[int(y)] for y in load_splits("digits").val.labels]
    real[:10] = [[] for _ in range(10)]  # left out, as ReaL leaves out images without a label
    labels = tmp_path / "real.json"
    labels.write_text(json.dumps(real))
    extra = _extra_set(tmp_path)
    full = run_cli(
        "eval", "s", "--storage", storage, "--executor", "local", "--quiet",
        "--test-size", *map(str, SIZES), "--crop-pct", *map(str, CROPS), "--split", "val", "v2",
        "--test-set", f"extra={extra}", "--labels", str(labels),
    )  # fmt: skip
    assert full.returncode == 0, full.stderr
    assert "evals.parquet (48 rows)" in full.stdout, full.stdout
    assert "evaluated (" not in full.stderr  # --quiet: no line per trial
    evals = study.evals
    # one row per trial x setting x test set, nothing twice, the partial rows kept as they were
    assert len(evals) == 2 * len(SIZES) * len(CROPS) * 4
    assert not evals.duplicated(list(C.EVAL_KEY)).any()
    kept = evals.merge(partial, on=list(C.EVAL_KEY), suffixes=("", "_first"))
    assert len(kept) == 4 and (kept["evaluated_at"] == kept["evaluated_at_first"]).all()
    assert (kept["top1"] == kept["top1_first"]).all()
    # the training setting reproduces the recorded metrics and predictions exactly
    own = evals[evals["trained"]]
    assert len(own) == 2 * 4 and set(own["test_img_size"]) == {32} and set(own["crop_pct"]) == {0.95}
    for row in own.itertuples():
        if row.test_set in ("val", "v2"):
            assert row.top1 == trials.loc[row.trial_id, f"{row.test_set}_top1"]
            assert row.loss == trials.loc[row.trial_id, f"{row.test_set}_loss"]
            with np.load(study.path / "predictions" / f"{row.trial_id}.npz") as npz:
                np.testing.assert_array_equal(C.unpack_correct(row.correct, row.n_examples), npz[f"{row.test_set}_correct"])
    by = evals.set_index(["trial_id", "test_set", "test_img_size", "crop_pct"])
    for row in evals[evals["test_set"] == "val"].itertuples():
        key = (row.trial_id, row.test_img_size, row.crop_pct)
        # the extra set holds v2's images: its scores are v2's
        assert by.loc[(key[0], "extra", *key[1:]), "top1"] == by.loc[(key[0], "v2", *key[1:]), "top1"]
        # ReaL with one label per image: val's correctness without the left-out images
        val_correct = C.unpack_correct(row.correct, n_val)
        real_row = by.loc[(key[0], "real", *key[1:])]
        assert real_row["n_examples"] == n_val - 10
        np.testing.assert_array_equal(C.unpack_correct(real_row["correct"], n_val - 10), val_correct[10:])
    # run again: nothing left to do, nothing written
    again = study.evaluate(test_sizes=SIZES, crop_pcts=CROPS, splits=("val", "v2"), executor="local", quiet=True)
    pd.testing.assert_frame_equal(again, evals)
    # the report has the section, its figure and tables
    out = study.report()
    page = (out / "index.html").read_text()
    assert "Re-evaluated weights" in page and (out / "resolution_curve_val.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert {r["test_set"] for r in summary["eval_test_sets"]} == {"val", "v2", "extra", "real"}
    assert [r["crop_pct"] for r in summary["eval_crop_table"]] == list(CROPS)
    # and the browser's study page shows the tables and the figure
    import time

    TestClient = pytest.importorskip("starlette.testclient").TestClient
    from rsb_tune.serve.app import create_app

    with TestClient(create_app(storage, redraw_s=0.0)) as client:
        deadline = time.monotonic() + 240
        while client.get("/api/studies/s").json()["figures"]["status"] != "ready" and time.monotonic() < deadline:
            time.sleep(0.5)
        page = client.get("/studies/s").text
    assert "Re-evaluated weights" in page and "resolution_curve_val.png" in page and "eval-crops" in page


# the killed evaluation's grid: the training setting (32 px, crop 0.95) among many, so that the
# second trial's job takes seconds after the first trial's rows land (the kill falls in between)
KILL_GRID = ("--test-size", "24", "28", "32", "36", "--crop-pct", "0.85", "0.95", "1.0", "--split", "val", "v2")
KILL_ROWS = 4 * 3 * 2  # per trial


def test_eval_killed_midway_resumes_with_nothing_lost_or_twice(study, tmp_path):
    import shutil

    shutil.copytree(study.path, tmp_path / "s")  # the module's study stays as the other tests expect it
    (tmp_path / "s" / C.EVALS).unlink(missing_ok=True)
    path = tmp_path / "s" / C.EVALS
    args = ("eval", "s", "--storage", str(tmp_path), "--executor", "local", "--quiet", *KILL_GRID)
    kill_when(start_cli(*args), path.exists, "the first trial's rows")
    partial = pd.read_parquet(path)
    # really partial: the first trial's rows, all of them, none of the second's
    assert set(partial["trial_id"]) == {"t0000"} and len(partial) == KILL_ROWS, partial["trial_id"].value_counts()
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert f"evaluating 1 trial(s), {KILL_ROWS} (setting, test set) pair(s) left" in again.stderr, again.stderr  # only what was missing
    evals = pd.read_parquet(path)
    assert len(evals) == 2 * KILL_ROWS and not evals.duplicated(list(C.EVAL_KEY)).any()
    # the rows written before the kill are kept as they were (their evaluated_at too)
    kept = evals[evals["trial_id"] == "t0000"].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, partial.sort_values(list(C.EVAL_KEY)).reset_index(drop=True))
    # both trials' training settings reproduce their recorded, uninterrupted scores
    trials = study.trials.set_index("trial_id")
    own = evals[evals["trained"]]
    assert len(own) == 2 * 2
    for row in own.itertuples():
        assert row.top1 == trials.loc[row.trial_id, f"{row.test_set}_top1"] and row.loss == trials.loc[row.trial_id, f"{row.test_set}_loss"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (("--test-set", "nopath"), "--test-set"),
        (("--crop-pct", "1.5"), "--crop-pct"),
        (("--split", "test"), "--split"),
        (("--test-set", "val=/tmp"), "--test-set val"),
    ],
)
def test_eval_bad_input_is_one_line(study, args, needle):
    proc = run_cli("eval", "s", "--storage", str(study.directory.storage), "--executor", "local", *args)
    assert_user_error(proc, needle)


def test_bad_labels_file_is_one_line(study, tmp_path):
    bad = tmp_path / "real.json"
    bad.write_text(json.dumps([[0]] * 3))
    proc = run_cli("eval", "s", "--storage", str(study.directory.storage), "--executor", "local", "--test-size", "28", "--labels", str(bad))
    assert_user_error(proc, "--labels", "label lists")


# --------------------------------------------------------------------------- the statistics


def _synthetic(seed: int = 0, n: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(n):
        skill = rng.normal(90, 1)
        for size in (24, 32, 40):
            for crop in (0.875, 0.95, 1.0):
                top1 = skill - 0.01 * (size - 32) ** 2 + 3 * (crop - 0.95) + rng.normal(0, 0.2)
                rows.append({"trial_id": f"t{t:04d}", "test_set": "val", "test_img_size": size, "crop_pct": crop, "trained": size == 32 and crop == 0.95, "top1": top1, "n_examples": 400})
    return pd.DataFrame(rows)


def test_crop_table_is_the_paired_t_interval():
    import analysis

    evals = _synthetic()
    table = analysis.crop_table(evals).set_index("crop_pct")
    wide = evals[evals["test_img_size"] == 32].pivot(index="trial_id", columns="crop_pct", values="top1")
    for crop in (0.875, 1.0):
        ci = sps.ttest_rel(wide[crop], wide[0.95]).confidence_interval(0.95)
        assert table.loc[crop, "diff_ci_low"] == pytest.approx(ci.low)
        assert table.loc[crop, "diff_ci_high"] == pytest.approx(ci.high)
        assert table.loc[crop, "diff_mean"] == pytest.approx((wide[crop] - wide[0.95]).mean())
    assert table.loc[0.95, "diff_mean"] == 0 and table.loc[0.95, "trained"]
    # paired: narrower than the seeds' own spread would allow
    assert (table.loc[1.0, "diff_ci_high"] - table.loc[1.0, "diff_ci_low"]) < (table.loc[1.0, "ci_high"] - table.loc[1.0, "ci_low"])


def test_resolution_curve_and_test_sets_against_scipy():
    import analysis

    evals = _synthetic()
    curve = analysis.resolution_curve(evals)
    row = curve[(curve["crop_pct"] == 1.0) & (curve["test_img_size"] == 40)].iloc[0]
    values = evals[(evals["crop_pct"] == 1.0) & (evals["test_img_size"] == 40)]["top1"]
    ci = sps.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=sps.sem(values))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(ci)
    assert curve["trained"].sum() == 1
    sets = analysis.test_set_table(evals)
    p = sets.loc[0, "mean"] / 100
    assert sets.loc[0, "binomial_std"] == pytest.approx(100 * np.sqrt(p * (1 - p) / 400))
    with pytest.raises(ValueError, match="test set 'v2'"):
        analysis.resolution_curve(evals, test_set="v2")


def test_plot_resolution_curve_returns_axes():
    import matplotlib.pyplot as plt

    import analysis

    ax = analysis.plot_resolution_curve(analysis.resolution_curve(_synthetic()))
    assert len(ax.get_lines()) >= 3
    plt.close("all")
