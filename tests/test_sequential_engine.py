"""Sequential seed studies on the engine side: the searcher's logic without a cluster, the
stopping state on disk and in ``status``, the paired rounds, and one real ``--until`` study that stops by its rule before its cap and resumes to nothing."""

from __future__ import annotations

import datetime
import json

import numpy as np
import pandas as pd
import pytest
import yaml

import rsb_tune
from rsb_tune.data.registry import load_study_data
from analysis import contract as C
from rsb_tune.runner import lifecycle as L
from rsb_tune.sequential import engine as S
from rsb_tune.sequential import rule as stopping
from rsb_tune.api import Study
from rsb_tune.errors import ConfigError
from rsb_tune.store.directory import StudyDir
from tests.conftest import run_cli

RULE = stopping.check_rule("halfwidth<=5", cap=30, metric="val_top1")  # stops at the t-mixture's least n, 12


def _values(n, sigma=0.5, mean=60.0, seed=0):
    return list(np.random.default_rng(seed).normal(mean, sigma, n))


def _drive(scheduler, values, *, order="fifo", running=()):
    """Run a scheduler as Tune would: ask for trials until it waits or finishes, finish one of
    the running ones (the oldest: trials of equal length; or a random one), repeat. Returns
    the ids it started."""
    rng = np.random.default_rng(3)
    started, running = [], list(running)
    while True:
        while (nxt := scheduler.next()) not in (S.WAIT, S.FINISH):
            started.append(nxt)
            running.append(nxt)
        if not running:
            assert nxt == S.FINISH
            return started
        tid = running.pop(0 if order == "fifo" else int(rng.integers(len(running))))
        scheduler.finished(tid, C.OK, values[int(tid[1:])])


def _order(n):
    return [(f"t{i:04d}", i) for i in range(n)]


def test_scheduler_suggests_in_seed_order_within_the_slots_and_stops_at_the_rule():
    values = _values(30)
    sched = S.SeedScheduler(RULE, range(30), _order(30), None, slots=3)
    assert [sched.next() for _ in range(4)] == ["t0000", "t0001", "t0002", S.WAIT]  # 3 slots
    sched.finished("t0002", C.OK, values[2])  # out of order: the prefix still waits for seed 0
    assert sched.decision.n == 0 and sched.next() == "t0003"
    started = _drive(sched, values, running=["t0000", "t0001", "t0003"])
    d = sched.decision
    assert (d.stop, d.reason, d.n) == (True, "halfwidth", 12)
    assert d.mean == pytest.approx(np.mean(values[:12]))
    everything = ["t0000", "t0001", "t0002", "t0003", *started]
    assert everything == [f"t{i:04d}" for i in range(len(everything))]  # seed order, none twice
    assert 12 <= len(everything) <= 12 + 3 - 1  # the other slots' trials ran on, no more
    assert sched.next() == S.FINISH


def test_the_order_results_arrive_in_does_not_change_the_decision():
    values = _values(30, seed=5)
    fifo = S.SeedScheduler(RULE, range(30), _order(30), None, slots=4)
    _drive(fifo, values)
    shuffled = S.SeedScheduler(RULE, range(30), _order(30), None, slots=4)
    _drive(shuffled, values, order="random")
    a, b = fifo.decision, shuffled.decision
    assert (a.stop, a.reason, a.n) == (b.stop, b.reason, b.n) == (True, "halfwidth", 12)
    assert (a.mean, a.lower, a.upper) == pytest.approx((b.mean, b.lower, b.upper), rel=1e-12)  # rounding only


def test_scheduler_recomputes_a_stopped_study_from_its_table_and_suggests_nothing():
    values = _values(14)
    table = pd.DataFrame({"seed": range(14), "status": [C.OK] * 14, "val_top1": values})
    sched = S.SeedScheduler(RULE, range(30), _order(30)[14:], table, slots=2)
    assert sched.decision.stop and sched.decision.n == 12 and sched.next() == S.FINISH
    # a failed seed is skipped, not a value: 13 seeds with one error count 12 values
    table = table.iloc[:13].assign(status=[C.ERROR] + [C.OK] * 12)
    sched = S.SeedScheduler(RULE, range(30), _order(30)[13:], table, slots=2)
    assert sched.decision.stop and sched.decision.n == 12 and sched.decision.mean == pytest.approx(np.mean(values[1:13]))


def test_scheduler_runs_to_the_cap_when_the_rule_is_never_met():
    rule = stopping.check_rule("halfwidth<=0.01", cap=15, metric="val_top1")
    sched = S.SeedScheduler(rule, range(15), _order(15), None, slots=2)
    started = _drive(sched, _values(15, sigma=3.0))
    assert started == [f"t{i:04d}" for i in range(15)]
    assert (sched.decision.stop, sched.decision.reason, sched.decision.n) == (True, "cap", 15)


def _sequential_study(tmp_path, n=16, until="halfwidth<=5", name="seq"):
    plan = rsb_tune.plan_seeds(n, "A3", until=until, epochs=1)
    study = StudyDir(tmp_path, name)
    manifest = L.build_manifest(kind="seeds", plan=plan.plan, data=load_study_data(plan.plan.configs()), command="test", stopping=plan.stopping.record())
    study.dir.mkdir(parents=True)
    L.create_study(study, manifest, dict(plan.trials))
    return study, plan


def _finish(study, tids, values, status=C.OK):
    for tid, v in zip(tids, values):
        L.record_result(study, tid, {"epoch": 1, "status": status, "val_top1": v, "val_loss": 1.0})


def test_a_study_stopped_by_its_rule_is_finished_with_its_never_started_seeds(tmp_path):
    study, plan = _sequential_study(tmp_path)
    tids = list(plan.trials)
    meta = study.meta()
    assert meta["stopping"]["rule"] == "halfwidth<=5" and meta["stopping"]["method"] == "t_mixture"
    assert meta["stopping"]["level"] == 0.95 and meta["stopping"]["parameters"] == {"prior_scale": 0.25}
    _finish(study, tids[:11], _values(11))
    status = Study(study).status()
    assert (status.planned, status.unfinished, status.state, status.exit_code) == (16, 5, "interrupted", 1)
    assert "after 11 seeds" in status.lines()[3] and "continuing" in status.lines()[3]
    _finish(study, tids[11:13], _values(13)[11:])  # seed 12 ran while the rule stopped at 12
    L.record_result(study, tids[13], {"epoch": 1, "status": C.RUNNING, "val_top1": 1.0})  # in flight at the kill
    status = Study(study).status()
    assert status.planned == 14 and status.unfinished == 1 and status.state == "interrupted"
    L.record_result(study, tids[13], {"epoch": 1, "status": C.OK, "val_top1": 60.0})
    status = Study(study).status()
    assert (status.planned, status.unfinished, status.state, status.exit_code) == (14, 0, "finished", 0)
    line = status.lines()[3]
    assert "95% anytime interval (t_mixture)" in line and "after 12 seeds" in line and "vs target 5" in line and "stopped: halfwidth" in line
    # the state written through lifecycle is the one recomputed from the tables
    decision = S.study_decision(study, S.rule_of(study.meta()))
    L.record_stopping(study, decision)
    rec = yaml.safe_load(study.meta_path.read_text())["stopping"]
    assert (rec["stopped"], rec["reason"], rec["n_seeds"]) == (True, "halfwidth", 12) and rec["rule"] == "halfwidth<=5"
    assert S.in_flight(study) == set()


def test_every_seed_finished_but_some_without_a_value_is_the_cap(tmp_path):
    study, plan = _sequential_study(tmp_path, n=12, until="halfwidth<=0.01")
    tids = list(plan.trials)
    _finish(study, tids[:11], _values(11))
    _finish(study, tids[11:], [float("nan")], status=C.DIVERGED)
    d = S.study_decision(study, S.rule_of(study.meta()))
    assert (d.stop, d.reason, d.n) == (True, "cap", 11)


def test_seeds_needed_table_from_a_finished_study(tmp_path):
    study, plan = _sequential_study(tmp_path, name="fin")
    values = _values(12, sigma=1.0)
    _finish(study, list(plan.trials)[:12], values)
    table = rsb_tune.seeds_needed_table("fin", storage=str(tmp_path), halfwidths=(0.5,), deltas=(0.25,), n_sim=200)
    assert list(table["question"]) == ["halfwidth", "delta_independent", "delta_paired"]
    assert table["sigma"].iloc[0] == pytest.approx(np.std(values, ddof=1))
    assert table["n_fixed"].iloc[1] == pytest.approx(15.7 * (np.std(values, ddof=1) / 0.25) ** 2, rel=0.05)  # about 15.7 (sigma/delta)^2
    p = np.mean(values) / 100
    assert table["noise_floor"].iloc[0] == pytest.approx(100 * np.sqrt(p * (1 - p) / 359))  # the val set's binomial std


def test_paired_rounds_until_decided(tmp_path):
    """The rounds of a paired study, with the trials' runs replaced by recorded results (a is
    1 point better than b, seed by seed): both arms run the same seeds, batch by batch, stop
    at the first verdict and record it."""
    from rsb_tune.runner.executor import Executor

    rng = np.random.default_rng(1)
    noise = {"a": rng.normal(61.0, 0.2, 40), "b": rng.normal(60.0, 0.2, 40)}
    expected = stopping.decide_paired(stopping.check_paired(cap=40, metric="val_top1", mode="max"), noise["a"] - noise["b"])
    assert expected.reason == "a_better" and 12 < expected.n <= 17  # decided in the second round
    rounds = []

    class Recorded(Executor):
        """The trials' runs replaced by recorded results, through the runner's executor interface."""

        name = "recorded"

        def fit(self, study, data, opts, plan, *, planned, done, search=None, seeds=None):
            trial_ids = list(plan.todo)
            rounds.append((study.name, trial_ids))
            arm = study.name[-1]
            _finish(study, trial_ids, [noise[arm][study.plan()[tid]["seed"]] for tid in trial_ids])

    result = rsb_tune.ab(40, "A3", overrides=["drop_path=0.05"], epochs=1, storage=str(tmp_path), name="pair", max_concurrent=5, quiet=True, executor=Recorded())
    assert result.verdict == "a_better" and result.exit_code == 0
    # the first round runs the rule's least n (12) at once, the next ones a batch (5) each
    assert rounds[0] == ("pair-a", [f"t{i:04d}" for i in range(12)]) and rounds[1] == ("pair-b", rounds[0][1])
    assert [r[1] for r in rounds[::2]] == [r[1] for r in rounds[1::2]]  # the same seeds in both arms
    ran = sum(len(r[1]) for r in rounds[::2])
    assert len(rounds) == 4 and ran == 17 and result.decision.n == expected.n
    for arm, other in (("a", "pair-b"), ("b", "pair-a")):
        rec = yaml.safe_load((tmp_path / f"pair-{arm}" / "study.yaml").read_text())["stopping"]
        assert rec["paired"] and rec["arm"] == arm and rec["other_arm"] == other and rec["reason"] == "a_better"
        assert rec["lower"] > 0 and rec["mean"] == pytest.approx(expected.mean) and rec["n_seeds"] == expected.n
        status = rsb_tune.load(f"pair-{arm}", storage=str(tmp_path)).status()
        assert status.state == "finished" and status.planned == 17 and status.exit_code == 0
    # the same command again recomputes the verdict from the tables and runs nothing
    rounds.clear()
    again = rsb_tune.ab(40, "A3", overrides=["drop_path=0.05"], epochs=1, storage=str(tmp_path), name="pair", max_concurrent=5, quiet=True, executor=Recorded())
    assert rounds == [] and again.verdict == "a_better"
    assert rsb_tune.resume("pair", storage=str(tmp_path), quiet=True, executor=Recorded()).verdict == "a_better" and rounds == []


def test_arms_that_differ_in_what_is_not_named_are_refused():
    a = rsb_tune.plan_seeds(3, "A3", epochs=1).plan
    b = rsb_tune.plan_seeds(3, "A3", epochs=1, overrides=["drop_path=0.05"]).plan
    S.check_arms(a, b, {"b": ["drop_path"]})  # named: fine
    with pytest.raises(ConfigError, match="paired arms differ in drop_path .*neither the recipes nor --set/--vs-set name"):
        S.check_arms(a, b, {})
    S.check_arms(rsb_tune.plan_seeds(3, "A2", epochs=1).plan, a, {})  # another recipe: its values are named by it
    assert S.next_round(_order(6), {"t0000": True, "t0002": True}, 3) == ["t0001", "t0003", "t0004"]
    assert S.next_round(_order(20), {"t0000": True}, 3, least=12) == [f"t{i:04d}" for i in range(1, 12)]


@pytest.mark.e2e
def test_until_study_stops_by_its_rule_before_the_cap_and_resumes_to_nothing(tmp_path):
    """A3, 1 epoch, cap 16, a loose half-width: the rule stops the study at the t-mixture's
    least n (12, or one later) with seeds never started; a resume runs nothing."""
    storage = str(tmp_path)
    args = ("--recipe", "A3", "--n", "16", "--until", "halfwidth<=25", "--epochs", "1", "--max-concurrent", "2", "--storage", storage, "--name", "u")
    proc = run_cli("seeds", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = tmp_path / "u"
    rec = yaml.safe_load((study / "study.yaml").read_text())["stopping"]
    assert rec["stopped"] and rec["reason"] == "halfwidth" and rec["halfwidth"] == 25 and rec["cap"] == 16
    assert 12 <= rec["n_seeds"] <= 13 and rec["upper"] - rec["lower"] <= 50
    trials = pd.read_parquet(study / "trials.parquet")
    started = sorted(trials["seed"])
    assert started == list(range(len(started))) and len(started) < 16  # seed order, never-started seeds left
    # a slow seed holds the prefix back while the other slot goes on, so more than n_seeds may
    # start; but none after the decision: only the trial running then (one slot) finishes later
    decided = datetime.datetime.fromisoformat(rec["decided_at"]).timestamp()
    study_dir = StudyDir(tmp_path, "u")
    ended = {tid: max(e["time"] for e in L.read_events(study_dir, tid)) for tid in trials["trial_id"]}
    after = [tid for tid, t in ended.items() if t > decided]
    assert len(after) <= 1, (after, rec)
    assert set(trials.set_index("trial_id").loc[after, "seed"]) <= set(range(rec["n_seeds"], 16))
    assert (trials["status"] == C.OK).all()
    status = run_cli("status", "u", "--storage", storage)
    assert status.returncode == 0 and "; finished" in status.stdout and "anytime interval (t_mixture)" in status.stdout
    events = {p.name: p.read_text() for p in (study / "events").iterdir()}
    runs = sorted(p.name for p in (study / "ray").iterdir())
    again = run_cli("resume", "u", "--storage", storage)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p.name: p.read_text() for p in (study / "events").iterdir()} == events  # nothing ran
    assert sorted(p.name for p in (study / "ray").iterdir()) == runs
    assert yaml.safe_load((study / "study.yaml").read_text())["stopping"]["n_seeds"] == rec["n_seeds"]
    report = run_cli("report", "u", "--storage", storage)
    assert report.returncode == 0 and (study / "report" / "confidence_sequence.png").exists()
    summary = json.loads((study / "report" / "summary.json").read_text())
    assert summary["stopping"]["reason"] == "halfwidth" and len(summary["confidence_sequence"]) == len(started)
