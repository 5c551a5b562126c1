"""``rsb-tune finetune``: a study's trained weights fine-tuned on another dataset (issue 25, items
3 and 4).

One real 2-seed, 1-epoch seed study on the embedded digits (``--executor local``), fine-tuned
for 1 epoch onto the embedded transfer target ``digits-parity`` (the default for a digits
source). Checked: trial i starts from source trial i's final weights on every layer but the
new head, the fine-tune trained from them (its final weights stay near the source's, far from a
fresh init), the manifest's lineage, the seeds' offset, the results in the tables, ``report``,
``status`` and ``resume``, and the one-line errors of a bad ``--from``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from analysis import contract as C
from tests.conftest import assert_user_error, events, kill_when, run_cli, start_cli


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    storage = tmp_path_factory.mktemp("finetune")
    src = run_cli("seeds", "--n", "2", "--epochs", "1", "--executor", "local", "--quiet", "--storage", str(storage), "--name", "s")
    assert src.returncode == 0, src.stderr
    ft = run_cli("finetune", "--from", "s", "--epochs", "1", "--executor", "local", "--quiet", "--storage", str(storage), "--name", "f")
    assert ft.returncode == 0, ft.stderr
    import rsb_tune

    return rsb_tune.load("s", storage=str(storage)), rsb_tune.load("f", storage=str(storage))


def _final_weights(study, tid):
    from rsb_tune.runner.evaluation import final_checkpoint
    from rsb_tune.training import checkpoint

    state = checkpoint.load(f"{final_checkpoint(study.directory, tid)}/{C.CHECKPOINT_FILE}", map_location="cpu")
    return checkpoint.weights_of(state, tid)


def test_each_trial_starts_from_its_source_trial(studies):
    from rsb_tune.training.trial import build_model, initial_model

    source, ft = studies
    for tid, cfg in ft.plan.items():
        assert cfg["init_from"]["study"] == "s" and cfg["init_from"]["trial_id"] == tid
        src = _final_weights(source, tid)
        start = initial_model(cfg, 2).state_dict()
        assert start["fc.weight"].shape[0] == 2 and src["fc.weight"].shape[0] == 10  # a new head
        body = [k for k in start if not k.startswith("fc.")]
        assert body and all(np.array_equal(start[k].numpy(), src[k].numpy()) for k in body)
        # the fine-tune trained from there: its final backbone is near the source's, far from a fresh one
        end, fresh = _final_weights(ft, tid), build_model(cfg, 2).state_dict()
        convs = [k for k in body if k.endswith("conv.weight") or k.endswith("conv1.weight")]

        def dist(a):
            return sum(float((a[k].float() - src[k].float()).norm()) for k in convs)

        assert dist(end) < 0.5 * dist(fresh)
    # the other source trial's weights are not the same: trial i pairs with trial i
    a, b = _final_weights(source, "t0000"), _final_weights(source, "t0001")
    assert not np.array_equal(a["conv1.0.weight"].numpy(), b["conv1.0.weight"].numpy())


def test_lineage_seeds_tables_report(studies, tmp_path):
    from rsb_tune.planning.finetune import FINETUNE_RECIPE, FINETUNE_SEED_OFFSET

    source, ft = studies
    meta = yaml.safe_load((ft.path / C.MANIFEST).read_text())
    assert meta["kind"] == "finetune" and meta["dataset"] == "digits-parity" and meta["recipe"] == "A2"
    lineage = meta["finetune_from"]
    assert lineage["study"] == "s" and lineage["recipe"] == "A2" and lineage["dataset"] == "digits"
    assert set(lineage["trials"]) == {"t0000", "t0001"}
    for tid, rec in lineage["trials"].items():
        assert (source.path / rec["checkpoint"].split("/s/", 1)[1] / C.CHECKPOINT_FILE).is_file()
        assert rec["seed"] == source.plan[tid]["seed"]
    trials = ft.trials.set_index("trial_id")
    src_trials = source.trials.set_index("trial_id")
    assert (trials["status"] == C.OK).all() and trials["val_top1"].notna().all()
    assert list(trials["seed"]) == [s + FINETUNE_SEED_OFFSET for s in src_trials["seed"]]
    assert (trials["opt"] == FINETUNE_RECIPE["opt"]).all() and (trials["dataset"] == "digits-parity").all()
    assert set(ft.epochs["trial_id"]) == {"t0000", "t0001"}
    assert (ft.path / C.EVENTS / "t0000.jsonl").is_file()
    # a fine-tune is re-scored as any study: at its own setting, its recorded val_top1 exactly
    evals = ft.evaluate(test_sizes=(24, 32, 40), executor="local")
    own = evals[evals["trained"].astype(bool)].set_index("trial_id")
    assert len(evals) == 6 and np.array_equal(own.loc[trials.index, "top1"].to_numpy(), trials["val_top1"].to_numpy())
    out = run_cli("report", "f", "--storage", str(ft.directory.storage), "--out", str(tmp_path / "r"))
    assert out.returncode == 0, out.stderr
    page = (tmp_path / "r" / "index.html").read_text()
    assert "Fine-tuned from another study" in page
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["transfer_table"][0]["dataset"] == "digits-parity" and summary["transfer_table"][0]["n"] == 2
    status = run_cli("status", "f", "--storage", str(ft.directory.storage))
    assert status.returncode == 0 and "finetune" in status.stdout
    # the same command under the same name continues the study: nothing runs twice
    before = (ft.path / C.EVENTS / "t0000.jsonl").read_text()
    again = run_cli("finetune", "--from", "s", "--epochs", "1", "--executor", "local", "--quiet", "--storage", str(ft.directory.storage), "--name", "f")
    assert again.returncode == 0, again.stderr
    assert len(ft.trials) == 2 and (ft.path / C.EVENTS / "t0000.jsonl").read_text() == before


def test_finetune_killed_midway_continues_with_nothing_lost_or_twice(studies, tmp_path):
    """SIGKILLed with trial t0000 finished and t0001 checkpointed after its first epoch; the same
    command again (as the docs say) continues it: t0000 untouched, t0001 from its checkpoint,
    equal to an uninterrupted fine-tune of the same seeds."""
    import shutil

    import pandas as pd

    from rsb_tune.data.registry import load_splits
    from tests.test_resilience import assert_same_epochs, reference_epochs

    source, _ = studies
    shutil.copytree(source.path, tmp_path / "s")
    (tmp_path / "s" / C.EVALS).unlink(missing_ok=True)
    # one trial at a time: t0001 starts once t0000 has finished, and the kill lands in its epoch 2
    args = ("finetune", "--from", "s", "--epochs", "2", "--executor", "local", "--max-concurrent", "1", "--quiet", "--storage", str(tmp_path), "--name", "k")
    study = tmp_path / "k"

    def one_done_one_checkpointed():
        ev = events(study)
        return any(r.get("status") == C.OK for r in ev.get("t0000", ())) and any(r["type"] == "checkpoint" for r in ev.get("t0001", ()))

    kill_when(start_cli(*args), one_done_one_checkpointed, "t0000 finished and t0001 checkpointed")
    before = events(study)
    assert not any(r.get("status") == C.OK for r in before["t0001"])  # killed before its end
    finished_log = (study / C.EVENTS / "t0000.jsonl").read_text()
    lineage = yaml.safe_load((study / C.MANIFEST).read_text())["finetune_from"]
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (study / C.EVENTS / "t0000.jsonl").read_text() == finished_log  # not run again
    after = events(study)
    # continued from its checkpoint: epoch 1 reported once, each epoch's result once
    assert [r["epoch"] for r in after["t0001"] if r.get("type") == "result"] == [1, 2]
    trials = pd.read_parquet(study / C.TRIALS)
    assert sorted(trials["trial_id"]) == ["t0000", "t0001"] and (trials["status"] == C.OK).all()
    for tid, rows in after.items():
        assert sum(r.get("type") == "result" and r.get("status") == C.OK for r in rows) == 1, tid
    assert yaml.safe_load((study / C.MANIFEST).read_text())["finetune_from"] == lineage
    # bit for bit what an uninterrupted fine-tune of the continued trial gives
    plan = json.loads((study / C.PLAN).read_text())
    assert_same_epochs(study, reference_epochs(study, load_splits(plan["t0001"]), {"t0001"}))


def test_dry_run_names_the_recipe_source(studies):
    source, _ = studies
    out = run_cli("finetune", "--from", "s", "--dry-run", "--storage", str(source.directory.storage))
    assert out.returncode == 0, out.stderr
    assert "finetune recipe (DeiT" in out.stdout and "source trial s/t0000" not in out.stdout.split("trials (")[0]


def test_bad_source_is_one_line(studies, tmp_path):
    source, _ = studies
    storage = str(source.directory.storage)
    assert_user_error(run_cli("finetune", "--from", "nope", "--storage", storage), "nope")
    # a study with no finished trial: one trial planned, none run
    from tests.conftest import write_minimal_study

    write_minimal_study(tmp_path, "empty")
    assert_user_error(run_cli("finetune", "--from", "empty", "--storage", str(tmp_path)), "no ok trial")
    assert_user_error(run_cli("finetune", "--from", "s", "--dataset", "nodata", "--storage", storage), "nodata")


def test_digits_parity_is_digits_relabelled():
    from rsb_tune.data.registry import get_dataset, load_splits

    digits, parity = load_splits("digits"), get_dataset("digits-parity").load(None)
    assert parity.classes == ("even", "odd")
    for a, b in ((digits.train, parity.train), (digits.val, parity.val), (digits.v2, parity.v2)):
        assert np.array_equal(np.asarray(a.images), np.asarray(b.images))
        assert np.array_equal(np.asarray(a.labels) % 2, np.asarray(b.labels))
    assert json.dumps(sorted(set(parity.val.labels.tolist()))) == "[0, 1]"


def test_transfer_table_against_scipy():
    import pandas as pd
    from scipy import stats as sps

    import analysis

    rng = np.random.default_rng(0)
    rows = [{"recipe": r, "dataset": d, "status": "ok", "val_top1": mu + rng.normal(0, 1)} for r, base in (("A1", 80.0), ("A2", 79.0)) for d, shift in (("x", 0.0), ("y", -5.0)) for mu in [base + shift] * 5]
    rows.append({"recipe": "A1", "dataset": "x", "status": "error", "val_top1": np.nan})
    trials = pd.DataFrame(rows)
    table = analysis.transfer_table(trials).set_index(["recipe", "dataset"])
    for (r, d), sub in trials[trials.status == "ok"].groupby(["recipe", "dataset"]):
        v = sub["val_top1"].to_numpy()
        low, high = sps.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=sps.sem(v))
        row = table.loc[(r, d)]
        assert row["n"] == 5 and np.isclose(row["mean"], v.mean()) and np.isclose(row["ci_low"], low) and np.isclose(row["ci_high"], high)
    for d in ("x", "y"):
        assert table.loc[("A1", d), "rank"] == 1 and table.loc[("A2", d), "rank"] == 2
    with pytest.raises(ValueError, match="no ok trial"):
        analysis.transfer_table(trials[trials.status == "error"])


def test_browser_shows_the_lineage_and_the_transfer_table(studies, tmp_path):
    """The study browser: the fine-tune's page names its source (a link), the source's recipe
    and dataset and the fine-tuning recipe's source, and shows the report's transfer table (the
    numbers of ``analysis.transfer_table``, which ``Study.transfer`` returns); the source's page
    lists its fine-tunes; the index says where a fine-tune came from. Copied into a storage
    without its source, the source is named in plain text."""
    import re
    import shutil
    import time

    import analysis
    from rsb_tune.errors import UserError
    from rsb_tune.planning.finetune import FINETUNE_SOURCE
    from rsb_tune.serve.app import create_app

    TestClient = pytest.importorskip("starlette.testclient").TestClient
    source, ft = studies
    expected = analysis.transfer_table(ft.trials)
    assert ft.transfer().equals(expected)
    with pytest.raises(UserError, match="not a fine-tune"):
        source.transfer()
    storage = str(ft.directory.storage)
    with TestClient(create_app(storage, redraw_s=0.0)) as client:
        deadline = time.monotonic() + 240
        while (api := client.get("/api/studies/f").json())["figures"]["status"] != "ready" and time.monotonic() < deadline:
            time.sleep(0.5)
        page, src_page, index = client.get("/studies/f").text, client.get("/studies/s").text, client.get("/").text
        src_api = client.get("/api/studies/s").json()
        listed = [s["name"] for s in client.get("/api/studies?kind=finetune").json()["studies"]]
    assert api["figures"]["status"] == "ready", api["figures"]
    # the JSON: the lineage as in study.yaml (less the checkpoints' paths), the transfer rows as analysis's
    lineage = ft.meta["finetune_from"]
    want = {k: lineage[k] for k in ("study", "recipe", "dataset", "recipe_source", "seed_offset")}
    assert api["finetune_from"] == {**want, "trials": {t: {"seed": r["seed"]} for t, r in lineage["trials"].items()}, "listed": True}
    rows = api["figures"]["summary"]["transfer_table"]
    assert len(rows) == len(expected) == 1
    for got, (_, want_row) in zip(rows, expected.iterrows()):
        assert got["recipe"] == want_row["recipe"] == "A2" and got["dataset"] == want_row["dataset"] == "digits-parity"
        assert got["n"] == want_row["n"] == 2 and got["rank"] == want_row["rank"]
        assert all(np.isclose(got[k], want_row[k], rtol=1e-12) for k in ("mean", "std", "ci_low", "ci_high"))
    assert src_api["finetunes"] == ["f"] and src_api["finetune_from"] is None and api["finetunes"] == []
    assert listed == ["f"]
    # the page: the section, the link, the source's recipe and dataset, the recipe's source, the table's numbers
    assert "Fine-tuned from another study" in page and '<a class="source-study" href="/studies/s">s</a>' in page
    assert '<b class="source-recipe">A2</b>' in page and '<b class="source-dataset">digits</b>' in page and FINETUNE_SOURCE in page
    table = re.search(r'<table class="transfer-table">.*?</table>', page, re.S).group(0)
    cells = re.findall(r'<td class="n">([^<]*)</td>', table)
    row = expected.iloc[0]
    assert cells == [str(row["n"]), f"{row['mean']:.2f}", f"{row['ci_low']:.2f} – {row['ci_high']:.2f}", f"{row['std']:.2f}", str(row["rank"])]
    assert storage not in page and "checkpoint" not in page.split('id="finetune"')[1].split("</p>")[0]
    assert 'Fine-tuned into' in src_page and '<a href="/studies/f">f</a>' in src_page and 'id="finetune"' not in src_page
    assert re.search(r'data-name="f".*?<td>finetune <span class="from">from s</span></td>', index, re.S)
    # the fine-tune alone in another storage: its source in plain text
    alone = tmp_path / "alone"
    shutil.copytree(ft.path, alone / "f", ignore=shutil.ignore_patterns("checkpoints", "ray", "report"))  # no checkpoint
    skip = shutil.ignore_patterns("checkpoints", "ray", "report")
    with TestClient(create_app(str(alone), redraw_s=0.0)) as client:
        page = client.get("/studies/f").text
        before = client.get("/api/studies/f").json()
        assert before["finetune_from"]["listed"] is False
        assert '<span class="source-study">s</span> (not in this storage)' in page and 'href="/studies/s"' not in page
        # an open page follows the storage: the source copied in, the fine-tune's live part links to it...
        shutil.copytree(source.path, alone / "s", ignore=skip)
        live = client.get(f"/studies/f/live?v={before['version']}")
        assert live.status_code == 200 and '<a class="source-study" href="/studies/s">s</a>' in live.text
        # ...and a second fine-tune of s appears on the source's live part
        version = client.get("/api/studies/s").json()["version"]
        shutil.copytree(ft.path, alone / "f2", ignore=skip)
        live = client.get(f"/studies/s/live?v={version}")
        assert live.status_code == 200 and '<a href="/studies/f">f</a>, <a href="/studies/f2">f2</a>' in live.text


@pytest.mark.e2e
def test_finetune_page_fits_a_1280_px_window(studies):
    """The fine-tune's page in a real headless Chromium (as tests/test_serve_browser.py): the
    transfer table arrives with the figures and the page needs no horizontal scrollbar."""
    from tests.serve_helpers import Server
    from tests.test_serve_browser import CHROMIUM, SHOTS, _fits_the_window

    if not __import__("pathlib").Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    _, ft = studies
    SHOTS.mkdir(parents=True, exist_ok=True)
    with Server(ft.directory.storage) as srv, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.goto(f"{srv.url}/studies/f")
            page.wait_for_selector("table.transfer-table tbody tr", timeout=240_000)
            page.wait_for_selector("#figures img", timeout=60_000)
            assert page.locator("a.source-study").get_attribute("href") == "/studies/s"
            _fits_the_window(page)
            page.screenshot(path=str(SHOTS / "study-finetune.png"), full_page=True)
            page.goto(f"{srv.url}/")
            assert "from s" in page.locator("tr.study-row[data-name=f]").inner_text()
            _fits_the_window(page)
        finally:
            browser.close()
