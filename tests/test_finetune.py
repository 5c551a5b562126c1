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
    args = ("finetune", "--from", "s", "--epochs", "2", "--executor", "local", "--quiet", "--storage", str(tmp_path), "--name", "k")
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
