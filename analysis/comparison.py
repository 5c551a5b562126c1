"""Is A better than B? Two studies in, one answer out: the difference of their means with its
interval, P(A > B), a decision, and what else differs between the two studies.

:func:`compare_studies` computes a :class:`Comparison` (from :func:`analysis.stats.compare`:
nothing here is a second method); :func:`analysis.write_compare_report` draws it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from analysis.contract import DEFAULT_METRIC, DIVERGED, ERROR, OK, SEED_COLUMNS, STOPPED, UNKNOWN_SOURCE, KeyDifference, default_mode

from analysis import stats
from analysis.study import StudyPath, StudyTables, load_study

__all__ = ["Comparison", "compare_studies", "DECISIONS"]

A_BETTER, B_BETTER, NO_DIFFERENCE, NO_INTERVAL = "A better", "B better", "no difference shown", "no interval"
DECISIONS = (A_BETTER, B_BETTER, NO_DIFFERENCE, NO_INTERVAL)
INTERVAL_METHOD = "Welch t-interval"
P_METHOD = "share of seed pairs (a_i, b_j) in which A is better, ties half (Mann-Whitney U / n_a n_b), percentile bootstrap interval"


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The answer to "is A better than B?" on ``metric`` over the studies' ok trials.

    - ``difference`` = ``mean_a - mean_b`` with its ``level`` interval ``[low, high]``
      (``interval_method``: Welch's t-interval, unequal variances); in the direction of
      ``mode``: for ``max`` (accuracies) a positive difference favours A, for ``min`` (losses)
      a negative one;
    - ``p_a_better``: P(A > B), the probability that a seed of A beats a seed of B: the share
      of the ``n_a * n_b`` pairs in which A's value is better, ties counting half (the
      Mann-Whitney U over ``n_a * n_b``; Bouthillier et al. 2021), with a percentile bootstrap
      interval ``[p_a_better_low, p_a_better_high]``. It is about single seeds, not the means;
    - ``decision``: ``"A better"`` or ``"B better"`` when the interval excludes 0, ``"no
      difference shown"`` when it holds 0, ``"no interval"`` when a study has fewer than 2 ok
      values (or none of them vary);
    - ``differing_keys``: ``{key: (A's value, B's value)}`` of the resolved base configs
      (study.yaml ``base_config``), the seeds aside; ``confounds``: those of them that do not
      follow from what is compared (see :func:`compare_studies`);
    - ``warnings``: one line each, for what a reader of the verdict should know;
    - ``details``: every statistic of :func:`analysis.stats.compare` (Hedges' g, p-values,
      seeds needed, ...); ``report``: the report's folder once one is written.
    """

    a: str
    b: str
    metric: str
    mode: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    difference: float
    level: float
    low: float
    high: float
    p_a_better: float
    p_a_better_low: float
    p_a_better_high: float
    decision: str
    differing_keys: Mapping[str, tuple[Any, Any]] = dataclasses.field(default_factory=dict)
    confounds: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    details: Mapping[str, float] = dataclasses.field(default_factory=dict, repr=False)
    interval_method: str = INTERVAL_METHOD
    p_method: str = P_METHOD
    report: Path | None = None

    def line(self) -> str:
        """The verdict on one line."""
        better = "higher" if self.mode == "max" else "lower"
        interval = f"[{_signed(self.low)}, {_signed(self.high)}]" if not math.isnan(self.low) else "[no interval]"
        return (
            f"A ({self.a}, n={self.n_a}) vs B ({self.b}, n={self.n_b}): {self.metric} A - B = {_signed(self.difference)} "
            f"{interval} ({self.level:.0%} {self.interval_method}; {better} is better), "
            f"P(A > B) = {self.p_a_better:.2f} (seed pairs): {self.decision}"
        )

    __str__ = line

    def record(self) -> dict[str, Any]:
        """The comparison as plain values (summary.json's ``comparison``)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("details", "report")}
        out["differing_keys"] = {k: list(v) for k, v in self.differing_keys.items()}
        out["line"] = self.line()
        return out


def compare_studies(
    study_a: StudyPath | StudyTables,
    study_b: StudyPath | StudyTables,
    *,
    metric: str | None = None,
    keys: Iterable[str] = (),
    differences: Iterable[Any] | None = None,
    confidence: float = stats.CONFIDENCE,
    n_resamples: int = stats.N_RESAMPLES,
    random_state: int = 0,
) -> Comparison:
    """Compare study A against study B on ``metric`` (default: A's metric, in A's mode).

    What is compared: the ``recipe`` (two seed studies of recipes), every key the caller names
    in ``keys``, and what follows from those. ``differences``: the keys whose resolved base
    values differ, each with ``key``, ``a``, ``b``, ``source_a``, ``source_b`` and ``compared``
    (whether it follows from what is compared); :func:`rsb_tune.compare` passes the engine's
    (:func:`rsb_tune.planning.config.differences`: a key whose value comes from a recipe when
    the recipes differ, from a dataset profile when the datasets differ, or is derived from
    other keys; the rule ``rsb-tune ab`` applies to its arms). Without it, every differing
    value of the two study.yaml ``base_config`` is listed, and one counts as compared when it
    is ``recipe`` or named in ``keys``.
    Any other key whose resolved base value differs (``epochs`` set by ``--epochs``, the
    dataset, the model, the batch size, a ``--set`` value not named in ``keys``) is a confound:
    it is listed in ``confounds`` and named in a warning, since the difference then measures
    it too. The seeds may differ (the studies are independent samples). Warnings also say when
    the studies' metrics differ, when a study is a grid (its values mix configurations) and
    when trials that did not finish ok are left out.

    Raises ``ValueError`` (a :class:`StudyError` for the files) when a study has no ok value
    of the metric.
    """
    a = study_a if isinstance(study_a, StudyTables) else load_study(study_a)
    b = study_b if isinstance(study_b, StudyTables) else load_study(study_b)
    metric = metric or a.meta.get("metric") or DEFAULT_METRIC
    mode = a.meta.get("mode", default_mode(metric)) if metric == a.meta.get("metric") else default_mode(metric)
    row = stats.compare(a.trials, b.trials, metric, confidence=confidence, n_resamples=n_resamples, random_state=random_state)
    low, high = row["delta_ci_low"], row["delta_ci_high"]
    p, p_low, p_high = row["p_a_gt_b"], row["p_a_gt_b_ci_low"], row["p_a_gt_b_ci_high"]
    if mode == "min":  # a lower value is better: A beats B in the pairs it does not lose
        p, p_low, p_high = 1 - p, 1 - p_high, 1 - p_low
    keys = tuple(keys)
    diffs = tuple(differences) if differences is not None else _differences(a, b, keys)
    return Comparison(
        a=a.name, b=b.name, metric=metric, mode=mode, n_a=int(row["n_a"]), n_b=int(row["n_b"]),
        mean_a=row["mean_a"], mean_b=row["mean_b"], difference=row["delta"], level=confidence, low=low, high=high,
        p_a_better=p, p_a_better_low=p_low, p_a_better_high=p_high, decision=_decision(low, high, mode),
        differing_keys={d.key: (d.a, d.b) for d in diffs}, confounds=tuple(d.key for d in diffs if not d.compared),
        warnings=tuple(_warnings(a, b, metric, diffs, keys, row)), details=row,
    )  # fmt: skip


def _decision(low: float, high: float, mode: str) -> str:
    if math.isnan(low) or math.isnan(high):
        return NO_INTERVAL
    if low > 0 or high < 0:
        higher = A_BETTER if low > 0 else B_BETTER
        return higher if mode == "max" else {A_BETTER: B_BETTER, B_BETTER: A_BETTER}[higher]
    return NO_DIFFERENCE


def _differences(a: StudyTables, b: StudyTables, keys: tuple[str, ...]) -> tuple[KeyDifference, ...]:
    """The keys whose base values differ (the seeds aside), from the studies' manifests alone."""
    va, vb = dict(a.meta.get("base_config") or {}), dict(b.meta.get("base_config") or {})
    sa, sb = dict(a.meta.get("base_config_sources") or {}), dict(b.meta.get("base_config_sources") or {})
    out = []
    for key in sorted(set(va) | set(vb)):
        if key in SEED_COLUMNS or va.get(key) == vb.get(key):
            continue
        out.append(KeyDifference(key, va.get(key), vb.get(key), sa.get(key, UNKNOWN_SOURCE), sb.get(key, UNKNOWN_SOURCE), key == "recipe" or key in keys))
    return tuple(out)


def _warnings(a: StudyTables, b: StudyTables, metric: str, diffs: tuple[KeyDifference, ...], keys: tuple[str, ...], row: Mapping[str, float]) -> list[str]:
    out = []
    confounds = [d for d in diffs if not d.compared]
    if confounds:
        compared = [k for k in dict.fromkeys(("recipe", *keys)) if k in {d.key for d in diffs}]
        what = f"not only in what is compared ({', '.join(compared)}, and what follows from it)" if compared else "which is not what is compared"
        out.append(f"the studies differ in {', '.join(map(_difference, confounds))}, {what}: the difference of A and B measures that too")
    if a.meta.get("metric") != b.meta.get("metric"):
        out.append(f"A ({a.name}) was run for {a.meta.get('metric')}, B ({b.name}) for {b.meta.get('metric')}; compared on {metric}")
    for study, label in ((a, "A"), (b, "B")):
        if study.meta.get("kind") == "grid" and study.meta.get("params"):
            out.append(f"{label} ({study.name}) is a grid over {', '.join(map(str, study.meta['params']))}: its values mix configurations, not only seeds")
        left = {s: int((study.trials["status"] == s).sum()) for s in (DIVERGED, ERROR, STOPPED)}
        if sum(left.values()):
            parts = ", ".join(f"{n} {s}" for s, n in left.items() if n)
            out.append(f"{label} ({study.name}): {sum(left.values())} of {len(study.trials)} trials are left out ({parts}); only {OK} trials are compared")
    if math.isnan(row["delta_ci_low"]):
        out.append(f"no interval: each study needs at least 2 {OK} values of {metric} that vary (A {int(row['n_a'])}, B {int(row['n_b'])})")
    elif math.isnan(row["seeds_needed"]) and row["delta"] != 0:
        out.append("the seeds needed to detect this difference could not be computed (the power solver did not converge)")
    return out


def _signed(x: float) -> str:
    return f"{x:+.3g}"


def _difference(d: KeyDifference) -> str:
    """``epochs (15 vs 2, both from --epochs)``."""
    a, b = ("unset" if v is None else str(v) for v in (d.a, d.b))
    if d.source_a != d.source_b:
        return f"{d.key} ({a} from {d.source_a} vs {b} from {d.source_b})"
    return f"{d.key} ({a} vs {b}{'' if d.source_a == UNKNOWN_SOURCE else f', both from {d.source_a}'})"
