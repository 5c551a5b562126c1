"""Packed seeds (``pack: K``): K seeds of a config trained batched in one process, on real timm
models. The trial-level tests use a slice of the digits set with one update per epoch, so that
every epoch's report and checkpoint is one update; the study-level tests run the real CLI."""

import dataclasses
import io
import json
import math
import re

import pandas as pd
import pytest
import torch

from rsb_tune.planning import packs
from rsb_tune.data.types import Split
from rsb_tune.errors import ConfigError
from rsb_tune.training.packed import select, train_pack
from rsb_tune.training.trial import train
from tests.conftest import assert_user_error, make_config, run_cli

UPDATES = 10


@pytest.fixture(scope="module")
def small(digits):
    """64 training images (one update per epoch at batch 64) and 64 of each test split."""

    def cut(split, n):
        return Split(split.images[:n], split.labels[:n], split.source)

    return dataclasses.replace(digits, train=cut(digits.train, 64), val=cut(digits.val, 64), v2=cut(digits.v2, 64))


def a2(seed, **over):
    """The A2 ingredients: LAMB, BCE, mixup + cutmix, RandAugment, drop path (no repeated aug:
    one update per epoch), in float32 (``amp: off``: the equivalence below is float32 rounding;
    bf16 packs are tested on their own)."""
    cfg = make_config("A2", **{"epochs": UPDATES, "seed": seed, "repeated_aug": 1, "threads": 1, "amp": "off", **over})
    assert cfg["opt"] == "lamb" and cfg["loss"] == "bce" and cfg["mixup_alpha"] > 0 and cfg["cutmix_alpha"] > 0 and cfg["drop_path"] > 0 and cfg["auto_augment"]
    return cfg


def _roundtrip(checkpoint):
    buf = io.BytesIO()
    torch.save(checkpoint, buf)  # as the Ray adapter does: the dict references live tensors
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def unpacked(cfg, data):
    """(per-epoch metrics, per-epoch weights) of an unpacked run."""
    reports, weights = [], []

    def report(metrics, *, checkpoint=None):
        reports.append(metrics)
        weights.append({k: v.clone() for k, v in checkpoint["model"].items()})

    train(cfg, report, data)
    return reports, weights


def packed(configs, data, resume=None):
    """(per-epoch {trial: metrics}, per-epoch {trial: weights}, per-epoch checkpoints)."""
    reports, weights, checkpoints = [], [], []

    def report(results, *, checkpoint=None):
        reports.append(results)
        checkpoint = _roundtrip(checkpoint) if checkpoint is not None else None
        checkpoints.append(checkpoint)
        if checkpoint is not None:
            weights.append({t: {k: v[i] for k, v in checkpoint["model"].items()} for i, t in enumerate(checkpoint["pack"])})

    train_pack(configs, report, data, resume=resume, pack_id="pack-x")
    return reports, weights, checkpoints


def rel_diff(a: dict, b: dict) -> float:
    """||a - b|| / ||a|| over the trainable weights (BN running stats left out)."""
    names = [n for n in a if a[n].is_floating_point() and "running" not in n]
    num = sum(((a[n] - b[n]).double() ** 2).sum().item() for n in names)
    den = sum((a[n].double() ** 2).sum().item() for n in names)
    return math.sqrt(num / den)


@pytest.fixture(scope="module")
def pack_and_refs(small):
    configs = {f"t{s:04d}": a2(s) for s in range(3)}
    refs = {tid: unpacked(cfg, small) for tid, cfg in configs.items()}
    floor = unpacked({**configs["t0000"], "threads": 2}, small)  # the same seed, other rounding
    return configs, packed(configs, small), refs, floor


def test_pack_of_one_is_the_unpacked_trial(small):
    """Everything per seed (data, augmentation, mixup, drop-path draws, LAMB) is the unpacked
    trial's: a pack of one follows it to float rounding. Its vmap'd ops differ from the
    unpacked ones in rounding only (3e-12 after the first update), and training amplifies
    rounding at a rate that depends on the CPU (6e-8 after 10 updates on one machine, 1.5e-4
    on another, where the same seed at another thread count is 5.6e-4 away): so the first
    update to 1e-9, and every update no further than the unpacked run is from itself at two
    threads."""
    cfg = a2(0)
    ref_reports, ref_weights = unpacked(cfg, small)
    _, floor_weights = unpacked({**cfg, "threads": 2}, small)  # the same seed, other rounding
    reports, weights, _ = packed({"t0000": cfg}, small)
    assert rel_diff(ref_weights[0], weights[0]["t0000"]) < 1e-9
    assert reports[0]["t0000"]["train_loss"] == pytest.approx(ref_reports[0]["train_loss"], rel=1e-6)
    for e in range(UPDATES):
        assert reports[e]["t0000"]["train_loss"] == pytest.approx(ref_reports[e]["train_loss"], rel=1e-3)
        assert rel_diff(ref_weights[e], weights[e]["t0000"]) < max(1e-6, rel_diff(ref_weights[e], floor_weights[e])), e


def test_packed_seeds_match_their_unpacked_runs(pack_and_refs):
    """Each seed of a pack of 3: the first update to 1e-5 (loss and weights); over 10 updates,
    no further from its unpacked run than the unpacked run is from itself at another thread
    count (float32 rounding is amplified by training at the same rate either way)."""
    configs, (reports, weights, _), refs, floor = pack_and_refs
    for tid in configs:
        ref_reports, ref_weights = refs[tid]
        assert reports[0][tid]["train_loss"] == pytest.approx(ref_reports[0]["train_loss"], rel=1e-5)
        assert rel_diff(ref_weights[0], weights[0][tid]) < 1e-5
        for e in range(UPDATES):
            assert reports[e][tid]["train_loss"] == pytest.approx(ref_reports[e]["train_loss"], rel=1e-2)
    floor_diff = rel_diff(refs["t0000"][1][-1], floor[1][-1])
    pack_diffs = [rel_diff(refs[tid][1][-1], weights[-1][tid]) for tid in configs]
    assert floor_diff > 0 and max(pack_diffs) < 3 * floor_diff, (pack_diffs, floor_diff)


@pytest.fixture
def float64():
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("augment_impl", ["pil", "batch"])
def test_packed_seeds_match_their_unpacked_runs_in_float64(small, float64, augment_impl):
    """The same pack of 3 with every tensor in float64 (weights, batches, losses, LAMB state):
    for the first 10 updates each seed's loss and weights match its unpacked run to 1e-12
    relative (measured: 4e-16), so the float32 differences above are rounding alone. Also with
    the batched augmentation a GPU pack uses (rsb_tune.augment.batched)."""
    configs = {f"t{s:04d}": a2(s, augment_impl=augment_impl) for s in range(3)}
    reports, weights, _ = packed(configs, small)
    assert weights[0]["t0000"]["conv1.0.weight"].dtype == torch.float64
    for tid, cfg in configs.items():
        ref_reports, ref_weights = unpacked(cfg, small)
        for e in range(UPDATES):
            assert reports[e][tid]["train_loss"] == pytest.approx(ref_reports[e]["train_loss"], rel=1e-12)
            assert rel_diff(ref_weights[e], weights[e][tid]) < 1e-12


def test_bf16_pack_follows_its_unpacked_runs_and_resumes_bit_identically(small):
    """Under bf16 autocast (``amp: bf16``, what a CPU with bf16 matrix units runs fastest) each seed
    of a pack of 2 starts from its unpacked bf16 run's loss (bf16 rounds at 4e-3, so 2 %), the
    pack records the precision, and a resumed pack repeats its epochs exactly."""
    configs = {f"t{s:04d}": a2(s, amp="bf16", epochs=3) for s in range(2)}
    reports, _, checkpoints = packed(configs, small)
    for tid, cfg in configs.items():
        ref_reports, _ = unpacked(cfg, small)
        assert reports[0][tid]["train_loss"] == pytest.approx(ref_reports[0]["train_loss"], rel=2e-2)
        assert reports[-1][tid]["runtime_amp"] == "bf16" and math.isfinite(reports[-1][tid]["val_top1"])
    again, _, _ = packed(configs, small, resume=checkpoints[0])
    drop = {"epoch_time_s", "images_per_s"}
    assert [{t: {k: v for k, v in m.items() if k not in drop} for t, m in r.items()} for r in again] == [
        {t: {k: v for k, v in m.items() if k not in drop} for t, m in r.items()} for r in reports[1:]
    ]


def test_packed_seeds_differ_and_report_like_trials(pack_and_refs):
    configs, (reports, _, checkpoints), refs, _ = pack_and_refs
    assert [sorted(r) for r in reports] == [sorted(configs)] * UPDATES
    losses = [reports[0][t]["train_loss"] for t in configs]
    assert len(set(losses)) == 3  # three seeds, three streams
    last = reports[-1]["t0001"]
    assert set(refs["t0001"][0][-1]) <= set(last)  # every key of an unpacked report
    assert last["status"] == "ok" and last["pack_id"] == "pack-x" and last["runtime_pack"] == 3 and "val_correct" in last
    assert [r["t0001"]["status"] for r in reports[:-1]] == ["running"] * (UPDATES - 1)
    assert checkpoints[-1]["pack"] == list(configs) and all(c is not None for c in checkpoints)


def test_resume_continues_bit_identically(pack_and_refs, small):
    configs, (reports, _, checkpoints), _, _ = pack_and_refs
    again, _, _ = packed(configs, small, resume=checkpoints[3])
    timing = {"epoch_time_s", "images_per_s"}

    def untimed(rs):
        return [{t: {k: v for k, v in m.items() if k not in timing} for t, m in r.items()} for r in rs]

    assert untimed(again) == untimed(reports[4:])  # epochs 5..10, every metric equal


def test_diverged_seed_leaves_the_pack_and_the_others_go_on(pack_and_refs, small):
    configs, (reports, _, checkpoints), _, _ = pack_and_refs
    poisoned = _roundtrip(checkpoints[1])
    poisoned["model"]["fc.weight"][1].fill_(float("inf"))  # seed t0001's weights are not finite
    got, _, ckpts = packed(configs, small, resume=poisoned)
    assert got[0]["t0001"]["status"] == "diverged" and math.isnan(got[0]["t0001"]["val_top1"])
    assert all("t0001" not in r for r in got[1:])  # dropped: no more reports
    assert ckpts[0]["pack"] == ["t0000", "t0002"]  # the checkpoint when it leaves holds the others only
    for tid in ("t0000", "t0002"):  # in the epoch it diverged the others trained as without it
        assert got[0][tid]["train_loss"] == pytest.approx(reports[2][tid]["train_loss"], rel=1e-6)
        assert got[-1][tid]["status"] == "ok" and got[-1][tid]["epoch"] == UPDATES and math.isfinite(got[-1][tid]["val_top1"])
    # a retried pack runs only the seeds its checkpoint holds
    only, _, _ = packed(configs, small, resume=ckpts[0])
    assert all(sorted(r) == ["t0000", "t0002"] for r in only)


def test_select_keeps_the_slices_of_the_chosen_seeds(pack_and_refs):
    _, _, checkpoints = pack_and_refs[1]
    full = checkpoints[2]
    sub = select(full, ["t0002", "t0000"])
    assert sub["pack"] == ["t0002", "t0000"] and set(sub["rng"]) == {"t0002", "t0000"}
    for name, t in full["model"].items():
        assert torch.equal(sub["model"][name], t[[2, 0]])
    for i, state in full["optimizer"]["state"].items():
        for key, v in state.items():
            if torch.is_tensor(v) and v.dim() > 0:
                assert torch.equal(sub["optimizer"]["state"][i][key], v[[2, 0]])


# --------------------------------------------------------------------------- planning


def test_groups_are_consecutive_seeds_of_one_point():
    base = make_config("A3", pack=2)
    plan = {f"t{i:04d}": {**base, "seed": s, "lr": lr} for i, (lr, s) in enumerate([(0.1, 0), (0.1, 1), (0.1, 2), (0.2, 0), (0.2, 1)])}
    assert packs.groups(plan) == {"pack-t0000": ["t0000", "t0001"], "pack-t0002": ["t0002"], "pack-t0003": ["t0003", "t0004"]}
    units = packs.run_units(plan, {t: plan[t] for t in ("t0000", "t0001", "t0003", "t0004")}, {"t0000": "a", "t0001": "b", "t0003": "c", "t0004": "c"})
    assert {u: (x.pack_id, x.members, x.resume_from) for u, x in units.items()} == {
        "pack-t0000": ("pack-t0000", ("t0000",), "a"),
        "pack-t0000.1": ("pack-t0000", ("t0001",), "b"),  # recorded apart: each runs from its own
        "pack-t0003": ("pack-t0003", ("t0003", "t0004"), "c"),
    }
    assert packs.groups({"t0000": {**base, "pack": 1}}) == {}


def test_auto_packs_on_a_gpu_only():
    cfg = make_config("A3", pack="auto")
    assert cfg["pack"] == "auto"
    assert packs.resolve_auto({"t0": cfg}, gpus_per_trial=0)["t0"]["pack"] == 1
    assert packs.resolve_auto({"t0": cfg}, gpus_per_trial=1)["t0"]["pack"] == packs.AUTO_GPU_PACK
    assert packs.resolve_auto({"t0": {**cfg, "device": "cpu"}}, gpus_per_trial=1)["t0"]["pack"] == 1


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(pack=0), "pack must be >= 1"),
        (dict(pack="many"), "pack must be an integer or auto"),
        (dict(pack=2, overrides={"amp": "fp16"}), "fp16 needs one loss scaler per seed"),
        (dict(pack=2, workers_per_trial=2), "a pack trains in one process"),
        (dict(pack=2, overrides={"opt": "adafactor"}), "no per-seed form"),
        (dict(pack=2, until="halfwidth<=0.5"), "a sequential study (--until) runs its trials one by one"),
    ],
)
def test_bad_packs_are_refused_when_planned(kwargs, needle):
    import rsb_tune

    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        rsb_tune.plan_seeds(50, "A2", **kwargs)


@pytest.mark.parametrize("space, needle", [("asha_lr", "an early-stopped grid (scheduler: asha)"), ("optuna_lamb", "a search")])
def test_grids_that_run_trials_one_by_one_refuse_packs(space, needle):
    import rsb_tune

    with pytest.raises(ConfigError, match=re.escape(f"{needle} runs its trials one by one")):
        rsb_tune.plan_grid(space, pack=2)
    assert len(rsb_tune.plan_grid("lamb_bce", pack=2).trials) > 1  # a plain grid packs


def test_cli_refuses_a_bad_pack_with_exit_2(tmp_path):
    proc = run_cli("seeds", "--n", "2", "--pack", "2", "--set", "opt=adafactor", "--storage", str(tmp_path))
    assert_user_error(proc, "--set: opt", "no per-seed form")
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- a packed study


def events(study):
    return {p.stem: [json.loads(line) for line in p.read_text().splitlines()] for p in (study / "events").glob("*.jsonl")}


def test_packed_study_retries_errors_resumes_and_matches_uninterrupted_packs(tmp_path, digits):
    """4 seeds in 2 packs through Ray: pack-t0000 fails once after epoch 2 (Ray retries it from
    its checkpoint); pack-t0002 fails on every attempt (error), then `resume` continues it from
    its checkpoint. Every seed's epochs equal uninterrupted packs' exactly; each seed has its
    rows, its pack, its predictions, one checkpoint left."""
    args = ["seeds", "--n", "4", "--pack", "2", "--epochs", "2", "--max-failures", "1", "--storage", str(tmp_path), "--name", "p", "--quiet"]
    proc = run_cli(*args, env={"RSB_TUNE_FAULTS": "t0001@2:raise-once,t0002@2:raise"})
    assert proc.returncode == 1, proc.stderr[-3000:]
    study = tmp_path / "p"
    trials = pd.read_parquet(study / "trials.parquet").set_index("trial_id")
    assert trials.status.to_dict() == {"t0000": "ok", "t0001": "ok", "t0002": "error", "t0003": "error"}
    assert (trials.loc[["t0000", "t0001"], "attempts"] == 2).all()
    res = run_cli("resume", "p", "--storage", str(tmp_path), "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    trials = pd.read_parquet(study / "trials.parquet").set_index("trial_id")
    assert (trials.status == "ok").all() and trials.pack_id.to_dict() == {"t0000": "pack-t0000", "t0001": "pack-t0000", "t0002": "pack-t0002", "t0003": "pack-t0002"}
    assert (trials.pack == 2).all() and (trials.runtime_pack == 2).all()
    ev = events(study)
    assert sum(e.get("type") == "result" and e["epoch"] == 1 for e in ev["t0003"]) == 1  # continued, not restarted
    assert sorted(p.stem for p in (study / "predictions").glob("*.npz")) == ["t0000", "t0001", "t0002", "t0003"]
    assert len(list((study / "ray").rglob("state.pt"))) == 2  # one per pack

    plan = json.loads((study / "plan.json").read_text())
    metrics = ["train_loss", "val_top1", "val_loss", "v2_top1"]
    rows = []
    for pack_id, members in packs.groups(plan).items():
        configs = {t: {**plan[t], "threads": 1} for t in members}
        for results in packed(configs, digits)[0]:
            rows += [{"trial_id": t, "epoch": m["epoch"], **{k: m[k] for k in metrics}} for t, m in results.items()]
    ref = pd.DataFrame(rows).sort_values(["trial_id", "epoch"]).reset_index(drop=True)
    got = pd.read_parquet(study / "epochs.parquet")[["trial_id", "epoch", *metrics]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, ref, check_exact=True, check_dtype=False)
