"""A study's trained weights re-scored (``evals.parquet``, written by ``rsb-tune eval``): the
paper's evaluations at other settings, with the seed spread in every number.

- :func:`resolution_curve`: accuracy against the test resolution, mean and t-interval over the
  seeds at each size (Figure 4 of "ResNet strikes back", with intervals); :func:`plot_resolution_curve`;
- :func:`crop_table`: accuracy per centre-crop ratio (Table 9) with the paired difference to the
  training crop: the same weights scored twice, so the difference is taken per trial and its
  t-interval is over the trials' differences (much narrower than the seeds' spread);
- :func:`test_set_table`: val, v2, extra test sets and ReaL at the training setting, each with
  the noise floor of its size (:func:`analysis.stats.test_set_noise`: the binomial std, and
  Jordan (2023)'s test-set part of the seed variance from the per-example correctness).

Rows of ``evals`` (see :mod:`analysis.contract`'s ``EVAL_KEY``): ``trial_id``, ``test_set``,
``test_img_size``, ``crop_pct``, ``trained`` (the trial's own setting), ``top1``, ``top5``,
``loss``, ``n_examples``, ``correct`` (packed per-example correctness).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis._tables import require_columns
from analysis.contract import EVALS, unpack_correct
from analysis.stats import CONFIDENCE, mean_ci, test_set_noise
from analysis.study import _read_table

__all__ = ["load_evals", "resolution_curve", "crop_table", "test_set_table", "eval_correct", "plot_resolution_curve"]

_NEEDED = ("trial_id", "test_set", "test_img_size", "crop_pct", "trained", "top1")


def load_evals(study_dir: str | Path) -> pd.DataFrame | None:
    """``<study>/evals.parquet``, or None when the study was never evaluated; a file that cannot
    be read is a :class:`StudyError` naming it."""
    path = Path(study_dir) / EVALS
    return _read_table(path, _NEEDED) if path.is_file() else None


def _trained_setting(evals: pd.DataFrame) -> pd.DataFrame:
    """Per trial, its own (training) test size and crop, from its ``trained`` rows."""
    own = evals[evals["trained"].astype(bool)][["trial_id", "test_img_size", "crop_pct"]].drop_duplicates("trial_id")
    return own.rename(columns={"test_img_size": "own_size", "crop_pct": "own_crop"})


def _interval_row(values: np.ndarray, confidence: float) -> dict:
    ci = mean_ci(values, confidence)
    n = values.size
    return {
        "n": n,
        "mean": float(values.mean()) if n else np.nan,
        "std": float(values.std(ddof=1)) if n > 1 else np.nan,
        "ci_low": ci.low,
        "ci_high": ci.high,
    }


def resolution_curve(evals: pd.DataFrame, *, test_set: str = "val", metric: str = "top1", confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Accuracy against the test resolution on ``test_set``, one row per crop ratio and test
    size: ``n`` (trials), ``mean``, ``std`` over the seeds and the t-interval of the mean
    (``ci_low``/``ci_high``), and ``trained`` (every trial was trained at this setting)."""
    require_columns(evals, [*_NEEDED, metric], "evals")
    rows = evals[evals["test_set"] == test_set]
    if rows.empty:
        raise ValueError(f"evals has no rows of test set {test_set!r}; test sets: {', '.join(map(str, sorted(evals['test_set'].unique())))}")
    out = []
    for (crop, size), sub in rows.groupby(["crop_pct", "test_img_size"], sort=True):
        values = pd.to_numeric(sub[metric], errors="coerce").dropna().to_numpy(float)
        out.append({"test_set": test_set, "crop_pct": float(crop), "test_img_size": int(size), **_interval_row(values, confidence), "trained": bool(sub["trained"].all())})
    return pd.DataFrame(out)


def _paired(evals: pd.DataFrame, *, test_set: str, metric: str, vary: str, fixed: str) -> pd.DataFrame:
    """Rows of ``test_set`` at each trial's own ``fixed`` setting, with ``diff``: the metric
    minus the trial's own (trained) score."""
    rows = evals[evals["test_set"] == test_set].merge(_trained_setting(evals), on="trial_id")
    own_col = {"crop_pct": "own_crop", "test_img_size": "own_size"}
    rows = rows[np.isclose(rows[fixed].astype(float), rows[own_col[fixed]].astype(float))]
    base = rows[np.isclose(rows[vary].astype(float), rows[own_col[vary]].astype(float))][["trial_id", metric]].rename(columns={metric: "base"})
    rows = rows.merge(base, on="trial_id")
    return rows.assign(diff=rows[metric].astype(float) - rows["base"].astype(float))


def crop_table(evals: pd.DataFrame, *, test_set: str = "val", metric: str = "top1", confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Table 9: ``metric`` on ``test_set`` per centre-crop ratio at each trial's training test
    size: ``n``, ``mean``, ``std``, t-interval (``ci_low``/``ci_high``), and the paired
    difference to the training crop (``diff_mean``, ``diff_std``, ``diff_ci_low``/``diff_ci_high``:
    the t-interval of the mean of the per-trial differences; 0 at the training crop).
    ``trained``: the training crop. Trials without a row at their training setting are left out."""
    require_columns(evals, [*_NEEDED, metric], "evals")
    rows = _paired(evals, test_set=test_set, metric=metric, vary="crop_pct", fixed="test_img_size")
    if rows.empty:
        raise ValueError(f"evals has no {test_set!r} rows at the trials' training setting: evaluate at their own crop_pct and test_img_size too")
    out = []
    for crop, sub in rows.groupby("crop_pct", sort=True):
        value = _interval_row(sub[metric].astype(float).to_numpy(), confidence)
        diff = _interval_row(sub["diff"].to_numpy(float), confidence)
        out.append({
            "test_set": test_set, "crop_pct": float(crop), **value,
            "diff_mean": diff["mean"], "diff_std": diff["std"], "diff_ci_low": diff["ci_low"], "diff_ci_high": diff["ci_high"],
            "trained": bool(np.isclose(sub["crop_pct"].astype(float), sub["own_crop"].astype(float)).all()),
        })  # fmt: skip
    return pd.DataFrame(out)


def eval_correct(evals: pd.DataFrame, *, test_set: str, test_img_size: int | None = None, crop_pct: float | None = None) -> pd.DataFrame:
    """The trials x examples correctness of ``test_set`` at one setting (default: each trial's
    own), unpacked from ``correct``; index ``trial_id``."""
    require_columns(evals, [*_NEEDED, "correct", "n_examples"], "evals")
    rows = evals[evals["test_set"] == test_set]
    if test_img_size is None and crop_pct is None:
        rows = rows[rows["trained"].astype(bool)]
    else:
        rows = rows[(rows["test_img_size"] == test_img_size) & np.isclose(rows["crop_pct"].astype(float), float(crop_pct))]
    rows = rows.drop_duplicates("trial_id").sort_values("trial_id")
    matrix = [unpack_correct(c, int(n)) for c, n in zip(rows["correct"], rows["n_examples"], strict=True)]
    if len({len(m) for m in matrix}) > 1:
        raise ValueError(f"test set {test_set!r}: the trials' rows disagree on the number of examples")
    return pd.DataFrame(np.vstack(matrix) if matrix else np.zeros((0, 0), dtype=bool), index=pd.Index(rows["trial_id"], name="trial_id"))


def test_set_table(evals: pd.DataFrame, *, metric: str = "top1", confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Each test set at the trials' training setting: ``n`` trials, ``n_examples``, ``mean``,
    ``std`` over the seeds, t-interval, and its noise floor (:func:`analysis.stats.test_set_noise`):
    ``binomial_std`` (the std one fixed model shows on re-drawn test sets of this size),
    ``observed_over_binomial``, and from the per-example correctness ``test_set_std`` and
    ``distribution_std`` (Jordan 2023)."""
    require_columns(evals, [*_NEEDED, metric, "n_examples"], "evals")
    own = evals[evals["trained"].astype(bool)]
    if own.empty:
        raise ValueError("evals has no row at a trial's training setting: evaluate at their own crop_pct and test_img_size too")
    out = []
    for name, sub in own.groupby("test_set", sort=False):
        values = sub[metric].astype(float).to_numpy()
        frame = pd.DataFrame({"x_top1": values, "n_x": sub["n_examples"].to_numpy(), "status": "ok"})
        predictions = eval_correct(evals, test_set=str(name)) if "correct" in sub.columns and metric == "top1" else None
        noise = test_set_noise(frame, "x_top1", predictions if predictions is not None and len(predictions) > 1 else None)
        out.append({
            "test_set": name, **_interval_row(values, confidence), "n_examples": int(noise["n_examples"]),
            "binomial_std": noise["binomial_std"], "observed_over_binomial": noise["observed_over_binomial"],
            "test_set_std": noise.get("test_set_std", np.nan), "distribution_std": noise.get("distribution_std", np.nan),
        })  # fmt: skip
    order = {"val": 0, "v2": 1, "real": 2}
    return pd.DataFrame(out).sort_values("test_set", key=lambda s: s.map(lambda v: (order.get(v, 3), v)), kind="stable").reset_index(drop=True)


test_set_table.__test__ = False  # not a pytest test despite the name


def plot_resolution_curve(curve: pd.DataFrame, *, x: str = "test_img_size", y: str = "mean", hue: str = "crop_pct", ax=None):
    """Figure 4: ``y`` against ``x`` (a :func:`resolution_curve`), one line per ``hue`` with its
    interval (``ci_low``/``ci_high``) as a band; the training setting marked. Returns the Axes."""
    require_columns(curve, [x, y, hue, "ci_low", "ci_high", "trained"], "curve")
    if curve.empty:
        raise ValueError("curve is empty")
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure().subplots()
    for value, sub in curve.groupby(hue, sort=True):
        sub = sub.sort_values(x)
        line = ax.plot(sub[x], sub[y], marker="o", label=f"{hue} {value:g}")[0]
        ax.fill_between(sub[x], sub["ci_low"].astype(float), sub["ci_high"].astype(float), color=line.get_color(), alpha=0.2, linewidth=0)
        trained = sub[sub["trained"]]
        if not trained.empty:
            ax.plot(trained[x], trained[y], marker="*", markersize=14, linestyle="none", color=line.get_color())
    test_set = curve["test_set"].iloc[0] if "test_set" in curve.columns else ""
    ax.set_xlabel("test resolution (px)")
    ax.set_ylabel(f"{test_set} top-1 (%), mean and 95 % t-interval over seeds".strip())
    ax.set_title("accuracy against test resolution (star: the training setting)")
    ax.legend(fontsize="small")
    return ax
