"""Which trials of a study train together (``pack: K``): checks when a study is planned, the
packs of a run. No torch, no Ray (the packed training itself is :mod:`rsb_tune.training.packed`).

A pack is K *consecutive* trials of the plan whose configs differ only in their seeds (a seed
study: its seeds in order; a grid: the seeds of one point), K at a time; the last pack of a
run of such trials may be smaller. A pack is named after its first trial (``pack-t0000``), and
each of its trials records that name (``pack_id`` in both tables). ``pack: auto`` is made a
number when the study is created: :data:`AUTO_GPU_PACK` where each trial gets a GPU, else 1
(on CPU a pack is slower than its seeds one after another: ``benchmarks/packing.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

from analysis import contract as C
from rsb_tune.errors import ConfigError

__all__ = ["AUTO_GPU_PACK", "resolve_auto", "check", "groups", "Unit", "run_units"]

AUTO_GPU_PACK = 32  # not measured yet (no GPU here): benchmarks/packing.py --device cuda picks it
_SEED_KEYS = frozenset({*C.SEED_COLUMNS, "trial_id"})


def resolve_auto(trials: Mapping[str, Mapping[str, Any]], *, gpus_per_trial: float) -> dict[str, dict[str, Any]]:
    """The trials with ``pack: auto`` made a number: :data:`AUTO_GPU_PACK` when the trial runs
    on a GPU (``device: cuda``, or ``auto`` with ``--gpus-per-trial``), else 1."""
    out = {}
    for tid, cfg in trials.items():
        if cfg.get("pack") == "auto":
            gpu = cfg["device"] == "cuda" or (cfg["device"] == "auto" and gpus_per_trial > 0)
            cfg = {**cfg, "pack": AUTO_GPU_PACK if gpu else 1}
        out[tid] = dict(cfg)
    return out


def _size(cfg: Mapping[str, Any]) -> int:
    pack = cfg.get("pack", 1)
    return 1 if pack == "auto" else int(pack)


def check(configs: Iterable[Mapping[str, Any]], *, unsupported: str | None = None) -> None:
    """ConfigError for a plan whose packs cannot run (``configs``: its base config and trials).
    ``unsupported``: the kind of study that does not pack (a search, a sequential or paired one)."""
    packed = [cfg for cfg in configs if cfg.get("pack", 1) == "auto" or _size(cfg) > 1]
    if packed and unsupported:
        raise ConfigError(f"pack: {packed[0]['pack']}: {unsupported} runs its trials one by one; drop --pack / `pack:`")
    for cfg in packed:  # every one: `pack` and `amp` may be grid axes
        if cfg["workers_per_trial"] > 1:
            raise ConfigError(f"pack: {cfg['pack']} with workers_per_trial {cfg['workers_per_trial']}: a pack trains in one process; use one or the other")
        if cfg["amp"] == "fp16":
            raise ConfigError(f"pack: {cfg['pack']} with amp fp16: fp16 needs one loss scaler per seed; use amp bf16 or off")


def _key(cfg: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in cfg.items() if k not in _SEED_KEYS))


def groups(plan: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """pack id -> its trials (in plan order), for every trial of ``plan`` with ``pack`` > 1."""
    out: dict[str, list[str]] = {}
    current: list[str] = []
    key = None
    for tid, cfg in plan.items():
        size = _size(cfg)
        if size <= 1:
            current, key = [], None
            continue
        k = _key(cfg)
        if k != key or len(current) >= size:
            current, key = [], k
            out[f"pack-{tid}"] = current
        current.append(tid)
    return out


@dataclasses.dataclass(frozen=True)
class Unit:
    """One Ray trial of a run that trains a pack (or the part of one left to run)."""

    pack_id: str
    members: tuple[str, ...]
    resume_from: str | None


def run_units(plan: Mapping[str, Mapping[str, Any]], todo: Mapping[str, Any], resume_from: Mapping[str, str]) -> dict[str, Unit]:
    """The packs of a run: unit id -> :class:`Unit`, from the study's ``plan`` and what this run
    has ``todo``. A pack's unfinished trials run together from their checkpoint; if they were
    recorded with different ones (a driver killed between two records), each set runs apart."""
    units: dict[str, Unit] = {}
    for pack_id, members in groups(plan).items():
        left = [m for m in members if m in todo]
        by_path: dict[str | None, list[str]] = {}
        for m in left:
            by_path.setdefault(resume_from.get(m), []).append(m)
        for i, (path, ids) in enumerate(by_path.items()):
            units[pack_id if i == 0 else f"{pack_id}.{i}"] = Unit(pack_id, tuple(ids), path)
    return units
