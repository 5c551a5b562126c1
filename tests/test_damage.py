"""One damaged study is its own problem: a storage that holds a healthy study beside studies
damaged in each way users met (a wrong-typed or non-UTF-8 event line, a binary or too deeply
nested study.yaml, a corrupt plan.json, an unquoted timestamp) is listed, browsed and read with
the healthy study's numbers unchanged and each damaged one named with one line; names and
storages are checked in one place; the token's redirect stays on the server."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

import rsb_tune
from rsb_tune.errors import StudyError, UserError
from rsb_tune.serve.app import create_app
from rsb_tune.store.directory import StudyDir
from rsb_tune.store.events import parse_event_lines
from tests.conftest import assert_user_error, run_cli
from tests.serve_helpers import make_study


def _insert_line(study: StudyDir, trial_id: str, line: bytes, at: int = 1) -> None:
    path = study.events_dir / f"{trial_id}.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines.insert(at, line)
    path.write_bytes(b"\n".join(lines))


# name -> what its damage line names
DAMAGED = {
    "bad-epoch": "events/t0001.jsonl line 2",
    "non-utf8-event": "events/t0000.jsonl line 2",
    "binary-yaml": "study.yaml",
    "deep-yaml": "study.yaml",
    "bad-plan": "plan.json",
}
STARTED = "2026-11-01T00:00:00+00:00"
IN_FILES = {"binary-yaml", "deep-yaml", "bad-plan"}  # the manifest or plan: nothing else is read


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    root = tmp_path_factory.mktemp("damage")
    make_study(root, "healthy", n=4, started_at=STARTED)
    _insert_line(make_study(root, "bad-epoch", n=3), "t0001", json.dumps({"type": "result", "epoch": "two", "val_top1": 1.0, "status": "running"}).encode())
    _insert_line(make_study(root, "non-utf8-event", n=3), "t0000", b"\xff\xfe\x00garbage \x80")
    make_study(root, "binary-yaml", n=2).meta_path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01kind: seeds")
    make_study(root, "deep-yaml", n=2).meta_path.write_text("kind: seeds\nx: " + "[" * 2000 + "]" * 2000 + "\n")
    make_study(root, "bad-plan", n=2).plan_path.write_text('{"t0000": {"seed": 0}, "t0001": ')
    stamped = make_study(root, "timestamp", n=2)
    stamped.meta_path.write_text(stamped.meta_path.read_text().replace("started_at: ", "started_at: 2026-11-30 10:00:00\nold_started_at: ", 1))
    alone = tmp_path_factory.mktemp("healthy-alone")
    make_study(alone, "healthy", n=4, started_at=STARTED)
    return root, alone


def test_the_browser_lists_every_study_and_names_each_damage(storage):
    root, alone = storage
    with TestClient(create_app(str(root))) as client, TestClient(create_app(str(alone))) as reference:
        for path in ("/", "/api/studies", "/?kind=seeds"):
            assert client.get(path).status_code == 200, path
        cards = {s["name"]: s for s in client.get("/api/studies").json()["studies"]}
        assert set(cards) == {"healthy", "timestamp", *DAMAGED}
        for name, needle in DAMAGED.items():
            assert cards[name]["state"] == "damaged", (name, cards[name])
            assert needle in cards[name]["damaged"] and "\n" not in cards[name]["damaged"], cards[name]["damaged"]
        expected = reference.get("/api/studies").json()["studies"][0]
        assert {k: v for k, v in cards["healthy"].items() if k not in ("eta_s", "command")} == {k: v for k, v in expected.items() if k not in ("eta_s", "command")}
        assert cards["timestamp"]["state"] == "finished" and cards["timestamp"]["started_at"] == "2026-11-30 10:00:00"
        for path in ("/studies/healthy", "/api/studies/healthy", "/api/studies/healthy/trials", "/api/studies/healthy/epochs", "/api/studies/timestamp", "/studies/timestamp"):
            assert client.get(path).status_code == 200, path
        untimed = lambda rows: [{k: v for k, v in r.items() if not k.endswith("_time")} for r in rows["trials"]]  # noqa: E731
        assert untimed(client.get("/api/studies/healthy/trials").json()) == untimed(reference.get("/api/studies/healthy/trials").json())
        for name in DAMAGED:
            for path in (f"/studies/{name}", f"/api/studies/{name}", f"/api/studies/{name}/trials"):
                assert client.get(path).status_code == 200, path
        assert "damaged" in client.get("/").text


def test_list_studies_and_status_say_damaged(storage):
    root, alone = storage
    studies = {s.name: s for s in rsb_tune.list_studies(str(root))}
    assert set(studies) == {"healthy", "timestamp", *DAMAGED}
    for name, needle in DAMAGED.items():
        status = studies[name].status()
        assert status.state == "damaged" and needle in status.damaged, (name, status.damaged)
    assert studies["healthy"].status().as_dict() | {"where": None} == rsb_tune.load("healthy", str(alone)).status().as_dict() | {"where": None}
    assert studies["bad-epoch"].status().done == 3  # the good lines stand: t0001's epoch 2 still counts
    assert studies["timestamp"].status().started_at == "2026-11-30 10:00:00"
    assert {s.name for s in rsb_tune.list_studies(str(root), kind="seeds")} == {"healthy", "timestamp", "bad-epoch", "non-utf8-event"}
    assert list(studies)[-len(IN_FILES) :] == sorted(IN_FILES)  # unreadable manifests or plans: listed last


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_status_of_a_damaged_study_is_one_line(storage, name):
    root, _ = storage
    proc = run_cli("status", name, "--storage", str(root))
    assert "Traceback" not in proc.stderr, proc.stderr
    if name in IN_FILES:
        assert_user_error(proc, DAMAGED[name])
    else:
        assert proc.returncode == 0, proc.stderr
        assert f"damaged: {DAMAGED[name]}" in proc.stdout and "damaged" in proc.stdout.splitlines()[0]


def test_event_lines_of_the_wrong_type_are_skipped_and_counted():
    lines = [b'{"type": "result", "epoch": 1}', b"\xff\xfe", b'{"type": "result", "epoch": "two"}', b"[1, 2]", b'{"type": "result", "epoch": true}', b'{"type": "result", "epoch": 2}', b'{"type": "res']
    events = parse_event_lines(lines)
    assert [e["epoch"] for e in events] == [1, 2]
    assert [n for n, _ in events.damaged] == [2, 3, 4, 5]  # the torn last line is not damage


def test_a_too_deep_or_binary_space_file_is_one_line(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("recipe: A3\ngrid:\n  lr: " + "[" * 600 + "]" * 600 + "\n")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01grid: {}")
    from rsb_tune.planning.space import load_space

    for path, needle in ((deep, "nested deeper than"), (binary, "not UTF-8")):
        with pytest.raises(UserError, match=needle):
            load_space(path)
    assert_user_error(run_cli("grid", "--space", str(deep), "--dry-run"), "deep.yaml", "nested deeper than")


@pytest.mark.parametrize("name", ["", "nl\n", " x", "a/b", 123, None.__class__])
def test_names_are_checked_in_one_place(tmp_path, name):
    with pytest.raises(StudyError, match="name="):
        StudyDir(tmp_path, name)


def test_a_bad_name_or_storage_on_the_command_line_is_one_line(tmp_path, monkeypatch):
    assert_user_error(run_cli("seeds", "--n", "1", "--epochs", "1", "--storage", str(tmp_path), "--name", "nl\n", cwd=tmp_path), "--name")
    assert_user_error(run_cli("seeds", "--n", "1", "--epochs", "1", "--storage", str(tmp_path), "--name", "", cwd=tmp_path), "--name")
    assert_user_error(run_cli("status", "x", "--storage", "", cwd=tmp_path), "--storage")
    assert list(tmp_path.iterdir()) == []
    for bad in ("", "  ", "a\nb", "a\x00b", 123):
        with pytest.raises(UserError, match="storage="):
            rsb_tune.list_studies(bad)


def test_report_out_an_existing_file_is_one_line(storage, tmp_path):
    root, _ = storage
    existing = tmp_path / "taken.html"
    existing.write_text("mine")
    assert_user_error(run_cli("report", "healthy", "--storage", str(root), "--out", str(existing)), "--out")
    assert existing.read_text() == "mine"


def test_the_token_redirect_stays_on_the_server(storage):
    root, _ = storage
    with TestClient(create_app(str(root), token="s3cret"), base_url="http://testserver") as client:
        for target, kept in (("//evil.example/?token=s3cret", "/evil.example/"), ("///evil.example/x?token=s3cret&kind=seeds", "/evil.example/x?kind=seeds")):
            r = client.get("http://testserver" + target, follow_redirects=False)
            assert r.status_code == 303, (target, r.status_code)
            assert r.headers["location"] == kept, r.headers["location"]


def test_a_finished_trials_lost_event_log_is_reported_not_replanned(tmp_path):
    study = make_study(tmp_path, "lost", n=2)
    (study.events_dir / "t0001.jsonl").unlink()
    status = rsb_tune.load("lost", str(tmp_path)).status()
    assert status.state == "damaged" and "events/t0001.jsonl: missing" in status.damaged and "trials.parquet" in status.damaged
    with TestClient(create_app(str(tmp_path))) as client:
        card = client.get("/api/studies").json()["studies"][0]
        assert card["state"] == "damaged" and "events/t0001.jsonl" in card["damaged"]
    before = sorted(p.name for p in study.dir.rglob("*"))
    with pytest.raises(StudyError, match="t0001.jsonl: missing.*train the trial again"):
        rsb_tune.resume("lost", storage=str(tmp_path), executor="local")
    assert sorted(p.name for p in study.dir.rglob("*")) == before
    assert_user_error(run_cli("resume", "lost", "--storage", str(tmp_path), "--executor", "local"), "t0001.jsonl: missing")
