"""When a sequential seed study stops: the ``--until`` rule, its checks and its state.

The rule is a string, ``"halfwidth<=0.25"``: stop once the anytime-valid
interval of the mean of the study's metric (a confidence sequence, see
:mod:`analysis.sequential`) is at most that wide on each side, or at the cap.
Spaces around the parts are allowed (``"halfwidth <= 0.25"``); ``<`` and other
operators are not (``<=`` is the one rule scripts can rely on). A paired A-vs-B
study stops when the interval of the mean paired difference excludes 0
(decided) or lies inside ``[-delta, delta]`` (equivalent), or at the cap.

The state is a pure function of the finished values in seed order, so a
resumed study recomputes it from its tables and reaches the same decision.
"Seed order" is the order in which the seeds were scheduled, and only its
longest finished prefix counts (:func:`seed_prefix`): with several seeds
running at once they finish out of order, and which one finishes first may
depend on its outcome (a diverging run ends early), so taking values in the
order they arrive would let the outcomes choose the sequence.
No Ray here; the engine calls :func:`check_rule` before writing anything and
:func:`decide` / :func:`decide_paired` after each finished seed, and writes
``Decision.record()`` to study.yaml.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rsb_tune.errors import ConfigError, arg

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Decision",
    "PairedRule",
    "SeedPrefix",
    "StoppingRule",
    "check_paired",
    "check_rule",
    "decide",
    "decide_paired",
    "paired_seed_prefix",
    "parse_rule",
    "seed_prefix",
]

SYNTAX = "halfwidth<=X with X > 0, e.g. 'halfwidth<=0.25'"
_RULE = re.compile(r"^\s*halfwidth\s*<=\s*(?P<value>\S+)\s*$")


def parse_rule(text: str) -> float:
    """The half-width of ``"halfwidth<=X"``; :class:`ConfigError` naming the value otherwise."""
    if not isinstance(text, str):
        raise ConfigError(f"{arg('until', text)}: expected a string {SYNTAX}")
    match = _RULE.match(text)
    if match is None:
        hint = ""
        if re.match(r"^\s*halfwidth\s*(<|=|==|>=|>)\s*[^=]", text):
            hint = " (only '<=' is accepted)"
        raise ConfigError(f"{arg('until', text)}: does not parse{hint}; expected {SYNTAX}")
    raw = match["value"]
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{arg('until', text)}: half-width {raw!r} is not a number; expected {SYNTAX}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{arg('until', text)}: half-width must be a finite number > 0, got {raw!r}")
    return value


def _check_level(level: Any) -> float:
    if level is None:
        from analysis.sequential import DEFAULT_LEVEL

        return DEFAULT_LEVEL
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < level < 1:
        raise ConfigError(f"level: must be a number strictly between 0 and 1, got {level!r}")
    return float(level)


def _check_method(method: Any) -> str:
    from analysis.sequential import DEFAULT_METHOD, METHODS

    if method is None:
        return DEFAULT_METHOD
    if method not in METHODS:
        raise ConfigError(f"method: {method!r} is not a confidence-sequence method; allowed: {', '.join(METHODS)}")
    return str(method)


def _check_bounds(bounds: Any) -> tuple[float, float]:
    if bounds is None:
        from analysis.sequential import ACCURACY_BOUNDS

        bounds = ACCURACY_BOUNDS
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ConfigError(f"bounds: expected two numbers (lo, hi), got {bounds!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError(f"bounds: expected two finite numbers lo < hi, got {bounds!r}")
    return lo, hi


def _check_metric(metric: Any, metrics: Iterable[str] | None) -> str:
    from rsb_tune.errors import suggest

    if metrics is None:
        from analysis.contract import METRICS as metrics
    allowed = list(metrics)
    if metric not in allowed:
        raise ConfigError(
            f"metric: {metric!r} is not a metric; allowed: {', '.join(allowed)}{suggest(str(metric), allowed)}"
        )
    return str(metric)


def _check_cap(cap: Any, least: int, what: str) -> int:
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise ConfigError(f"{arg('n', cap)}: the cap on seeds must be an integer >= 1")
    if cap < least:
        raise ConfigError(f"{arg('n', cap)}: a cap of {cap} seeds is below the {least} that {what} needs even with no spread; raise it to at least {least}")
    return cap


@dataclass(frozen=True)
class StoppingRule:
    """A validated ``--until`` rule for one study (make it with :func:`check_rule`)."""

    halfwidth: float
    cap: int
    metric: str
    level: float
    method: str
    bounds: tuple[float, float]
    text: str
    min_seeds: int

    def record(self) -> dict[str, Any]:
        """JSON-able: the rule as given, the cap, the metric and the method's record."""
        from analysis.sequential import method_record

        return {
            "rule": self.text,
            "halfwidth": self.halfwidth,
            "cap": self.cap,
            "metric": self.metric,
            "min_seeds": self.min_seeds,
            **method_record(self.method, level=self.level, bounds=self.bounds),
        }


@dataclass(frozen=True)
class PairedRule:
    """A validated A-vs-B stopping rule (make it with :func:`check_paired`)."""

    cap: int
    delta: float | None
    metric: str
    mode: str
    level: float
    method: str
    bounds: tuple[float, float]
    min_seeds: int

    def record(self) -> dict[str, Any]:
        from analysis.sequential import method_record

        width = self.bounds[1] - self.bounds[0]
        return {
            "rule": "paired: until the interval of mean(a - b) excludes 0"
            + ("" if self.delta is None else f" or lies inside +-{self.delta:g}"),
            "delta": self.delta,
            "cap": self.cap,
            "metric": self.metric,
            "mode": self.mode,
            "min_seeds": self.min_seeds,
            **method_record(self.method, level=self.level, bounds=(-width, width)),
        }


def check_rule(
    text: str,
    *,
    cap: int,
    metric: str,
    level: float | None = None,
    method: str | None = None,
    bounds: Sequence[float] | None = None,
    metrics: Iterable[str] | None = None,
) -> StoppingRule:
    """Parse and validate an ``--until`` rule; :class:`ConfigError` (one line) on bad input.

    Refuses a cap below :func:`analysis.sequential.min_seeds`, the fewest seeds
    with which the method can reach the half-width at all (the betting CS on
    [0, 100] needs over a thousand for 0.25). ``level``, ``method`` and
    ``bounds`` default (``None``) to :mod:`analysis.sequential`'s (0.95,
    ``"t_mixture"``, [0, 100]); ``metrics``: the metric names allowed (by
    default :data:`analysis.contract.METRICS`).
    """
    from analysis.sequential import min_seeds

    halfwidth = parse_rule(text)
    level = _check_level(level)
    method = _check_method(method)
    lo, hi = _check_bounds(bounds)
    metric = _check_metric(metric, metrics)
    least = min_seeds(halfwidth, level=level, bounds=(lo, hi), method=method, max_n=100_000)
    cap = _check_cap(cap, least, f"the {method} interval at level {level:g} to reach half-width {halfwidth:g}")
    return StoppingRule(halfwidth, cap, metric, level, method, (lo, hi), text.strip(), least)


def check_paired(
    *,
    cap: int,
    metric: str,
    mode: str,
    delta: float | None = None,
    level: float | None = None,
    method: str | None = None,
    bounds: Sequence[float] | None = None,
    metrics: Iterable[str] | None = None,
) -> PairedRule:
    """Validate an A-vs-B rule. With ``delta``, the cap must allow the interval to fit in +-delta.

    ``mode``: ``"max"`` when a higher ``metric`` is better (the study's mode);
    the other arguments as in :func:`check_rule`.
    """
    from analysis.sequential import min_seeds

    if delta is not None and (
        isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not math.isfinite(delta) or delta <= 0
    ):
        raise ConfigError(f"delta: must be a finite number > 0, got {delta!r}")
    if mode not in ("max", "min"):
        raise ConfigError(f"mode: must be 'max' or 'min', got {mode!r}")
    level = _check_level(level)
    method = _check_method(method)
    lo, hi = _check_bounds(bounds)
    metric = _check_metric(metric, metrics)
    width = hi - lo
    # equivalence needs a half-width <= delta; deciding needs an interval that can exclude 0, at
    # best [l, width] with l > 0, so a half-width below width / 2 (differences lie in +-width)
    target = float(delta) if delta is not None else width / 2 * (1 - 1e-9)
    least = min_seeds(target, level=level, bounds=(-width, width), method=method, max_n=100_000)
    cap = _check_cap(cap, least, f"the paired {method} interval at level {level:g}")
    return PairedRule(cap, None if delta is None else float(delta), metric, mode, level, method, (lo, hi), least)


@dataclass(frozen=True)
class Decision:
    """Where a sequential study stands after ``n`` finished seeds."""

    stop: bool
    reason: str  # "halfwidth", "cap", "a_better", "b_better", "equivalent" or "continue"
    n: int
    mean: float
    lower: float
    upper: float
    halfwidth: float
    rule: dict[str, Any]

    def record(self) -> dict[str, Any]:
        """JSON-able, for study.yaml: the rule and method, why it stopped, after how many seeds, the interval."""
        return {
            "stopped": self.stop,
            "reason": self.reason,
            "n_seeds": self.n,
            "mean": self.mean,
            "lower": self.lower,
            "upper": self.upper,
            "interval_halfwidth": self.halfwidth,  # the interval's now; "halfwidth" below is the rule's target
            **self.rule,
        }


def _nan_row() -> dict[str, float]:
    return {"mean": float("nan"), "lower": float("nan"), "upper": float("nan"), "halfwidth": float("inf")}


def decide(rule: StoppingRule, values: Sequence[float]) -> Decision:
    """Stop or continue after the finished ``values`` (in seed order) under ``rule``.

    Stops at the first n whose interval is at most ``rule.halfwidth`` wide (the
    values beyond it, e.g. seeds that were already running, do not change the
    reason or the n), else at the cap; values beyond the cap are ignored.
    """
    from analysis.sequential import confidence_sequence

    values = [float(v) for v in values][: rule.cap]
    if not values:
        return Decision(False, "continue", 0, **_nan_row(), rule=rule.record())
    path = confidence_sequence(values, level=rule.level, bounds=rule.bounds, method=rule.method)
    hit = path.index[path["halfwidth"] <= rule.halfwidth]
    if len(hit):
        row, reason = path.loc[hit[0]], "halfwidth"
    elif len(values) >= rule.cap:
        row, reason = path.iloc[-1], "cap"
    else:
        row, reason = path.iloc[-1], "continue"
    return Decision(
        reason != "continue", reason, int(row["n"]), float(row["mean"]), float(row["lower"]),
        float(row["upper"]), float(row["halfwidth"]), rule.record(),
    )


def decide_paired(rule: PairedRule, diffs: Sequence[float]) -> Decision:
    """Stop or continue after the paired differences ``a_i - b_i`` (in seed order) under ``rule``."""
    from analysis.sequential import paired_decision

    diffs = [float(d) for d in diffs][: rule.cap]
    if not diffs:
        return Decision(False, "continue", 0, **_nan_row(), rule=rule.record())
    verdict = paired_decision(
        diffs, delta=rule.delta, level=rule.level, bounds=rule.bounds, method=rule.method, mode=rule.mode
    )
    if verdict["verdict"] != "continue":
        reason, n = verdict["verdict"], verdict["n_decided"]
    else:
        reason, n = ("cap" if len(diffs) >= rule.cap else "continue"), len(diffs)
    return Decision(
        reason != "continue", reason, int(n), verdict["mean"], verdict["lower"], verdict["upper"],
        verdict["halfwidth"], rule.record(),
    )


# --------------------------------------------------------------------------- values from a study's tables


@dataclass(frozen=True)
class SeedPrefix:
    """The values of the longest finished prefix of the scheduled seeds.

    ``values``/``seeds``: one per ``ok`` trial with a finite metric, in seed order;
    ``skipped``: {seed: status} of finished trials without a value (diverged,
    error, stopped, abandoned, or a missing metric), which do not count as
    observations (the interval is for the mean over seeds that finish ``ok``);
    ``waiting_for``: the first seed not finished yet (``None`` when all are).
    """

    values: list[float]
    seeds: list[int]
    skipped: dict[int, str]
    waiting_for: int | None


def _final_rows(trials: pd.DataFrame, metric: str, what: str) -> dict[int, tuple[str, float]]:
    for column in ("seed", "status", metric):
        if column not in trials.columns:
            raise ValueError(f"{what} has no column {column!r}")
    rows: dict[int, tuple[str, float]] = {}
    for seed, status, value in zip(trials["seed"], trials["status"], trials[metric], strict=True):
        if int(seed) in rows:
            raise ValueError(f"{what} has more than one trial of seed {int(seed)}")
        rows[int(seed)] = (str(status), float(value) if value is not None else float("nan"))
    return rows


def _outcome(row: tuple[str, float] | None) -> str | float | None:
    """None: not finished; a float: the value; a string: finished without a value (the reason)."""
    from analysis.contract import FINISHED, OK

    if row is None or row[0] not in FINISHED:
        return None
    status, value = row
    if status == OK and math.isfinite(value):
        return value
    return status if status != OK else "ok without a finite metric"


def seed_prefix(trials: pd.DataFrame, seeds: Sequence[int], metric: str) -> SeedPrefix:
    """The observations a sequential study has: ``metric`` over the longest finished prefix of ``seeds``.

    ``trials``: the study's trials table (one row per trial: ``seed``,
    ``status``, the final metrics); ``seeds``: the seeds in the order they were
    scheduled. Deterministic in the table, so a resume recomputes it.
    """
    rows = _final_rows(trials, metric, "trials")
    values, kept, skipped = [], [], {}
    for seed in seeds:
        outcome = _outcome(rows.get(int(seed)))
        if outcome is None:
            return SeedPrefix(values, kept, skipped, int(seed))
        if isinstance(outcome, str):
            skipped[int(seed)] = outcome
        else:
            values.append(outcome)
            kept.append(int(seed))
    return SeedPrefix(values, kept, skipped, None)


def paired_seed_prefix(
    a: pd.DataFrame, b: pd.DataFrame, seeds: Sequence[int], metric: str
) -> SeedPrefix:
    """The paired differences ``a - b`` over the longest prefix of ``seeds`` finished in both arms.

    A seed counts when both arms finished it ``ok``; when either did not, it is
    skipped (``skipped`` names the arm and status).
    """
    rows_a, rows_b = _final_rows(a, metric, "arm a trials"), _final_rows(b, metric, "arm b trials")
    values, kept, skipped = [], [], {}
    for seed in seeds:
        out_a, out_b = _outcome(rows_a.get(int(seed))), _outcome(rows_b.get(int(seed)))
        if out_a is None or out_b is None:
            return SeedPrefix(values, kept, skipped, int(seed))
        if isinstance(out_a, str) or isinstance(out_b, str):
            skipped[int(seed)] = "; ".join(f"{arm}: {o}" for arm, o in (("a", out_a), ("b", out_b)) if isinstance(o, str))
        else:
            values.append(out_a - out_b)
            kept.append(int(seed))
    return SeedPrefix(values, kept, skipped, None)
