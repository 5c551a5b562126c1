"""Every read of a study is confined to its directory: a file of a study planted as a symlink
to a file outside the storage (the manifest, the plan, an event log, a table, a prediction file,
or the study directory itself) is refused with one line, by status, load, report and the
browser alike, and the planted value is never served."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

import analysis
import rsb_tune
from rsb_tune.errors import StudyError
from rsb_tune.serve.app import create_app
from tests.conftest import run_cli
from tests.serve_helpers import make_study

PLANTED = 777.25  # a metric value only the planted files hold
PLANTED_SEED = 4242
KINDS = ("study.yaml", "plan.json", "events/t0000.jsonl", "trials.parquet", "epochs.parquet", "predictions/t0000.npz", "dir")


def _plant(outside):
    """Files outside the storage that look like a study's, each holding the planted value."""
    src = make_study(outside, "planted", n=3)
    d = src.dir
    meta = d / "study.yaml"
    meta.write_text(meta.read_text().replace("recipe: A2", "recipe: PLANTED-RECIPE"))
    plan = json.loads((d / "plan.json").read_text())
    (d / "plan.json").write_text(json.dumps({tid: {**cfg, "seed": PLANTED_SEED + i} for i, (tid, cfg) in enumerate(plan.items())}))
    log = d / "events" / "t0000.jsonl"
    log.write_text("".join(json.dumps({**json.loads(line), "val_top1": PLANTED}) + "\n" for line in log.read_text().splitlines() if line.strip()))
    for table in ("trials.parquet", "epochs.parquet"):
        df = pd.read_parquet(d / table)
        df["val_top1"] = PLANTED
        df.to_parquet(d / table, index=False)
    (d / "predictions").mkdir(exist_ok=True)
    np.savez(d / "predictions" / "t0000.npz", val_correct=np.ones(200, bool), v2_correct=np.ones(100, bool))
    return d


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    outside = _plant(tmp_path_factory.mktemp("outside"))
    root = tmp_path_factory.mktemp("confined")
    make_study(root, "healthy", n=3)
    for i, kind in enumerate(KINDS):
        name = f"victim{i}"
        if kind == "dir":
            (root / name).symlink_to(outside, target_is_directory=True)
            continue
        victim = make_study(root, name, n=3).dir
        (victim / kind).parent.mkdir(exist_ok=True)
        (victim / kind).unlink(missing_ok=True)
        (victim / kind).symlink_to(outside / kind)
    return root


def _planted_in(text: str) -> bool:
    return str(PLANTED) in text or str(PLANTED_SEED) in text or "PLANTED-RECIPE" in text


def _victims():
    return [(f"victim{i}", kind) for i, kind in enumerate(KINDS)]


@pytest.mark.parametrize("name,kind", _victims())
def test_the_api_never_reads_a_file_planted_outside(storage, name, kind):
    try:
        study = rsb_tune.load(name, str(storage))
    except StudyError as e:  # the manifest, the plan or the directory: the study is refused
        assert kind in ("study.yaml", "plan.json", "dir") and "refused" in str(e) and "\n" not in str(e), str(e)
        return
    status = study.status()
    assert not _planted_in(json.dumps(status.as_dict(), default=str))
    if kind.startswith("events/"):
        assert status.state == "damaged" and "events/t0000.jsonl" in status.damaged and "refused" in status.damaged
    for read in (lambda: study.trials, lambda: study.tables().trials, lambda: study.tables().select().predictions("val")):
        try:
            value = read()
        except analysis.StudyError as e:  # refused, or (the synthetic studies have no predictions) missing
            assert ("refused" in str(e)) == (kind in ("trials.parquet", "epochs.parquet", "predictions/t0000.npz")) or "missing" in str(e), str(e)
            continue
        assert not (value == PLANTED).any().any(), kind


@pytest.mark.parametrize("name,kind", _victims()[:-1])
def test_the_report_and_the_analysis_refuse_a_planted_file(storage, name, kind, tmp_path):
    # what `rsb-tune report` and the browser's figure worker call (the analysis confines to the
    # directory it is given; that the directory is inside the storage is the store's check)
    try:
        out = analysis.write_report(storage / name, tmp_path / "r")
    except analysis.StudyError as e:
        assert "refused" in str(e) and "\n" not in str(e), str(e)
        return
    assert kind in ("plan.json", "events/t0000.jsonl", "predictions/t0000.npz"), kind  # files the analysis does not read, or only notes
    assert not _planted_in((out / "summary.json").read_text())


@pytest.mark.parametrize("name,kind", [v for v in _victims() if v[1] in ("study.yaml", "trials.parquet", "events/t0000.jsonl")])
def test_the_command_line_answers_one_line(storage, name, kind):
    for command in ("status", "report"):
        proc = run_cli(command, name, "--storage", str(storage))
        assert "Traceback" not in proc.stderr and not _planted_in(proc.stdout + proc.stderr), (command, proc.stdout, proc.stderr)
        if proc.returncode:
            assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "refused" in proc.stderr, proc.stderr


def test_the_browser_never_serves_a_planted_value(storage):
    with TestClient(create_app(str(storage))) as client:
        index = client.get("/api/studies")
        assert index.status_code == 200 and not _planted_in(index.text)
        cards = {s["name"]: s for s in index.json()["studies"]}
        assert "victim6" not in cards  # a study directory linked out of the storage is not listed
        for name, kind in _victims()[:-1]:
            for path in (f"/studies/{name}", f"/api/studies/{name}", f"/api/studies/{name}/trials", f"/api/studies/{name}/epochs", f"/studies/{name}/files/trials.parquet", f"/studies/{name}/files/epochs.parquet"):
                r = client.get(path)
                assert r.status_code in (200, 404), (path, r.status_code)
                assert not _planted_in(r.text), (path, kind)
                if path.endswith(".parquet") and r.status_code == 200:
                    import io

                    assert not (pd.read_parquet(io.BytesIO(r.content))["val_top1"] == PLANTED).any(), path
            if kind in ("study.yaml", "plan.json", "events/t0000.jsonl"):
                assert cards[name]["state"] == "damaged" and "refused" in cards[name]["damaged"], cards[name]
            if kind.endswith(".parquet"):
                assert client.get(f"/studies/{name}/files/{kind}").status_code == 404
        assert cards["healthy"]["state"] != "damaged"


def test_the_writer_never_appends_through_a_link_out(storage):
    from rsb_tune.runner.lifecycle import _append
    from rsb_tune.store.directory import StudyDir

    victim = StudyDir(storage, "victim2")
    target = (victim.events_dir / "t0000.jsonl").resolve()
    before = target.read_bytes()
    with pytest.raises(StudyError, match="refused"):
        _append(victim, "t0000", {"type": "result", "epoch": 9})
    assert target.read_bytes() == before


def test_the_default_report_folder_is_not_written_through_a_link_out(storage, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (storage / "healthy" / "report").symlink_to(elsewhere, target_is_directory=True)
    try:
        with pytest.raises(StudyError, match="report: a link leading out of the study directory; refused"):
            rsb_tune.load("healthy", str(storage)).report()
        assert list(elsewhere.iterdir()) == []
    finally:
        (storage / "healthy" / "report").unlink()


def test_a_figure_planted_as_a_link_is_replaced_not_written_through(storage, tmp_path):
    target = tmp_path / "precious.png"
    target.write_bytes(b"mine")
    out = tmp_path / "report"
    out.mkdir()
    (out / "histogram_val_top1.png").symlink_to(target)
    (out / "index.html").symlink_to(target)
    analysis.write_report(storage / "healthy", out)
    assert target.read_bytes() == b"mine"
    assert not (out / "index.html").is_symlink() and not (out / "histogram_val_top1.png").is_symlink()
