"""Report writers: a study (or two) in, a folder of figures and summaries out.

Each report folder holds every figure as PNG and SVG, ``summary.json`` (all
the numbers), ``summary.md`` (the tables) and ``index.html`` (one
self-contained page with relative image links). Figures are drawn on
``matplotlib.figure.Figure`` objects, so no pyplot state or backend is touched.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis.contract import decimals, default_mode

from analysis import evals as eval_tables
from analysis import factorial, grid, plots, stats
from analysis.comparison import Comparison, compare_studies
from analysis.plots_sequential import plot_confidence_sequence
from analysis.sequential import confidence_sequence, fixed_t_interval_path
from analysis._tables import jsonable, status_counts
from analysis.study import StudyTables, StudyError, StudyPath, load_study

__all__ = ["write_compare_report", "write_report"]

REPORT_DIR = "report"
FIGURE_FORMATS = ("png", "svg")
EXPECTED_MAX_KS = (1, 5, 10)
SEED_ROWS = [
    "n",
    "n_diverged",
    "n_error",
    "mean",
    "std",
    "mean_ci_low",
    "mean_ci_high",
    "mean_ci_method",
    "std_ci_low",
    "std_ci_high",
    "median",
    "iqm",
    "min",
    "max",
    "range",
    "q05",
    "q95",
    "range_in_std",
    "expected_range_in_std",
]
# the rows in the metric's units: shown at the decimals of the metric's std (analysis.contract.decimals)
VALUE_ROWS = ("mean", "std", "mean_ci_low", "mean_ci_high", "std_ci_low", "std_ci_high", "median", "iqm", "min", "max", "range", "q05", "q95")
# how the report names an interval's method (the ``*_ci_method`` columns)
INTERVAL_NAMES = {"t": "t-interval", "z": "z-interval (the seed std given)"}
INTERVALS_TEXT = (
    "mean_ci_low/mean_ci_high: the interval of the mean over the seeds, made as mean_ci_method says: "
    "the Student t-interval at every n (analysis.stats.mean_ci; in simulation a BCa bootstrap covered "
    "only 80 % at n = 4 and less than the t-interval at every n up to 200). std_ci_low/std_ci_high: "
    "chi-square interval of the std (exact for normal seeds)."
)
META_KEYS = [
    "name",
    "kind",
    "recipe",
    "metric",
    "mode",
    "params",
    "n_trials",
    "command",
    "git_commit",
    "started_at",
    "ended_at",
]


# --------------------------------------------------------------------------- public writers


def write_report(study_dir: StudyPath, out_dir: StudyPath | None = None) -> Path:
    """Write the report of one study into ``out_dir`` (default ``<study>/report/``); return that folder.

    Seed studies get the paper's seed table (Figure 1) for val and V2, the
    histograms (Figure 2), the spread along the epochs (Figure 3), the rank
    stability, the expected best of k seeds, the val/V2 correlation and the
    test-set noise. Grid studies get the ranking of the configurations against
    the seed noise, a heatmap of the first two params, the variance components
    and the expected best of k configurations; a grid that crosses two factors with seeds
    (:func:`analysis.factorial.find_factors`) also gets its cell table, the interaction with its
    interval or F-test, the ranking-flip verdict and the interaction plot.
    """
    study = load_study(study_dir)
    out = Path(out_dir) if out_dir is not None else study.paths[0] / REPORT_DIR
    report = _Report(out, f"rsb-tune study {study.name}")
    _overview(report, study)
    ok = study.select()
    if ok.trials.empty:
        report.text("No trial finished with status ok: nothing to summarise.")
    elif study.meta["kind"] == "grid" and study.meta["params"]:
        _grid_sections(report, study)
        _factorial_section(report, study)
    else:
        _seed_sections(report, study, ok)
    if study.meta.get("stopping") and not ok.trials.empty:
        _sequential_section(report, study, ok)
    if study.meta.get("finetune_from"):
        _finetune_section(report, study)
    evals = eval_tables.load_evals(study.paths[0])
    if evals is not None and not evals.empty:
        _eval_section(report, evals, pooled=study.meta["kind"] == "grid" and bool(study.meta["params"]))
    return report.write()


def write_compare_report(
    study_a: StudyPath, study_b: StudyPath, out_dir: StudyPath, *, comparison: Comparison | None = None
) -> Path:
    """Write the comparison of two studies (A against B) into ``out_dir``; return that folder.

    The verdict first (:func:`analysis.compare_studies`, or ``comparison`` when the caller has
    computed it): the difference of the studies' metric with its interval, P(A > B), the
    decision, the config keys that differ and the warnings. Then for each of val/V2 top-1 (and
    the studies' metric) present in both: the difference of means with its Welch interval,
    Hedges' g, the Mann-Whitney and permutation p-values, P(A > B) with its bootstrap interval
    and the seeds per arm needed to detect the difference, plus the seed tables side by side.
    """
    a, b = load_study(study_a), load_study(study_b)
    labels = (a.name, b.name) if a.name != b.name else (f"A: {a.name}", f"B: {b.name}")
    report = _Report(Path(out_dir), f"rsb-tune comparison: {labels[0]} against {labels[1]}")
    report.table(
        "studies", pd.DataFrame([_meta_row(s, label) for s, label in zip((a, b), labels, strict=True)])
    )
    if comparison is None:
        try:
            comparison = compare_studies(a, b)
        except ValueError as exc:
            report.text(f"No verdict: {exc}")
    if comparison is not None:
        _verdict_section(report, comparison)
    metrics = [m for m in _seed_metrics(a) if m in _seed_metrics(b)]
    report.heading("Seed statistics")
    seeds = pd.concat(
        [
            stats.seed_table(s.trials, metrics).assign(study=label)
            for s, label in zip((a, b), labels, strict=True)
        ]
    )
    report.text(INTERVALS_TEXT)
    report.table("seed_table", seeds, display=_seed_display(seeds, columns=["study", "metric"]))
    report.heading("Comparison")
    report.text(
        f"delta_ci_low/delta_ci_high: {100 * stats.CONFIDENCE:g} % Welch t-interval of mean A - mean B. "
        "p_a_gt_b_ci_low/p_a_gt_b_ci_high: percentile bootstrap of P(A > B), resampling each study's seeds. "
        "The figures show each study's mean with its t-interval."
    )
    rows = []
    for metric in metrics:
        try:
            row = comparison.details if comparison is not None and metric == comparison.metric else stats.compare(a.trials, b.trials, metric)
        except ValueError as exc:
            report.text(f"No comparison of {metric}: {exc}")
            continue
        rows.append({"metric": metric, **row})
        report.figure(
            f"compare_{metric}",
            lambda ax, m=metric: plots.plot_compare(a.trials, b.trials, metric=m, labels=labels, ax=ax),
        )
    report.table("compare", pd.DataFrame(rows))
    return report.write()


# --------------------------------------------------------------------------- sections


def _verdict_section(report: _Report, comparison: Comparison) -> None:
    report.heading("Verdict")
    report.value("comparison", comparison.record())
    report.text(comparison.line())
    report.text(f"P(A > B): {comparison.p_method}.")
    for warning in comparison.warnings:
        report.text(f"Warning: {warning}")
    if comparison.differing_keys:
        report.text("Config keys that differ between the two studies' base configs (the seeds aside):")
        table = pd.DataFrame(
            [
                {"key": key, "A": _cell(va), "B": _cell(vb), "compared": key not in comparison.confounds}
                for key, (va, vb) in comparison.differing_keys.items()
            ]
        )
        report.table("differing_keys", table)


def _cell(value: Any) -> str:
    return "unset" if value is None else json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _overview(report: _Report, study: StudyTables) -> None:
    report.value("study", study.meta)
    report.value("status_counts", status_counts(study.trials))
    row = _meta_row(study, study.name)
    shown = {k: v for k, v in row.items() if k != "study"}  # the name is the page's title and its first row
    shown["git_commit"] = _provenance(study.meta)
    report.table("overview", pd.DataFrame([row]), display=_vertical(pd.DataFrame([shown])))


def _vertical(row: pd.DataFrame) -> pd.DataFrame:
    """A one-row table shown as key | value: its columns go down the page, not across it."""
    return pd.DataFrame({"": list(row.columns), "value": list(row.iloc[0])})


def _provenance(meta: Mapping[str, Any]) -> str:
    """The git commit the study ran from, or the installed version when it ran from a package."""
    if meta.get("git_commit"):
        return str(meta["git_commit"])
    version = (meta.get("versions") or {}).get("rsb-tune")
    return f"rsb-tune {version} (installed, no git checkout)" if version else "unknown"


def _split_names(meta: Mapping[str, Any]) -> tuple[str, str]:
    """How the report names the val and V2 splits: the paper's names on ImageNet, the study's
    dataset and split names elsewhere (``digits val``, ``digits v2``)."""
    dataset = meta.get("dataset")
    dataset = ", ".join(map(str, dataset)) if isinstance(dataset, list) else str(dataset or "")
    if dataset.lower().startswith("imagenet"):
        return "ImageNet-val", "ImageNet-V2"
    return (f"{dataset} val", f"{dataset} v2") if dataset else ("val", "v2")


def _meta_row(study: StudyTables, label: str) -> dict[str, Any]:
    meta = {key: study.meta.get(key) for key in META_KEYS}
    meta["params"] = ", ".join(map(str, meta["params"] or [])) or "-"
    if isinstance(meta["recipe"], list):  # a grid over recipes: each trial has its own
        meta["recipe"] = ", ".join(map(str, meta["recipe"]))
    return {"study": label, **meta, "precision": _precision(study.trials), **status_counts(study.trials), "path": str(study.paths[0])}


def _precision(trials: pd.DataFrame) -> str:
    """The precision the trials trained in (``runtime_amp``; ``off`` is fp32), with counts when
    they differ: ``amp: auto`` takes bf16 where the device has bf16 matrix units."""
    if "runtime_amp" not in trials or trials["runtime_amp"].dropna().empty:
        return "-"
    counts = trials["runtime_amp"].dropna().replace({"off": "fp32"}).value_counts()
    return str(counts.index[0]) if len(counts) == 1 else ", ".join(f"{p} ({n})" for p, n in counts.items())


def _seed_metrics(study: StudyTables) -> list[str]:
    """val/V2 top-1 and the study's own metric, those the trials table has."""
    wanted = [*stats.SPLIT_METRICS, study.meta.get("metric")]
    return list(dict.fromkeys(m for m in wanted if m in study.trials.columns))


def _mode_of(study: StudyTables, metric: str) -> str:
    """The direction in which ``metric`` is better: the study's mode for its own metric."""
    if metric == study.meta.get("metric"):
        return study.meta.get("mode", default_mode(metric))
    return default_mode(metric)


def _seed_display(table: pd.DataFrame, columns: Sequence[str] = ("metric",)) -> pd.DataFrame:
    """The paper's Figure 1 layout: statistics down, metrics (and studies) across.

    The ``mean_ci_method`` row names the interval above it in words, e.g. "95 % t-interval (n = 4)".
    """
    if "mean_ci_method" in table.columns:
        table = table.assign(
            mean_ci_method=[_interval_label(m, n) for m, n in zip(table["mean_ci_method"], table["n"], strict=True)]
        )
    table = table.astype({c: object for c in VALUE_ROWS if c in table.columns})
    for i, std in zip(table.index, table.get("std", pd.Series(np.nan, index=table.index)), strict=True):
        d = decimals(spread=float(std) if pd.notna(std) else None)  # a loss's 0.0004 is not "0.00"
        for c in VALUE_ROWS:
            if c in table.columns and isinstance(table.at[i, c], (float, np.floating)) and math.isfinite(table.at[i, c]):
                table.at[i, c] = f"{table.at[i, c]:.{d}f}"
    shown = table.set_index(list(columns))[[c for c in SEED_ROWS if c in table.columns]].T
    shown.columns = [" / ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in shown.columns]
    return shown.rename_axis("statistic").reset_index()


def _interval_label(method: str | None, n: int, confidence: float = stats.CONFIDENCE) -> str | None:
    """An interval's method in words: ``"t", 4`` -> ``"95 % t-interval (n = 4)"``; ``None`` (no interval) stays."""
    if pd.isna(method):
        return None
    return f"{100 * confidence:g} % {INTERVAL_NAMES.get(method, method)} (n = {n})"


def _seed_sections(report: _Report, study: StudyTables, ok: StudyTables) -> None:
    metrics = _seed_metrics(study)
    report.heading("Seed statistics (Figure 1)")
    report.text("Only trials with status ok count; diverged and errored trials are counted beside.")
    report.text(INTERVALS_TEXT)
    table = stats.seed_table(study.trials, metrics)
    report.table("seed_table", table, display=_seed_display(table))
    report.heading("Distribution over seeds (Figure 2)")
    for metric in metrics:
        mode = _mode_of(study, metric)
        report.figure(
            f"histogram_{metric}",
            lambda ax, m=metric, mode=mode: plots.plot_seed_histogram(ok.trials, metric=m, mode=mode, ax=ax),
        )
    _epoch_sections(report, ok, metrics)
    target = study.meta["metric"] if study.meta["metric"] in metrics else metrics[0]
    _expected_max_section(report, ok.trials, target, f"seeds ({target})", _mode_of(study, target))
    _split_sections(report, ok, metrics, _split_names(study.meta))


def _epoch_sections(report: _Report, ok: StudyTables, metrics: Sequence[str]) -> None:
    present = [m for m in metrics if m in ok.epochs.columns and ok.epochs[m].notna().any()]
    if not present:
        return
    report.heading("Spread along the epochs (Figure 3)")
    report.value("epoch_variance", {m: stats.epoch_variance(ok.epochs, m) for m in present})
    for metric in present:
        report.figure(
            f"epoch_variance_{metric}",
            lambda ax, m=metric: plots.plot_epoch_variance(ok.epochs, metric=m, ax=ax),
        )
    report.heading("Rank stability along the epochs")
    report.value("rank_stability", stats.epoch_rank_stability(ok.epochs, present[0]))
    report.figure("rank_stability", lambda ax: plots.plot_rank_stability(ok.epochs, metric=present[0], ax=ax))


def _expected_max_section(report: _Report, values: pd.DataFrame, metric: str, what: str, mode: str) -> None:
    report.heading(f"Expected best of k {what}")
    n = int(pd.to_numeric(values[metric], errors="coerce").notna().sum())
    ks = sorted({k for k in (*EXPECTED_MAX_KS, n) if k <= n})
    table = pd.concat(
        [
            stats.expected_max(values, ks, method, metric=metric, mode=mode).assign(method=method)
            for method in ("unbiased", "dodge")
        ]
    )
    report.text(f"inflation: the expected best of k {what} minus their mean.")
    report.table("expected_max", table)
    report.figure("expected_max", lambda ax: plots.plot_expected_max(values, metric=metric, mode=mode, ax=ax))


def _split_sections(report: _Report, ok: StudyTables, metrics: Sequence[str], names: tuple[str, str]) -> None:
    splits = [m for m in stats.SPLIT_METRICS if m in metrics]
    if len(splits) == 2:
        report.heading(f"{names[0]} against {names[1]}")
        correlation = pd.DataFrame([stats.split_correlation(ok.trials, *splits)])
        report.table("split_correlation", correlation, display=_vertical(correlation))
        report.figure(
            "split_correlation",
            lambda ax: plots.plot_split_correlation(ok.trials, x=splits[0], y=splits[1], ax=ax),
        )
    report.heading("Test-set noise")
    report.text(
        "binomial_std: the std a fixed model would show on re-drawn test sets of this size. "
        "With the per-example predictions, the observed variance splits into its test-set part "
        "(Jordan 2023) and the distribution part (what would remain on an infinite test set)."
    )
    rows = [
        stats.test_set_noise(ok.trials, m, _predictions(ok, m, report))
        for m in splits
        if stats.split_size_column(m) in ok.trials
    ]
    noise = pd.DataFrame(rows)
    report.table("test_set_noise", noise, display=_transposed(noise, "metric"))


def _transposed(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """A wide table of a few rows shown the other way round: its columns down, one column per
    value of ``column`` across (a page of 1280 px has no room for 15 columns)."""
    if table.empty or column not in table.columns:
        return table
    shown = table.set_index(column).T
    shown.columns = [str(c) for c in shown.columns]
    return shown.rename_axis(column).reset_index()


def _predictions(ok: StudyTables, metric: str, report: _Report) -> pd.DataFrame | None:
    """The correctness matrix of the metric's split, or None (with a note) if unavailable."""
    try:
        return ok.predictions(stats.split_of(metric))
    except StudyError as exc:
        report.text(f"No test-set decomposition for {metric}: {exc}")
        return None


def _eval_section(report: _Report, evals: pd.DataFrame, *, pooled: bool = False) -> None:
    """The trained weights re-scored (``rsb-tune eval``): Figure 4, Table 9, the test sets."""
    report.heading("Re-evaluated weights (rsb-tune eval)")
    if pooled:
        report.text("A grid: these tables pool every configuration's trials (the paired crop differences stay per trial).")
    report.text(
        "Every ok trial's final weights scored again at other test resolutions, crop ratios and on other test sets "
        "(evals.parquet). Intervals: the 95 % t-interval over the seeds; a crop's diff is paired (the same weights "
        "at the training crop), its interval over the trials' differences."
    )
    for test_set in [t for t in ("val", "v2", "real") if t in set(evals["test_set"])] or sorted(evals["test_set"].unique())[:1]:
        curve = eval_tables.resolution_curve(evals, test_set=test_set)
        report.table(f"resolution_curve_{test_set}", curve)
        if curve["test_img_size"].nunique() > 1:
            report.figure(f"resolution_curve_{test_set}", lambda ax, c=curve: eval_tables.plot_resolution_curve(c, ax=ax))
    for what, make in (("crop_table", lambda: eval_tables.crop_table(evals)), ("test_sets", lambda: eval_tables.test_set_table(evals))):
        try:
            report.table(f"eval_{what}", make())
        except ValueError as exc:
            report.text(f"No {what}: {exc}")


def _finetune_section(report: _Report, study: StudyTables) -> None:
    """A fine-tune study (``rsb-tune finetune``): where its weights came from, the transfer table."""
    src = study.meta["finetune_from"]
    report.heading("Fine-tuned from another study (rsb-tune finetune)")
    report.text(
        f"Trial i started from trial i of study {src['study']} (recipe {src['recipe']}, trained on {src['dataset']}): its final "
        f"weights on every layer but a new classifier head, then trained with {src.get('recipe_source', 'the fine-tuning recipe')}; "
        f"seeds: the source trial's + {src.get('seed_offset')}. Interval: the 95 % t-interval over the seeds."
    )
    report.table("finetune_sources", pd.DataFrame([{"trial_id": tid, **rec} for tid, rec in src["trials"].items()]))
    try:
        report.table("transfer_table", eval_tables.transfer_table(study.trials, metric=study.meta.get("metric", "val_top1")))
    except ValueError as exc:
        report.text(f"No transfer table: {exc}")


def _sequential_section(report: _Report, study: StudyTables, ok: StudyTables) -> None:
    """A sequential study: its rule, why it stopped, and the path of its anytime interval."""
    rec = study.meta["stopping"]
    report.heading("Sequential study: the anytime interval against the number of seeds")
    report.value("stopping", rec)
    shown = {k: rec.get(k) for k in ("rule", "cap", "metric", "method", "level", "stopped", "reason", "n_seeds", "mean", "lower", "upper")}
    report.table("stopping_rule", pd.DataFrame([shown]))
    if rec.get("paired"):
        report.text(
            f"Arm {rec.get('arm')} of a paired study against {rec.get('other_arm')}: the interval is of the mean "
            f"paired difference a - b of {rec.get('metric')} over the seeds finished in both arms."
        )
        return
    report.text(
        "The band is the confidence sequence: it holds the mean at every n at once, so stopping when it is narrow "
        "enough keeps its level. The dashed fixed-n t-interval is valid only at one n fixed in advance. Seeds in seed "
        "order; only ok trials count."
    )
    metric, level, bounds, method = rec["metric"], rec["level"], rec["bounds"], rec["method"]
    values = ok.trials.sort_values("seed", kind="stable")[metric].to_numpy(dtype=float)
    path = confidence_sequence(values, level=level, bounds=bounds, method=method)
    fixed = fixed_t_interval_path(values, level)
    report.value("confidence_sequence", path.assign(t_lower=fixed["lower"], t_upper=fixed["upper"]))
    report.figure(
        "confidence_sequence",
        lambda ax: plot_confidence_sequence(
            ok.trials, metric=metric, level=level, bounds=bounds, method=method, halfwidth=rec.get("halfwidth"), ax=ax
        ),
    )


def _grid_sections(report: _Report, study: StudyTables) -> None:
    """Grid statistics; they take every trial and count only the ok ones themselves."""
    trials, meta = study.trials, study.meta
    params, metric = list(meta["params"]), meta["metric"]
    mode = meta.get("mode", default_mode(metric))
    report.heading("Grid ranking")
    summary = grid.grid_summary(trials, params, metric, mode)
    report.text(
        "distinguishable_from_next: Welch test against the next configuration at alpha 0.05 "
        "(NA: one seed per point, seed noise and hyperparameters cannot be told apart). "
        f"ci_low/ci_high: {100 * stats.CONFIDENCE:g} % interval of each configuration's mean over its seeds, "
        "made as ci_method says (t: Student t-interval; NA with one seed)."
    )
    report.table("grid_summary", summary)
    report.figure(
        "grid_summary",
        lambda ax: plots.plot_grid_summary(summary, ax=ax),
        size=(7, 1.5 + 0.35 * len(summary)),
    )
    if len(params) >= 2:
        report.figure(
            "grid_heatmap",
            lambda ax: plots.plot_grid_heatmap(trials, x=params[0], y=params[1], metric=metric, ax=ax),
        )
    report.heading("Hyperparameters against seeds")
    try:
        report.table("variance_components", pd.DataFrame([grid.variance_components(trials, params, metric)]))
        report.table("param_anova", grid.param_anova(trials, params, metric), index="term")
    except ValueError as exc:
        report.text(f"Variance decomposition not possible: {exc}")
    configs = summary.dropna(subset=["mean"])
    _expected_max_section(report, configs, "mean", f"configurations (their mean {metric})", mode)


def _factorial_section(report: _Report, study: StudyTables) -> None:
    """A crossed grid (two varied factors): does the ranking of one survive a change of the other?"""
    meta = study.meta
    try:
        result = factorial.factorial_analysis(study.trials, params=meta["params"], metric=meta["metric"], mode=meta.get("mode"))
    except ValueError:  # not two crossed factors: the grid sections say everything
        return
    if result.cells["n"].max() < 2:  # one seed per point: a grid search, not a crossed study
        return
    arm, condition = result.factors
    report.heading(f"Crossed study: {arm} x {condition}")
    report.value("factorial", result.record())
    report.text(f"Verdict: {result.sentence}.")
    report.text(result.interaction_line() + ".")
    report.text(
        "P: the share of bootstrap resamples of the seeds "
        f"within each cell in which the arm is the best under its {condition} (with few seeds a bootstrap is overconfident). "
        f"ci_low/ci_high: {100 * stats.CONFIDENCE:g} % t-interval of each cell's mean over its seeds."
    )
    report.table("factorial_cells", result.cells)
    if result.anova is not None:
        report.table("factorial_anova", result.anova, index="term")
    report.figure("interaction", lambda ax: plots.plot_interaction(result.cells, x=condition, hue=arm, ax=ax))
    report.text(
        "Every pair of cells: Welch t-test, p_holm: Holm's correction over all pairs (family-wise error 0.05). "
        f"The best cell's confidence set (no other cell significantly better): {', '.join(result.best)}."
    )
    report.table("factorial_pairs", result.pairs)


# --------------------------------------------------------------------------- the report builder


@dataclass
class _Report:
    """Collects headings, texts, tables and figures; renders them to md, html and json."""

    out_dir: Path
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(("heading", text))

    def text(self, text: str) -> None:
        self.blocks.append(("text", text))

    def value(self, key: str, value: Any) -> None:
        """Record ``value`` in summary.json only."""
        self.summary[key] = value

    def table(
        self, key: str, table: pd.DataFrame, *, display: pd.DataFrame | None = None, index: str | None = None
    ) -> None:
        """Record ``table`` in summary.json and show ``display`` (default: the table) in md/html."""
        if index is not None:
            table = table.rename_axis(index).reset_index()
        self.summary[key] = table
        shown = display if display is not None else table
        self.blocks.append(("table", shown.apply(lambda column: column.map(_number))))

    def figure(
        self, name: str, draw: Callable[[Axes], object], size: tuple[float, float] = (6.4, 4.2)
    ) -> None:
        """Draw a figure on a fresh Figure and save it as PNG and SVG; a ValueError skips it with a note."""
        fig = Figure(figsize=size, layout="constrained")
        try:
            draw(fig.subplots())
        except ValueError as exc:
            self.text(f"Figure {name} skipped: {exc}")
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for fmt in FIGURE_FORMATS:
            fig.savefig(self._file(f"{name}.{fmt}"), dpi=120)
        self.figures.append(name)
        self.blocks.append(("figure", name))

    def write(self) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        summary = {"title": self.title, **self.summary, "figures": self.figures}
        self._file("summary.json").write_text(json.dumps(jsonable(summary), indent=2), encoding="utf-8")
        self._file("summary.md").write_text(self._markdown(), encoding="utf-8")
        self._file("index.html").write_text(self._html(), encoding="utf-8")
        return self.out_dir

    def _file(self, name: str) -> Path:
        """A file of the report to write: a symbolic link there is removed first, so the report
        never writes through one to wherever it points."""
        path = self.out_dir / name
        if path.is_symlink():
            path.unlink()
        return path

    def _markdown(self) -> str:
        render = {
            "heading": lambda t: f"## {t}",
            "text": lambda t: t,
            "table": _markdown_table,
            "figure": lambda n: f"![{n}]({n}.png)",
        }
        return "\n\n".join([f"# {self.title}", *(render[kind](x) for kind, x in self.blocks)]) + "\n"

    def _html(self) -> str:
        render = {
            "heading": lambda t: f"<h2>{html.escape(t)}</h2>",
            "text": lambda t: f"<p>{html.escape(t)}</p>",
            "table": lambda t: t.to_html(index=False, escape=True, border=0),
            "figure": lambda n: (
                f'<figure><img src="{html.escape(n)}.png" alt="{html.escape(n)}">'
                f'<figcaption>{html.escape(n)} (<a href="{html.escape(n)}.svg">svg</a>)</figcaption></figure>'
            ),
        }
        body = "\n".join(render[kind](x) for kind, x in self.blocks)
        title = html.escape(self.title)
        return (
            f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
            f"<style>{_CSS}</style>\n</head>\n<body>\n<h1>{title}</h1>\n{body}\n</body>\n</html>\n"
        )


_CSS = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
    "td,th{border:1px solid #ccc;padding:0.2em 0.5em;text-align:right;overflow-wrap:anywhere}"
    "table{max-width:100%}"
    "img{max-width:100%}figure{margin:1em 0}"
)


def _number(value: Any) -> str:
    """A table cell as text: 4 significant digits, NA for anything missing."""
    if isinstance(value, (float, np.floating)):
        return "NA" if math.isnan(value) else f"{value:.4g}"
    return "NA" if value is None or value is pd.NA else str(value)


def _markdown_table(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    rows = [
        "| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |"
        for row in table.itertuples(index=False)
    ]
    return "\n".join([header, rule, *rows])


