"""Tables from event logs: the last report of an epoch wins, statuses, attempts (no Ray)."""

import numpy as np
import pandas as pd
import pytest

from analysis.contract import EPOCH_COLUMNS, pack_correct, unpack_correct
from rsb_tune.runner.lifecycle import trial_state
from rsb_tune.store.tables import build_tables, write_predictions, write_tables
from rsb_tune.runner.lifecycle import read_events
from rsb_tune.store.directory import StudyDir
from tests.conftest import write_event
from tests.conftest import make_config


def result(epoch, status="running", loss=1.0, **extra):
    return {"type": "result", "epoch": epoch, "status": status, "train_loss": loss, "val_top1": 10.0 * epoch, "v2_top1": 9.0 * epoch, **extra}


@pytest.fixture
def study(tmp_path):
    s = StudyDir(tmp_path, "s")
    plan = {f"t{i}": make_config(seed=i, epochs=3) for i in range(5)}
    s.create({"kind": "seeds", "recipe": "A2", "metric": "val_top1", "mode": "max", "params": [], "data_sizes": {"n_val": 10, "n_v2": 12}}, plan)
    # t0: retried after epoch 2: epochs 2 and 3 reported again, the second report wins
    for ev in [result(1, loss=0.9), result(2, loss=0.8), {"type": "error", "final": False, "error": "boom"}, result(2, loss=0.7), result(3, "ok", loss=0.6)]:
        write_event(s, "t0", ev)
    # t1: failed for good after epoch 1
    for ev in [result(1), {"type": "error", "final": False, "error": "x"}, {"type": "error", "final": True, "error": "RuntimeError: x"}]:
        write_event(s, "t1", ev)
    write_event(s, "t2", result(1, "diverged", loss=float("nan")))
    write_event(s, "t3", result(1))  # still running; t4 never started
    return s


def test_statuses(study):
    assert trial_state(read_events(study, "t0"))[0] == "ok"
    assert trial_state(read_events(study, "t1"))[0] == "error"
    assert trial_state(read_events(study, "t2"))[0] == "diverged"
    assert trial_state(read_events(study, "t3"))[0] == "running"
    assert trial_state(read_events(study, "t4"))[0] == "pending"
    assert trial_state([result(1), {"type": "stopped"}])[0] == "stopped"
    assert trial_state([{"type": "error", "final": True}, {"type": "restart"}, result(1)])[0] == "running"


def test_tables_one_row_per_trial_and_epoch_last_report_wins(study):
    trials, epochs = build_tables(study)
    assert list(epochs.columns) == list(EPOCH_COLUMNS)
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    t0 = epochs[epochs.trial_id == "t0"].set_index("epoch").train_loss.to_dict()
    assert t0 == {1: 0.9, 2: 0.7, 3: 0.6}
    assert len(epochs[epochs.trial_id == "t3"]) == 1  # a running trial's epochs are kept
    rows = trials.set_index("trial_id")
    assert list(rows.index) == ["t0", "t1", "t2"]  # finished trials only
    assert rows.status.to_dict() == {"t0": "ok", "t1": "error", "t2": "diverged"}
    assert rows.attempts.to_dict() == {"t0": 2, "t1": 2, "t2": 1}
    assert rows.loc["t0", "val_top1"] == 30.0 and np.isnan(rows.loc["t1", "val_top1"])
    assert rows.loc["t1", "error"] == "RuntimeError: x"
    assert rows.loc["t0", "n_val"] == 10 and rows.loc["t0", "epochs_done"] == 3
    assert rows.loc["t0", "seed"] == 0 and rows.loc["t2", "model_seed"] == make_config(seed=2)["model_seed"]


def test_write_tables_replaces_files(study):
    write_tables(study)
    write_event(study, "t3", result(2))
    write_event(study, "t3", result(3, "ok"))
    write_tables(study)
    trials = pd.read_parquet(study.trials_path)
    assert "t3" in set(trials.trial_id) and len(pd.read_parquet(study.epochs_path)) == 3 + 1 + 1 + 3


def test_a_torn_last_line_is_skipped(study):
    with open(study.events_dir / "t3.jsonl", "a") as f:
        f.write('{"type": "result", "epo')
    assert trial_state(read_events(study, "t3"))[0] == "running"


def test_predictions_round_trip(study):
    rng = np.random.default_rng(0)
    val, v2 = rng.random(10) > 0.5, rng.random(12) > 0.3
    assert np.array_equal(unpack_correct(pack_correct(val), 10), val)
    write_predictions(study, "t0", {"val_correct": pack_correct(val), "v2_correct": pack_correct(v2)})
    saved = np.load(study.predictions_dir / "t0.npz")
    assert np.array_equal(saved["val_correct"], val) and np.array_equal(saved["v2_correct"], v2)
