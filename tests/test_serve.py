"""``rsb-tune serve``: pages, JSON API, security and read-only behaviour, over synthetic studies
written by the engine's own Study/results code (fast), and the CLI in a subprocess."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest
from tests.conftest import assert_user_error, run_cli
from tests.serve_helpers import SECRET_DIR, Server, append_event, make_study, raw_get, rebuild_tables

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from rsb_tune.serve.app import create_app  # noqa: E402

TOKEN = "a-long-enough-test-token-0123456789"


@pytest.fixture()
def storage(tmp_path):
    root = tmp_path / "studies"
    root.mkdir()
    make_study(root, "seedsA", n=4, started_at="2026-12-01T10:00:00+00:00")
    make_study(root, "seedsB", n=4, statuses=["ok", "ok", "ok", "error"], started_at="2026-12-01T11:00:00+00:00")
    make_study(root, "gridC", kind="grid", n=8, params=("lr", "weight_decay"), started_at="2026-12-01T09:00:00+00:00")
    return root


@pytest.fixture()
def client(storage):
    with TestClient(create_app(str(storage), redraw_s=0.0)) as c:
        yield c


def _wait_figures(client, name, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/api/studies/{name}").json()
        if body["figures"]["status"] == "ready":
            return body
        time.sleep(0.5)
    raise AssertionError(f"figures of {name} not drawn in {timeout} s: {body['figures']}")


def _tree(root: Path) -> dict[str, tuple]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*")}


# --------------------------------------------------------------------------- pages and API


def test_index_lists_studies_newest_first_and_filters_by_kind(client):
    body = client.get("/api/studies").json()
    assert [s["name"] for s in body["studies"]] == ["seedsB", "seedsA", "gridC"]
    b = body["studies"][0]
    assert (b["planned"], b["done"], b["ok"], b["failed"], b["running"], b["state"]) == (4, 3, 3, 1, 0, "finished")  # done: finished with a result; the error is failed (one status: rsb_tune.store)
    assert [s["name"] for s in client.get("/api/studies?kind=grid").json()["studies"]] == ["gridC"]
    page = client.get("/?kind=seeds")
    assert page.status_code == 200 and "seedsA" in page.text and "gridC" not in page.text
    assert client.get("/?kind=bogus").status_code == 400
    assert client.get("/api/studies?kind=bogus").json()["status"] == 400


def test_study_api_matches_the_event_logs(client, storage):
    import json

    finals = []
    for log in sorted((storage / "seedsB" / "events").glob("*.jsonl")):
        events = [json.loads(line) for line in log.read_text().splitlines()]
        if events[-1].get("status") == "ok":
            finals.append(events[-1]["val_top1"])
    s = client.get("/api/studies/seedsB").json()
    assert s["mean"] == pytest.approx(statistics.fmean(finals)) and s["std"] == pytest.approx(statistics.stdev(finals))
    assert s["best"] == pytest.approx(max(finals)) and s["n"] == 3
    assert set(s["links"]) >= {"trials.parquet", "epochs.parquet", "report"}
    trials = client.get("/api/studies/seedsB/trials").json()["trials"]
    assert [t["status"] for t in trials] == ["ok", "ok", "ok", "error"]
    assert "CUDA out of memory" in trials[3]["error"]
    epochs = client.get("/api/studies/seedsB/epochs").json()["epochs"]
    assert len(epochs) == 8 and {e["epoch"] for e in epochs} == {1, 2}
    page = client.get("/studies/seedsB")
    assert page.status_code == 200 and 'id="trials"' in page.text and "CUDA out of memory" in page.text


def test_grid_page_shows_params_and_ranking(client):
    body = _wait_figures(client, "gridC")
    assert body["params"] == ["lr", "weight_decay"]
    assert "grid_summary" in body["figures"]["figures"] and "grid_heatmap" in body["figures"]["figures"]
    page = client.get("/studies/gridC").text
    assert "Grid ranking" in page and 'data-key="p:lr"' in page


def test_seed_study_figures_are_drawn_by_analysis_and_served(client):
    body = _wait_figures(client, "seedsA")
    names = set(body["figures"]["figures"])
    assert {"histogram_val_top1", "histogram_v2_top1", "epoch_variance_val_top1", "expected_max", "split_correlation"} <= names
    for url in body["figures"]["figures"].values():
        r = client.get(url)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content[:4] == b"\x89PNG"
    assert body["figures"]["summary"]["seed_table"][0]["metric"] == "val_top1"
    assert "(t-interval)" in client.get("/studies/seedsA").text  # the method beside the interval of the mean
    report = client.get("/studies/seedsA/report/")
    assert report.status_code == 200 and "histogram_val_top1.png" in report.text
    assert client.get("/studies/seedsA/report/histogram_val_top1.svg").status_code == 200
    import io
    import zipfile

    archive = zipfile.ZipFile(io.BytesIO(client.get("/studies/seedsA/report.zip").content))
    assert {"seedsA-report/index.html", "seedsA-report/summary.json", "seedsA-report/histogram_val_top1.png"} <= set(archive.namelist())
    table = client.get("/studies/seedsA/files/trials.parquet")
    assert table.status_code == 200 and table.content[:4] == b"PAR1"


def test_figures_are_cached_until_the_tables_change(client, storage):
    first = _wait_figures(client, "seedsA")
    again = client.get("/api/studies/seedsA").json()
    assert again["figures"]["status"] == "ready" and again["figures"]["figures"] == first["figures"]["figures"]
    url = next(iter(first["figures"]["figures"].values()))
    before = client.get(url).content
    for e in (1, 2):  # seed 0 is trained again and does much better: the histogram changes
        append_event(storage, "seedsA", "t0000", {"type": "result", "time": time.time(), "epoch": e, "val_top1": 90.0 + e, "v2_top1": 80.0, "status": "ok" if e == 2 else "running"})
    time.sleep(0.01)
    rebuild_tables(storage, "seedsA")
    assert client.get("/api/studies/seedsA").json()["figures"]["status"] == "drawing"
    after = _wait_figures(client, "seedsA")
    assert client.get(url).content != before
    assert after["mean"] > first["mean"]


def _drawn(figures, storage, name: str, version: tuple, deadline: float) -> dict:
    """Ask ``figures`` for a running study's drawing of ``version`` until it is ready."""
    while (got := figures.study(name, storage / name, version, running=True, has_tables=True))["status"] != "ready":
        assert time.monotonic() < deadline, got
        time.sleep(0.5)
    return got


def test_a_running_studys_figures_are_redrawn_within_a_share_of_a_core(storage, monkeypatch):
    from rsb_tune.serve import _figures

    monkeypatch.setattr(_figures, "DRAW_SHARE", 1e-9)  # any drawing is too costly to repeat while running
    figures = _figures.Figures(redraw_s=0.0)
    try:
        first = _drawn(figures, storage, "seedsA", ("v1",), time.monotonic() + 240)
        assert figures._cost["study:seedsA"] > 0  # the worker's CPU seconds for that drawing
        again = figures.study("seedsA", storage / "seedsA", ("v2",), running=True, has_tables=True)
        assert again["version"] == first["version"] and "study:seedsA" not in figures._jobs  # the last drawing stays
        figures.study("seedsA", storage / "seedsA", ("v2",), running=False, has_tables=True)
        assert "study:seedsA" in figures._jobs  # a study that has ended is drawn again at once
    finally:
        figures.close()


def test_a_running_studys_first_figures_are_drawn_at_once(storage):
    """A drawing made before any trial finished has no figure: it holds nothing back, so the
    figures come as soon as the first trial's result is in the tables, not a redraw period later."""
    from rsb_tune.serve import _figures

    make_study(storage, "young", n=2, statuses=["pending", "pending"], finished=False)
    figures = _figures.Figures(redraw_s=3600.0)
    try:
        deadline = time.monotonic() + 240
        first = _drawn(figures, storage, "young", ("v1",), deadline)
        assert first["figures"] == []
        for e in (1, 2):  # the first trial finishes
            append_event(storage, "young", "t0000", {"type": "result", "time": time.time(), "epoch": e, "val_top1": 50.0 + e, "v2_top1": 40.0, "status": "ok" if e == 2 else "running"})
        rebuild_tables(storage, "young")
        figures.study("young", storage / "young", ("v2",), running=True, has_tables=True)
        assert "study:young" in figures._jobs  # drawn again at once, though the redraw period is an hour
        second = _drawn(figures, storage, "young", ("v2",), deadline)
        assert "histogram_val_top1" in second["figures"]
        figures.study("young", storage / "young", ("v3",), running=True, has_tables=True)
        assert "study:young" not in figures._jobs  # with figures shown, the period holds again
    finally:
        figures.close()


def test_an_all_diverged_study_says_why_it_has_no_figures(client, storage):
    make_study(storage, "blownup", n=2, statuses=["pending", "pending"])
    for i, tid in enumerate(("t0000", "t0001")):
        for e in range(1, i + 2):
            loss = float("nan") if e == i + 1 else 2.0
            append_event(storage, "blownup", tid, {"type": "result", "time": time.time(), "epoch": e, "train_loss": loss, "val_top1": float("nan") if loss != loss else 30.0, "status": "diverged" if loss != loss else "running"})
    rebuild_tables(storage, "blownup")
    body = _wait_figures(client, "blownup")
    assert body["figures"]["figures"] == {} and body["figures"]["error"] is None
    page = client.get("/studies/blownup").text
    assert "No figure can be drawn" in page and "2 diverged" in page
    assert "diverged at epoch 1: train_loss nan" in page and "diverged at epoch 2: train_loss nan" in page


def test_live_fragment_answers_204_while_nothing_changed(client, storage):
    r = client.get("/studies/seedsA/live")
    version = r.headers["X-Version"]
    _wait_figures(client, "seedsA")
    version = client.get("/studies/seedsA/live").headers["X-Version"]
    assert client.get(f"/studies/seedsA/live?v={version}").status_code == 204
    append_event(storage, "seedsA", "t0001", {"type": "result", "time": time.time(), "epoch": 3, "val_top1": 1.0, "status": "running"})
    changed = client.get(f"/studies/seedsA/live?v={version}")
    assert changed.status_code == 200 and changed.headers["X-Version"] != version


def test_unchanged_study_is_answered_from_the_cache_with_etags(client, storage, monkeypatch):
    urls = ["/", "/api/studies", "/studies/seedsA", "/api/studies/seedsA", "/api/studies/seedsA/trials", "/api/studies/seedsA/epochs", "/studies/seedsA/files/trials.parquet"]
    first = {url: client.get(url) for url in urls}
    store = client.app.state.storage
    builds = []
    for name in ("_trial_rows", "_epoch_rows", "_summary"):
        real = getattr(store, name)
        monkeypatch.setattr(store, name, lambda ref, real=real, name=name: builds.append(name) or real(ref))
    for url, r in first.items():
        etag = r.headers["etag"]
        again = client.get(url)
        assert again.status_code == 200 and again.headers["etag"] == etag and again.content == r.content, url
        not_modified = client.get(url, headers={"If-None-Match": etag})
        assert not_modified.status_code == 304 and not_modified.content == b"", url
        assert client.get(url, headers={"If-None-Match": '"something-else"'}).status_code == 200, url
    assert builds == []  # nothing was read again: the files did not change
    append_event(storage, "seedsA", "t0001", {"type": "result", "time": time.time(), "epoch": 3, "val_top1": 1.0, "status": "running"})
    for url in urls[:-1]:  # the tables are rewritten by the engine, not by an event
        r = client.get(url, headers={"If-None-Match": first[url].headers["etag"]})
        assert r.status_code == 200 and r.headers["etag"] != first[url].headers["etag"], url
    assert sorted(set(builds)) == ["_epoch_rows", "_summary", "_trial_rows"] and len(builds) == 3


def test_downloaded_tables_name_no_server_path_host_or_node(client, storage):
    import io

    import pyarrow.parquet as pq

    host, node = "head-node-secret-7f3a", "node-id-secret-9c2e41"
    append_event(storage, "seedsB", "t0000", {"type": "result", "time": time.time(), "epoch": 2, "val_top1": 55.0, "v2_top1": 50.0, "status": "ok", "hostname": host, "node_id": node})
    rebuild_tables(storage, "seedsB")
    on_disk = pq.read_table(storage / "seedsB" / "trials.parquet")
    assert {"data_path", "hostname", "node_id"} <= set(on_disk.column_names)  # what the engine wrote stays
    assert host in on_disk.column("hostname").to_pylist()
    forbidden = [SECRET_DIR, "alice-secret", str(storage), str(storage.resolve()), host, node]
    for name in ("trials.parquet", "epochs.parquet"):
        r = client.get(f"/studies/seedsB/files/{name}")
        assert r.status_code == 200 and r.content[:4] == b"PAR1" and f'filename="seedsB-{name}"' in r.headers["content-disposition"]
        served = pq.read_table(io.BytesIO(r.content))
        disk = pq.read_table(storage / "seedsB" / name)
        assert not {"data_path", "v2_path", "hostname", "node_id"} & set(served.column_names), name
        assert served.num_rows == disk.num_rows and served.column("val_top1").to_pylist() == disk.column("val_top1").to_pylist()
        text = repr(served.to_pylist()) + repr(served.schema.metadata)
        for word in forbidden:
            assert word not in text and word.encode() not in r.content, (name, word)
    trials = pq.read_table(io.BytesIO(client.get("/studies/seedsB/files/trials.parquet").content)).to_pylist()
    assert "CUDA out of memory" in trials[3]["error"] and "…/x.py" in trials[3]["error"]


def test_compare_page_and_api(client):
    api = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        api = client.get("/api/compare?a=seedsA&b=seedsB").json()
        if api["status"] == "ready":
            break
        time.sleep(0.5)
    assert api["status"] == "ready", api
    rows = {r["metric"]: r for r in api["comparison"]["compare"]}
    assert rows["val_top1"]["n_a"] == 4 and rows["val_top1"]["n_b"] == 3
    assert 0.0 <= rows["val_top1"]["p_a_gt_b"] <= 1.0
    page = client.get("/compare?a=seedsA&b=seedsB")
    assert page.status_code == 200 and "P(A &gt; B)" in page.text and 'id="compare-table"' in page.text
    verdict = api["comparison"]["comparison"]["line"]  # the verdict of `rsb-tune compare`, on the page too
    assert verdict.startswith("A (seedsA, n=4) vs B (seedsB, n=3): val_top1") and 'id="compare-verdict"' in page.text
    assert client.get("/compare").status_code == 200  # the chooser
    assert client.get("/compare?a=seedsA").status_code == 400
    assert client.get("/compare?a=seedsA&b=seedsA&b=seedsB").status_code == 400
    assert client.get("/compare?a=seedsA&b=nope").status_code == 404


def test_unknown_study_is_a_404_page_not_a_traceback(client):
    r = client.get("/studies/nope")
    assert r.status_code == 404 and "<h1>404" in r.text and "Traceback" not in r.text
    r = client.get("/api/studies/nope/trials")
    assert r.status_code == 404 and r.json() == {"error": "no such study in this storage", "status": 404}
    assert client.get("/no/such/page").status_code == 404


def test_torn_last_event_line_is_skipped(client, storage):
    before = client.get("/api/studies/seedsA").json()
    with open(storage / "seedsA" / "events" / "t0001.jsonl", "a") as f:
        f.write('{"type": "result", "epoch": 3, "val_top1": 99.0, "status": "ok"')  # no newline: in flight
    after = client.get("/api/studies/seedsA").json()
    assert (after["done"], after["mean"]) == (before["done"], before["mean"])


def test_running_state_comes_from_the_lock_text_without_locking(tmp_path):
    import subprocess
    import sys

    root = tmp_path / "s"
    root.mkdir()
    make_study(root, "run", n=4, statuses=["ok", "running", "pending", "pending"], finished=False)
    make_study(root, "dead", n=2, statuses=["ok", "running"], finished=False)
    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "rsb_tune"])
    try:
        (root / "run" / ".lock").write_text(f"pid {driver.pid} on {os.uname().nodename}")
        (root / "dead" / ".lock").write_text(f"pid {2**22 + 12345} on {os.uname().nodename}")
        with TestClient(create_app(str(root))) as c:
            run = c.get("/api/studies/run").json()
            assert (run["state"], run["done"], run["running"], run["pending"]) == ("running", 1, 1, 2)
            assert run["eta_s"] is not None and run["eta_s"] > 0
            assert c.get("/api/studies/dead").json()["state"] == "interrupted"
        import fcntl

        fd = os.open(root / "run" / ".lock", os.O_RDWR)  # nobody holds the flock: the server took none
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
    finally:
        driver.kill()
        driver.wait()


# --------------------------------------------------------------------------- security


def test_names_are_looked_up_in_the_listing_traversal_refused(storage, tmp_path):
    outside = tmp_path / "outside"
    make_study(outside.parent, "outside", n=2)  # a real study next to the storage, not in it
    (storage / "evil").symlink_to(outside, target_is_directory=True)
    (storage / "seedsA" / "epochs.parquet").unlink()
    (storage / "seedsA" / "epochs.parquet").symlink_to(outside / "epochs.parquet")
    with TestClient(create_app(str(storage))) as c:
        assert "evil" not in [s["name"] for s in c.get("/api/studies").json()["studies"]]
        assert c.get("/api/studies/evil").status_code == 404
        assert c.get("/studies/seedsA/files/epochs.parquet").status_code == 404  # a symlink out
        assert c.get("/studies/seedsA/files/plan.json").status_code == 404  # not a table
    with Server(storage) as srv:
        targets = [
            "/studies/..", "/studies/%2e%2e", "/studies/..%2f..%2fetc", "/api/studies/..%2Foutside",
            "/api/studies/%2Fetc%2Fpasswd", "/studies/%2e%2e%2foutside/files/trials.parquet",
            "/studies/seedsA/files/..%2f..%2foutside%2ftrials.parquet", "/studies/seedsA/files/%2e%2e%2fstudy.yaml",
            "/studies/seedsA/report/..%2fstudy.yaml", "/studies/seedsA/figures/..%2f..%2fseedsA%2fstudy.yaml",
            "/static/..%2f_studies.py", "/static/%2e%2e/app.py", "/api/studies/evil", "/studies/evil/files/trials.parquet",
            "/studies/seedsA/../../outside/files/trials.parquet",
        ]  # fmt: skip
        for target in targets:
            status, data = raw_get(srv.host, srv.port, target)
            assert status in (400, 404), (target, status)
            assert b"PAR1" not in data and b"kind:" not in data and b"import " not in data, target


def test_token_required_for_every_page_and_compared_in_constant_time(storage, monkeypatch):
    import hmac

    from rsb_tune.serve import _safe

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(_safe.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    with TestClient(create_app(str(storage), TOKEN), follow_redirects=False) as c:
        assert c.get("/api/studies").status_code == 401
        assert c.get("/api/studies", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
        assert c.get("/api/studies/seedsA", headers={"Authorization": "Bearer " + TOKEN[:-1]}).status_code == 401
        r = c.get("/studies/seedsA")
        assert r.status_code == 303 and r.headers["location"] == "/token"
        howto = c.get("/token")
        assert howto.status_code == 401 and "Authorization: Bearer" in howto.text and "?token=" in howto.text and TOKEN not in howto.text
        assert c.get("/api/studies", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        r = c.get(f"/studies/seedsA?token={TOKEN}")
        assert r.status_code == 303 and r.headers["location"] == "/studies/seedsA" and "httponly" in r.headers["set-cookie"].lower()
        assert c.get("/studies/seedsA").status_code == 200  # the cookie
    assert calls and all(isinstance(a, bytes) for a, _ in calls)


def test_read_only_and_no_server_paths_in_any_page(storage, client):
    before = _tree(storage)
    assert client.post("/api/studies").status_code == 405
    assert client.delete("/studies/seedsA").status_code == 405
    for name in ("seedsA", "seedsB", "gridC"):
        _wait_figures(client, name)
    urls = ["/", "/api/studies", "/compare", "/compare?a=seedsA&b=seedsB", "/api/compare?a=seedsA&b=seedsB"]
    for name in ("seedsA", "seedsB", "gridC"):
        urls += [f"/studies/{name}", f"/studies/{name}/live", f"/api/studies/{name}", f"/api/studies/{name}/trials", f"/api/studies/{name}/epochs", f"/studies/{name}/report/", f"/studies/{name}/report/summary.json", f"/studies/{name}/report/summary.md", f"/studies/{name}/report.zip"]
    forbidden = [str(storage), str(storage.resolve()), SECRET_DIR, "alice-secret", os.path.expanduser("~") + "/", os.getcwd(), "Traceback"]
    for url in urls:
        r = client.get(url)
        assert r.status_code in (200, 204), (url, r.status_code)
        text = r.text
        if url.endswith(".zip"):
            import io
            import zipfile

            with zipfile.ZipFile(io.BytesIO(r.content)) as z:
                text = "".join(z.read(n).decode("utf-8", "replace") for n in z.namelist())
        for word in forbidden:
            assert word not in text, (url, word)
    assert "…/imagenette" in client.get("/api/studies/seedsA/trials").text
    r = client.get("/")
    assert "default-src 'self'" in r.headers["content-security-policy"] and r.headers["x-content-type-options"] == "nosniff"
    assert _tree(storage) == before  # nothing written, nothing touched


def test_pages_fetch_nothing_from_the_internet(client):
    for url in ("/", "/studies/seedsA", "/compare?a=seedsA&b=seedsB", "/static/app.js", "/static/style.css"):
        text = client.get(url).text
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, url


# --------------------------------------------------------------------------- the CLI


def test_cli_non_local_host_without_token_is_refused(storage):
    env = {k: v for k, v in os.environ.items() if k != "RSB_TUNE_SERVE_TOKEN"}
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "rsb_tune", "serve", "--storage", str(storage), "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True, env=env, timeout=60)
    assert_user_error(proc, "--host 0.0.0.0", "--token", "RSB_TUNE_SERVE_TOKEN")
    assert_user_error(run_cli("serve", "--storage", str(storage), "--host", "0.0.0.0", "--token", "short"), "too short")
    assert_user_error(run_cli("serve", "--storage", str(storage / "missing")), "no such directory")
    assert_user_error(run_cli("serve", "--storage", str(storage), "--port", "70000"), "--port 70000")


def test_cli_defaults_to_localhost_and_a_taken_port_is_one_line(storage):
    import httpx

    with Server(storage) as srv:
        assert srv.host == "127.0.0.1"
        assert [s["name"] for s in httpx.get(f"{srv.url}/api/studies").json()["studies"]] == ["seedsB", "seedsA", "gridC"]
        assert_user_error(run_cli("serve", "--storage", str(storage), "--port", str(srv.port)), f"--port {srv.port}", "cannot listen")


def test_cli_non_local_host_with_token_from_the_environment(storage):
    import httpx

    with Server(storage, "--host", "0.0.0.0", env={"RSB_TUNE_SERVE_TOKEN": TOKEN}) as srv:
        url = f"http://127.0.0.1:{srv.port}"
        assert httpx.get(f"{url}/api/studies").status_code == 401
        assert httpx.get(f"{url}/api/studies", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_serve_help_is_instant_and_imports_no_web_stack():
    import subprocess
    import sys

    code = "import sys; from rsb_tune.cli import build_parser; build_parser(); import rsb_tune.serve; print(sorted(m for m in ('starlette', 'uvicorn', 'jinja2', 'matplotlib', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out


def test_package_ships_templates_and_static_files():
    import rsb_tune.serve as pkg

    root = Path(pkg.__file__).parent
    for rel in ("templates/base.html", "templates/study.html", "templates/index.html", "templates/compare.html", "templates/error.html", "templates/token.html", "static/app.js", "static/style.css"):
        assert (root / rel).is_file(), rel
    import tomllib

    data = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert {"templates/*.html", "static/*"} <= set(data["rsb_tune.serve"])


def test_object_store_storage_is_read_through_the_servers_own_copy(tmp_path, s3_server, monkeypatch):
    import pyarrow.fs

    local = tmp_path / "local"
    local.mkdir()
    make_study(local, "remote1", n=3)
    uri = s3_server("serve-test")
    fs, root = pyarrow.fs.FileSystem.from_uri(uri)
    pyarrow.fs.copy_files(str(local / "remote1"), f"{root}/remote1", destination_filesystem=fs)
    monkeypatch.setenv("RSB_TUNE_CACHE_DIR", str(tmp_path / "cache"))
    with TestClient(create_app(uri)) as c:
        assert [s["name"] for s in c.get("/api/studies").json()["studies"]] == ["remote1"]
        s = c.get("/api/studies/remote1").json()
        assert (s["planned"], s["done"], s["ok"]) == (3, 3, 3)
        page = c.get("/studies/remote1").text
        assert "endpoint_override" not in page and str(tmp_path) not in page
        assert c.get("/studies/remote1/files/trials.parquet").content[:4] == b"PAR1"
        assert c.get("/api/studies/nope").status_code == 404
    assert not (local / "remote1" / ".sync.json").exists()  # the study's files were only read


def test_corrupt_files_make_notes_not_tracebacks(storage):
    (storage / "seedsA" / "trials.parquet").write_bytes(b"not a parquet file")
    (storage / "seedsB" / "plan.json").write_text("{torn")
    (storage / "gridC" / "study.yaml").write_text("kind: [unclosed")
    with TestClient(create_app(str(storage), redraw_s=0.0)) as c:
        for url in ("/", "/api/studies", "/studies/seedsA", "/studies/seedsB", "/api/studies/seedsB/trials", "/compare?a=seedsA&b=seedsB"):
            r = c.get(url)
            assert r.status_code == 200 and "Traceback" not in r.text, url
        deadline = time.monotonic() + 240
        while (figs := c.get("/api/studies/seedsA").json()["figures"])["status"] != "ready" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert figs["error"] and "trials.parquet" in figs["error"] and str(storage) not in figs["error"]
        assert "No figures" in c.get("/studies/seedsA").text
        assert c.get("/studies/seedsA/files/trials.parquet").status_code == 404


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("rsb-tune seeds --data /home/ana/imagenette --storage /srv/rsb", "rsb-tune seeds --data …/imagenette --storage …/rsb"),
        ('File "/usr/lib/python3/site.py", line 3', 'File "…/site.py", line 3'),
        ("~/data/digits", "…/digits"),
        ("s3://bucket/prefix/study", "s3://bucket/prefix/study"),  # the study's URI is what the user named
        ("http://host:8765/studies/x", "http://host:8765/studies/x"),
        ("val / v2 and lr=1e-3/2", "val / v2 and lr=1e-3/2"),
    ],
)
def test_scrub_keeps_the_last_component_of_server_paths(text, shown):
    from rsb_tune.serve._safe import scrub, scrub_text

    assert scrub_text(text) == shown
    assert scrub({"k": [text, float("nan"), 1.5]}) == {"k": [shown, None, 1.5]}


@pytest.mark.parametrize(("host", "local"), [("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True), ("[::1]", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("head-node", False), ("", False)])
def test_only_loopback_hosts_need_no_token(host, local, monkeypatch):
    from rsb_tune.serve import ServeError, check_options

    monkeypatch.delenv("RSB_TUNE_SERVE_TOKEN", raising=False)
    from rsb_tune.serve._safe import is_local

    assert is_local(host) is local
    if local:
        assert check_options(host, 0, None) is None
    else:
        with pytest.raises(ServeError):
            check_options(host, 0, None)
        assert check_options(host, 0, TOKEN) == TOKEN
