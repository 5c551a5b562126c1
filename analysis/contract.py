"""The study contract: the words a study is written in, defined once.

The analysis package (``analysis``) reads study directories and their tidy tables in these
words, and the engine (``rsb_tune``) writes them: the dependency runs one way, from the engine
to ``analysis``, never back. Nothing else spells out a status, a metric, a file name or the
default metric. This module imports nothing heavy, so every layer can use it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = [
    "StudyError",
    "UNKNOWN_SOURCE",
    "KeyDifference",
    "FORMAT_VERSION",
    "READABLE_FORMATS",
    "OK",
    "DIVERGED",
    "ERROR",
    "STOPPED",
    "ABANDONED",
    "RUNNING",
    "PENDING",
    "FINISHED",
    "KEPT",
    "COUNTED",
    "FAILED",
    "METRICS",
    "FINAL_METRICS",
    "EPOCH_COLUMNS",
    "SEED_COLUMNS",
    "RESULT_KEYS",
    "RUNTIME_COLUMNS",
    "PACK_ID",
    "PACK_RESULTS",
    "DEFAULT_METRIC",
    "default_mode",
    "is_percent",
    "PERCENT_BOUNDS",
    "decimals",
    "mean_std",
    "better",
    "best_of",
    "KINDS",
    "MANIFEST",
    "PLAN",
    "TRIALS",
    "EPOCHS",
    "EVALS",
    "EVAL_KEY",
    "EVENTS",
    "PREDICTIONS",
    "ERRORS",
    "RAY",
    "CHECKPOINT_FILE",
    "EVENT_TYPES",
    "pack_correct",
    "unpack_correct",
]

class StudyError(ValueError):
    """A study directory is missing, or one of its files is corrupt; the message names the
    file. The engine's :class:`rsb_tune.errors.StudyError` is this error and a user error."""


UNKNOWN_SOURCE = "unknown"  # a config value whose source was not recorded (a study.yaml written before the sources)

# --- a config key whose value differs between two studies (the comparison's confounds)


@dataclasses.dataclass(frozen=True)
class KeyDifference:
    """A key whose value differs between configs A and B, each value with its source.
    ``compared``: the difference follows from what is compared (the engine's :func:`rsb_tune.planning.config.differences`);
    otherwise it is a confound, which the comparison of A with B also measures."""

    key: str
    a: Any
    b: Any
    source_a: str
    source_b: str
    compared: bool


# --- the format of a study directory: written into study.yaml, checked on resume
FORMAT_VERSION = 1
READABLE_FORMATS = (0, 1)  # 0: studies written before the version was recorded

# --- trial statuses
OK = "ok"  # finished normally
DIVERGED = "diverged"  # a non-finite loss: a result, not a failure
ERROR = "error"  # raised (or its process died) more often than the retries allow
STOPPED = "stopped"  # early-stopped by a scheduler (ASHA)
ABANDONED = "abandoned"  # a search point whose driver died; the resumed search samples anew
RUNNING = "running"
PENDING = "pending"

FINISHED = (OK, DIVERGED, ERROR, STOPPED, ABANDONED)  # a row in trials.parquet
KEPT = (OK, DIVERGED, STOPPED, ABANDONED)  # ended for good: never run again on resume
COUNTED = (OK, DIVERGED, STOPPED)  # finished trials that count as done in progress and exits
FAILED = (ERROR,)

# --- metrics
METRICS = ("val_top1", "val_top5", "val_loss", "v2_top1", "v2_top5", "v2_loss", "train_loss")
FINAL_METRICS = ("val_top1", "val_top5", "val_loss", "v2_top1", "v2_top5", "v2_loss")
DEFAULT_METRIC = "val_top1"
SEED_COLUMNS = ("seed", "model_seed", "data_seed", "aug_seed")
EPOCH_COLUMNS = (
    "trial_id", "seed", "epoch", "train_loss", "lr", "val_top1", "val_top5", "val_loss",
    "v2_top1", "v2_top5", "v2_loss", "epoch_time_s", "images_per_s", "pack_id",
)  # fmt: skip
RUNTIME_COLUMNS = ("runtime_device", "runtime_amp", "runtime_channels_last", "runtime_threads", "runtime_world_size", "runtime_global_batch", "runtime_pack", "runtime_augment")
# --- packed trials (``pack: K``): the pack a trial ran in (a column of both tables; None when
# unpacked), and the key of a pack's report under which each of its trials' results travel
PACK_ID = "pack_id"
PACK_RESULTS = "pack_results"
# what a trial's report may carry into its event log (plus runtime_* keys)
RESULT_KEYS = frozenset(
    {*EPOCH_COLUMNS[2:], "status", "val_correct", "v2_correct", "hostname", "node_id", "pid"}
)


def default_mode(metric: str) -> str:
    """The direction in which ``metric`` is better: losses go down, accuracies up."""
    return "min" if metric.endswith("loss") else "max"


# --- how numbers are written: every mean ± std of the status, the report and the figures' labels
PERCENT_BOUNDS = (0.0, 100.0)  # the range of an accuracy (top1, top5)


def is_percent(metric: str) -> bool:
    """Whether ``metric`` is an accuracy in percent (``val_top1``, ``v2_top5``), bounded by :data:`PERCENT_BOUNDS`."""
    return metric.endswith(("top1", "top5"))


def decimals(values=(), *, spread: float | None = None, digits: int = 2) -> int:
    """The decimals that show numbers at the data's scale: the spread (``spread``, else the std
    of the finite ``values``) with ``digits`` significant digits, so a loss of 2.30121 with a std
    of 0.00042 is written 2.30121 ± 0.00042, not 2.30 ± 0.00. Without a spread (one value, all
    equal), 4 significant digits of the largest magnitude. Between 0 and 8."""
    import math

    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if spread is None and len(finite) > 1:
        mean = sum(finite) / len(finite)
        spread = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
    if spread is not None and math.isfinite(spread) and spread > 0:
        scale, wanted = abs(spread), digits
    else:
        scale, wanted = max((abs(v) for v in finite), default=0.0), 4
    if not scale:
        return 2
    return min(max(wanted - 1 - math.floor(math.log10(scale)), 0), 8)


def mean_std(mean: float, std: float, *, digits: int = 2) -> str:
    """``"mean ± std"`` at the decimals of :func:`decimals` (the std's scale; the mean's when
    there is no std): ``mean_std(2.301234, 0.000421)`` -> ``"2.30123 ± 0.00042"``."""
    d = decimals([mean], spread=std, digits=digits)
    return f"{mean:.{d}f} ± {std:.{d}f}"


def better(mode: str):
    """``max`` or ``min``: the function that picks the best of several values in ``mode``."""
    return max if mode == "max" else min


def best_of(pairs, mode: str):
    """The best ``(value, key)`` of ``pairs`` in ``mode``; among tied values, the first in the
    order given (trial order: the lowest trial id). None when there are none. The one tie rule
    of every reader: the status, the browser, the histogram's legend."""
    best = None
    for value, key in pairs:
        if best is None or (value > best[0] if mode == "max" else value < best[0]):
            best = (value, key)
    return best


# --- study kinds
KINDS = ("seeds", "grid")

# --- files of a study directory <storage>/<name>/
MANIFEST = "study.yaml"
PLAN = "plan.json"
TRIALS = "trials.parquet"
EPOCHS = "epochs.parquet"
EVALS = "evals.parquet"  # re-scored trials (rsb-tune eval): one row per trial x setting x test set
EVAL_KEY = ("trial_id", "test_set", "test_img_size", "crop_pct")  # what makes a row of evals.parquet one
EVENTS = "events"
PREDICTIONS = "predictions"
ERRORS = "errors"
RAY = "ray"
CHECKPOINT_FILE = "state.pt"

# --- kinds of event records in events/<trial>.jsonl (rsb_tune.runner.lifecycle writes and reads them)
EVENT_TYPES = ("result", "checkpoint", "error", "restart", STOPPED, ABANDONED)


# --- per-example correctness, as a trial's final report carries it (base64 of packed bits)
def pack_correct(correct) -> str:
    import base64

    import numpy as np

    return base64.b64encode(np.packbits(np.asarray(correct, dtype=bool)).tobytes()).decode("ascii")


def unpack_correct(packed: str, n: int):
    import base64

    import numpy as np

    return np.unpackbits(np.frombuffer(base64.b64decode(packed), dtype=np.uint8))[:n].astype(bool)
