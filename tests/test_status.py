"""One status: the study browser's JSON and ``rsb_tune.load(name).status()`` agree field by
field on a corpus of studies (ok, diverged, error, stopped by its rule, interrupted, format 0,
tied best seeds), and each disagreement that users met has its regression test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

import rsb_tune
from analysis import contract as C
from rsb_tune.runner import lifecycle as L
from rsb_tune.store.directory import StudyDir
from tests.serve_helpers import make_study

SHARED = ("name", "kind", "recipe", "search", "metric", "mode", "planned", "done", "ok", "running", "pending", "failed", "counts", "n", "mean", "std", "best", "best_trial", "started_at", "ended_at", "state", "stopped_by_rule")


def _diverged(storage, name, n=3):
    study = make_study(storage, name, n=n, statuses=["pending"] * n)
    for tid in study.plan():
        L.record_result(study, tid, {"epoch": 1, "status": C.DIVERGED, "train_loss": math.nan, "val_top1": 10.0})
    return study


def _sequential(storage, name):
    """A sequential study of 16 seeds whose rule stopped it after 12 (4 never started)."""
    from rsb_tune.data.registry import load_study_data

    plan = rsb_tune.plan_seeds(16, "A3", until="halfwidth<=5", epochs=1)
    study = StudyDir(storage, name)
    manifest = L.build_manifest(kind="seeds", plan=plan.plan, data=load_study_data(plan.plan.configs(), decode=False), command="test", stopping=plan.stopping.record())
    study.dir.mkdir(parents=True)
    L.create_study(study, manifest, dict(plan.trials))
    values = np.random.default_rng(0).normal(60, 0.5, 12)
    for tid, v in zip(list(plan.trials)[:12], values):
        L.record_result(study, tid, {"epoch": 1, "status": C.OK, "val_top1": float(v), "val_loss": 1.0})
    from rsb_tune.sequential import engine as S

    L.record_stopping(study, S.study_decision(study, S.rule_of(study.meta())))
    study.update_meta(ended_at="2026-12-01T12:00:00+00:00")
    return study


def _format0(storage, name):
    """A study of format 0 (no ``format``, no ``mode``) whose metric is a loss: lower is better."""
    study = make_study(storage, name, n=3)
    meta = study.meta()
    for key in ("format", "mode"):
        meta.pop(key, None)
    meta["metric"] = "val_loss"
    study.meta_path.write_text(yaml.safe_dump(meta, sort_keys=False))
    return study


def _tied(storage, name):
    """Four seeds, the best value reached by t0001 and t0003: the first in trial order is best."""
    study = make_study(storage, name, n=4, statuses=["pending"] * 4)
    for tid, v in zip(study.plan(), (50.0, 70.0, 60.0, 70.0)):
        L.record_result(study, tid, {"epoch": 1, "status": C.OK, "val_top1": v, "val_loss": 1.0, "seed": int(tid[1:])})
    from rsb_tune.store.tables import write_tables

    write_tables(study)
    study.update_meta(ended_at="2026-12-01T12:00:00+00:00")
    return study


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("status-corpus")
    make_study(root, "ok4", n=4)
    make_study(root, "err", n=4, statuses=["ok", "ok", "error", "ok"])
    make_study(root, "interrupted", n=4, statuses=["ok", "running", "pending", "pending"], finished=False)
    make_study(root, "grid", kind="grid", n=4, params=["lr", "weight_decay"])
    _diverged(root, "diverged")
    _sequential(root, "sequential")
    _format0(root, "format0")
    _tied(root, "tied")
    return root


@pytest.fixture(scope="module")
def browser(corpus):
    from starlette.testclient import TestClient

    from rsb_tune.serve.app import create_app

    with TestClient(create_app(str(corpus))) as client:
        yield client


NAMES = ("ok4", "err", "interrupted", "grid", "diverged", "sequential", "format0", "tied")


@pytest.mark.parametrize("name", NAMES)
def test_the_browser_and_the_api_agree_field_by_field(corpus, browser, name):
    api = rsb_tune.load(name, storage=str(corpus)).status().as_dict()
    page = browser.get(f"/api/studies/{name}").json()
    shown = page.get("study", page)
    assert {k: shown[k] for k in SHARED} == {k: api[k] for k in SHARED}
    listed = {s["name"]: s for s in browser.get("/api/studies").json()["studies"]}[name]
    assert {k: listed[k] for k in SHARED} == {k: api[k] for k in SHARED}


def test_diverged_trials_are_results_not_failures_everywhere(corpus, browser):
    status = rsb_tune.load("diverged", storage=str(corpus)).status()
    assert (status.failed, status.counts.get(C.DIVERGED), status.exit_code) == (0, 3, 0)
    listed = {s["name"]: s for s in browser.get("/api/studies").json()["studies"]}["diverged"]
    assert (listed["failed"], listed["counts"]["diverged"]) == (0, 3)


def test_a_study_stopped_by_its_rule_is_finished_in_the_browser_too(corpus, browser):
    status = rsb_tune.load("sequential", storage=str(corpus)).status()
    assert (status.state, status.planned, status.pending, status.stopped_by_rule) == ("finished", 12, 0, True)
    listed = {s["name"]: s for s in browser.get("/api/studies").json()["studies"]}["sequential"]
    assert (listed["state"], listed["planned"], listed["pending"]) == ("finished", 12, 0)


def test_a_format_0_study_without_mode_takes_its_metrics_direction(corpus, browser):
    status = rsb_tune.load("format0", storage=str(corpus)).status()
    assert status.mode == "min" and status.best == min(status.values)
    listed = {s["name"]: s for s in browser.get("/api/studies").json()["studies"]}["format0"]
    assert (listed["mode"], listed["best"], listed["best_trial"]) == ("min", status.best, status.best_trial)


def test_tied_best_seeds_the_first_in_trial_order_everywhere(corpus, browser):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import analysis

    study = rsb_tune.load("tied", storage=str(corpus))
    status = study.status()
    assert (status.best, status.best_trial) == (70.0, "t0001")
    trials = study.trials
    ax = analysis.plot_seed_histogram(trials, metric="val_top1", mode="max")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(ax.figure)
    seed = int(trials.set_index("trial_id").loc["t0001", "seed"])
    assert f"best seed {seed}: {70.0:.{C.decimals(trials['val_top1'])}f}" in labels, labels  # at the data's decimals


def test_a_status_prints_as_the_cli_s_lines_and_shows_as_one_short_line():
    """print(study.status()) gives ``rsb-tune status``'s lines; a notebook's bare ``study.status()``
    (the repr) one short line, not a dataclass of 100 values; a loss at its own decimals."""
    from rsb_tune.store.status import StudyStatus

    values = tuple(2.3012 + 4e-4 * np.random.default_rng(0).standard_normal(100))
    status = StudyStatus(
        name="losses", kind="seeds", recipe="A3", where="/s/losses", planned=100, counts={C.OK: 100},
        metric="val_loss", mode="min", values=values, best_trial="t0007", started_at="2026-12-01", ended_at=None, running_now=False,
    )  # fmt: skip
    assert str(status) == "\n".join(status.lines())
    assert str(status).splitlines()[0] == "study losses (seeds, recipe A3): 100 trials planned; finished"
    assert f"mean {C.mean_std(status.mean, status.std)}" in str(status) and " ± 0.00 " not in str(status)
    shown = repr(status)
    assert shown == f"StudyStatus(name='losses', state=finished, done=100/100, val_loss={C.mean_std(status.mean, status.std)})"
    assert len(shown) < 100 and "values=" not in shown


def test_status_and_report_say_which_precision_the_trials_ran(tmp_path):
    """Trials may run in bf16 or fp32 (``amp``, and ``auto`` by the device): the status line, the browser's JSON and
    the report's overview say which the trials ran (``runtime_amp``; ``off`` is fp32)."""
    from analysis.report import write_report
    from rsb_tune.store.tables import write_tables

    study = make_study(tmp_path, "amp", n=3, statuses=["pending"] * 3)
    for tid, amp in zip(study.plan(), ("bf16", "bf16", "off")):
        L.record_result(study, tid, {"epoch": 1, "status": C.OK, "val_top1": 50.0 + int(tid[1:]), "val_loss": 1.0, "runtime_amp": amp})
    write_tables(study)
    status = rsb_tune.load("amp", storage=str(tmp_path)).status()
    assert status.as_dict()["precision"] == {"bf16": 2, "fp32": 1}
    assert "  precision: bf16 in 2 trials, fp32 in 1 trial (mixed: the trials ran on different machines or settings)" in status.lines()
    overview = (write_report(study.dir) / "summary.md").read_text()
    assert "bf16 (2), fp32 (1)" in overview
    one = make_study(tmp_path, "one", n=2, statuses=["pending"] * 2)
    for tid in one.plan():
        L.record_result(one, tid, {"epoch": 1, "status": C.OK, "val_top1": 50.0, "val_loss": 1.0, "runtime_amp": "off"})
    assert "  precision: fp32 (every trial that reported)" in rsb_tune.load("one", storage=str(tmp_path)).status().lines()
