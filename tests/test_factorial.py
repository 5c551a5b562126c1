"""A crossed study everywhere it is shown: ``rsb-tune status`` (one line: the verdict), the Python
API (``Study.factorial()``), the report and the study browser say the same sentence; and a real
tiny crossed grid run end to end with the in-process executor."""

from __future__ import annotations

import html
import json
import time

import pytest
from tests.conftest import assert_user_error, run_cli
from tests.serve_helpers import make_study

import rsb_tune
from analysis.report import write_report
from rsb_tune.store.manifest import Manifest
from rsb_tune.store.status import factorial_record


@pytest.fixture()
def storage(tmp_path):
    root = tmp_path / "studies"
    root.mkdir()
    # 2 x 2 (lr x weight_decay) x 2 seeds, and a seed study
    make_study(root, "crossed", kind="grid", n=8, params=("lr", "weight_decay"), started_at="2026-12-01T09:00:00+00:00")
    make_study(root, "seeds", n=3, started_at="2026-12-01T10:00:00+00:00")
    return root


def test_status_api_and_report_say_the_same_verdict(storage, tmp_path):
    study = rsb_tune.load("crossed", storage=str(storage))
    result = study.factorial()
    assert result.factors == ("lr", "weight_decay") and result.cells["n"].tolist() == [2, 2, 2, 2]
    assert result.sentence.startswith("lr=0.005 wins under weight_decay=0.01 (P = ")
    status = study.status()
    assert status.factorial["sentence"] == result.sentence
    assert status.as_dict()["factorial"]["sentence"] == result.sentence
    proc = run_cli("status", "crossed", "--storage", str(storage))
    assert proc.returncode == 0, proc.stderr
    assert f"  lr x weight_decay: {result.sentence}" in proc.stdout.splitlines()
    summary = json.loads((write_report(study.path, tmp_path / "report") / "summary.json").read_text())
    assert summary["factorial"]["sentence"] == result.sentence
    # a seed study has no verdict line, and asking it for one is a user error naming what it varies
    seeds = rsb_tune.load("seeds", storage=str(storage))
    assert seeds.status().factorial is None and "wins under" not in "\n".join(seeds.status().lines())
    with pytest.raises(rsb_tune.errors.UserError, match="exactly two factors"):
        seeds.factorial()


def test_factorial_record_needs_two_factors_replicated():
    manifest = Manifest.of({"kind": "grid", "metric": "val_top1", "mode": "max", "params": ["lr", "wd"]})
    plan = {f"t{i}": {"lr": lr, "wd": wd, "seed": 0} for i, (lr, wd) in enumerate([(1, 1), (1, 2), (2, 1), (2, 2)])}
    states = {tid: ("ok", {1: {"val_top1": float(i)}}) for i, tid in enumerate(plan)}
    assert factorial_record(manifest, plan, states) is None  # one seed per point: a grid search
    plan2 = {**plan, **{f"u{i}": {**cfg, "seed": 1} for i, cfg in enumerate(plan.values())}}
    states2 = {**states, **{f"u{i}": ("pending", {}) for i in range(4)}}
    record = factorial_record(manifest, plan2, states2)
    assert record["sentence"] == "no verdict yet: every cell needs 2 ok seeds (lr=1 under wd=1 has 1)"
    states2 |= {f"u{i}": ("ok", {1: {"val_top1": i + 0.5}}) for i in range(4)}
    assert "wins under" in factorial_record(manifest, plan2, states2)["sentence"]
    assert factorial_record(Manifest.of({"kind": "seeds", "metric": "val_top1", "params": []}), plan2, states2) is None
    search = Manifest.of({"kind": "grid", "search": "optuna", "num_samples": 4, "metric": "val_top1", "params": ["lr", "wd"]})
    assert factorial_record(search, plan2, states2) is None


def test_browser_shows_the_crossed_section(storage):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from rsb_tune.serve.app import create_app

    sentence = rsb_tune.load("crossed", storage=str(storage)).factorial().sentence
    with TestClient(create_app(str(storage), redraw_s=0.0)) as client:
        deadline = time.monotonic() + 240
        while (body := client.get("/api/studies/crossed").json())["figures"]["status"] != "ready":
            assert time.monotonic() < deadline, body["figures"]
            time.sleep(0.5)
        assert "interaction" in body["figures"]["figures"]
        assert body["figures"]["summary"]["factorial"]["sentence"] == sentence
        assert body["factorial"] == rsb_tune.load("crossed", storage=str(storage)).status().as_dict()["factorial"]
        page = client.get("/studies/crossed").text
        assert "Crossed study: lr × weight_decay" in page and html.escape(sentence) in page
        assert "difference of differences" in page
        assert "Crossed study" not in client.get("/studies/seeds").text


@pytest.mark.e2e
def test_a_real_crossed_grid_end_to_end(tmp_path):
    """opt x lr x 2 seeds, 1 epoch, real timm training in process: the status line, the API and
    the report's section."""
    space = tmp_path / "crossed.yaml"
    space.write_text("recipe: A3\nseeds: [0, 1]\ngrid:\n  opt: [lamb, adamw]\n  lr: [2.0e-3, 8.0e-3]\n")
    storage = tmp_path / "st"
    proc = run_cli("grid", "--space", str(space), "--epochs", "1", "--executor", "local", "--storage", str(storage), "--name", "x")
    assert proc.returncode == 0, proc.stderr[-2000:]
    status = run_cli("status", "x", "--storage", str(storage))
    line = next(l for l in status.stdout.splitlines() if l.startswith("  opt x lr: "))
    study = rsb_tune.load("x", storage=str(storage))
    result = study.factorial()
    assert line == f"  opt x lr: {result.sentence}" and "wins under lr=" in line
    assert result.interaction is not None and result.anova.loc["opt:lr", "df"] == 1
    report = run_cli("report", "x", "--storage", str(storage))
    assert report.returncode == 0, report.stderr
    page = (study.path / "report" / "index.html").read_text()
    assert "Crossed study: opt x lr" in page and html.escape(result.sentence) in page and (study.path / "report" / "interaction.png").is_file()
    bad = run_cli("status", "nope", "--storage", str(storage))
    assert_user_error(bad, "nope")
