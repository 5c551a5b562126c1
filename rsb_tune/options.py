"""Execution options: where and how fast a study runs, never what it trains.

They are keyword arguments of the Python API (:mod:`rsb_tune.api`) and flags of the command
line, both made from :data:`RUN_OPTIONS` here, so each default lives once. They may change
between runs of one study (``rsb-tune resume NAME --cpus-per-trial 4``) and are not part of
its plan; what changes numerics (a trial's torch threads) is recorded per trial instead.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

from rsb_tune.errors import ConfigError, arg
from rsb_tune.planning.limits import MAX_TRIALS, check_max_trials, check_size  # the size cap, shared by the CLI and the API

__all__ = ["RunOptions", "RUN_OPTIONS", "DEFAULT_STORAGE", "STORAGE_ENV", "MAX_TRIALS", "check_max_trials", "check_size", "default_storage", "run_options"]

STORAGE_ENV = "RSB_TUNE_STORAGE"
DEFAULT_STORAGE = "./rsb-results"  # the storage when $RSB_TUNE_STORAGE is not set


def default_storage(root: str | os.PathLike | None = None) -> str:
    """The storage a command, a function or a notebook uses when none is named:
    ``$RSB_TUNE_STORAGE`` when set, else ``./rsb-results``.

    Read when called, never at import, so setting the variable in a running notebook takes
    effect at the next call. ``root`` is the folder a relative storage is relative to (default:
    the working directory); the notebooks pass ``".."``, their project's root, as Jupyter runs
    them in ``notebooks/``. A URI (``s3://...``) or an absolute path is returned as it is.
    """
    storage = os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE
    if root is None or "://" in storage or os.path.isabs(os.path.expanduser(storage)):
        return storage
    return os.path.normpath(os.path.join(root, storage))


def _opt(default, help: str, *, flag_type=None, metavar=None, choices=None, repeat=False):
    return dataclasses.field(default=default, metadata={"help": help, "type": flag_type, "metavar": metavar, "choices": choices, "repeat": repeat})


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a study runs. Every field is also a CLI flag (``cpus_per_trial`` -> ``--cpus-per-trial``)."""

    cpus_per_trial: float = _opt(1.0, "CPUs Ray reserves per trial; also the torch threads of a trial when it starts", flag_type=float)
    gpus_per_trial: float = _opt(0.0, "GPUs per trial; fractions pack several trials on one GPU", flag_type=float)
    max_concurrent: int | None = _opt(None, "at most this many trials at once (default: as resources allow)", flag_type=int)
    max_failures: int = _opt(2, "retries of a failing trial from its last checkpoint", flag_type=int)
    address: str | None = _opt(None, "existing Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: start a local one)", metavar="ADDRESS")
    tracking: tuple[str, ...] = _opt((), "also log to TensorBoard, MLflow (<study>/mlflow.db) or W&B (repeatable; each needs its extra)", choices=("tensorboard", "mlflow", "wandb"), repeat=True)
    quiet: bool = _opt(False, "no progress display and none of Ray's workers' output (the summary at the end is still printed)")
    executor: Any = _opt("auto", "where the trials run: ray (a local Ray, or --address's cluster), local (this machine without Ray: in this process, or a pool of processes for more than one slot; grids and seed studies) or auto (local unless the study needs Ray or GPUs)", choices=("auto", "ray", "local"), metavar="{auto,ray,local}")
    reuse_actors: bool = dataclasses.field(default=True, metadata={"cli": False})

    def __post_init__(self):
        if not self.cpus_per_trial > 0:
            raise ConfigError(f"{arg('cpus_per_trial')} must be > 0, got {self.cpus_per_trial}")
        if self.gpus_per_trial < 0:
            raise ConfigError(f"{arg('gpus_per_trial')} must be >= 0, got {self.gpus_per_trial}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ConfigError(f"{arg('max_concurrent')} must be >= 1, got {self.max_concurrent}")
        if self.max_failures < 0:
            raise ConfigError(f"{arg('max_failures')} must be >= 0, got {self.max_failures}")
        object.__setattr__(self, "tracking", tuple(dict.fromkeys(self.tracking or ())))
        from rsb_tune.runner.executor import get_executor

        get_executor(self.executor)  # an unknown name fails here, before anything is planned

    @property
    def threads(self) -> int:
        """Torch threads of a trial that starts in this run (one that started before keeps its own)."""
        return max(1, int(self.cpus_per_trial))

    def recorded(self) -> dict[str, Any]:
        """What study.yaml keeps of the options of its last run."""
        out = {f.name: getattr(self, f.name) if f.name != "tracking" else list(self.tracking) for f in dataclasses.fields(self) if f.metadata.get("cli", True)}
        out["executor"] = self.executor if isinstance(self.executor, str) else getattr(self.executor, "name", type(self.executor).__name__)
        return out


RUN_OPTIONS = tuple(f for f in dataclasses.fields(RunOptions) if f.metadata.get("cli", True))


def run_options(values: Mapping[str, Any]) -> RunOptions:
    """RunOptions from keyword arguments; an unknown one is an error naming it."""
    names = {f.name for f in dataclasses.fields(RunOptions)}
    unknown = sorted(set(values) - names)
    if unknown:
        from rsb_tune.errors import suggest

        raise ConfigError(f"unknown option {unknown[0]!r}{suggest(unknown[0], names)}; run options: {', '.join(sorted(names))}")
    return RunOptions(**values)
