"""The cost of ``rsb-tune eval`` per evaluation setting against retraining per setting, on the
embedded default (A2 on digits), through the real CLI.

A setting (a test resolution and a crop ratio) asked of a trained study costs either a
training run per seed (the setting in the recipe: ``--set test_img_size=40``) or an evaluation
of the kept weights. This trains ``--n`` seeds of the default recipe with ``--executor local``,
then evaluates them twice with ``--executor local``: first at the training setting alone (one
setting), then at 4 test sizes x 3 crops (the 11 settings left: eval resumes), each on val and
v2 (as a training run evaluates both). It prints per trial and setting:

- retrain: a trial's training time (its ``run_time_s``, the epochs alone) and the ``seeds``
  command's wall time per trial (process start and data loading included);
- eval, marginal: (wall of the 11-setting command - wall of the 1-setting command) / 10 per
  trial: what one more setting costs (transform, forwards, the row written);
- eval, fixed: what an ``eval`` command costs besides (process start, imports, data loading, a
  trial's checkpoint and model), paid once per command and trial, whatever the settings;
- eval alone: the rows' ``eval_time_s`` (transform and forwards).

The ratio is retrain / eval per setting; the target is >= 20x. Load caveat: on a machine shared
with other jobs both sides slow down, not necessarily alike; read a loaded run for scale only.

    python benchmarks/eval_cost.py [--n 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit_result, print_table, run_cli  # noqa: E402

SIZES, CROPS, SPLITS = (24, 32, 40, 48), (0.875, 0.95, 1.0), ("val", "v2")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1, help="seeds (default 1)")
    parser.add_argument("--keep", help="storage to keep the study in (default: a temporary one)")
    args = parser.parse_args()
    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="rsb-eval-cost-") as tmp:
        storage = args.keep or tmp
        train = run_cli(["seeds", "--n", str(args.n), "--executor", "local", "--quiet", "--storage", storage, "--name", "cost"], sample=False)
        common = ["eval", "cost", "--executor", "local", "--quiet", "--storage", storage, "--split", *SPLITS]
        one = run_cli(common, sample=False)  # the training setting alone
        grid = run_cli([*common, "--test-size", *map(str, SIZES), "--crop-pct", *map(str, CROPS)], sample=False)  # the 11 left
        trials = pd.read_parquet(Path(storage) / "cost" / "trials.parquet")
        evals = pd.read_parquet(Path(storage) / "cost" / "evals.parquet")
    settings = len(SIZES) * len(CROPS)
    n = len(trials)
    assert len(evals) == n * settings * len(SPLITS), len(evals)
    train_s = float(trials["run_time_s"].mean())
    train_wall = train["wall_s"] / n
    marginal = (grid["wall_s"] - one["wall_s"]) / (settings - 2) / n
    fixed = one["wall_s"] / n - marginal
    eval_alone = float(evals.groupby(["trial_id", "test_img_size", "crop_pct"])["eval_time_s"].sum().mean())
    rows = [
        {"what": "retrain: a trial's epochs (run_time_s)", "seconds": train_s},
        {"what": "retrain: seeds command wall / trials", "seconds": train_wall},
        {"what": "eval per setting, marginal: (wall 11 settings - wall 1) / 10 / trials", "seconds": marginal},
        {"what": "eval per setting: transform + forwards on val and v2 (eval_time_s)", "seconds": eval_alone},
        {"what": "eval fixed cost per command and trial (start, imports, data, weights)", "seconds": fixed},
    ]
    print_table(rows, title=f"A2 on digits, {n} seed(s), {settings} settings (test sizes {SIZES} x crops {CROPS}) on val and v2")
    ratio, ratio_alone = train_wall / marginal, train_s / eval_alone
    whole = train_wall * settings / (fixed + settings * marginal)
    print(f"\neval is {ratio:.0f}x cheaper per setting than retraining (walls, marginal), {ratio_alone:.0f}x (training epochs against the evaluation alone); target >= 20x")
    print(f"the whole grid of {settings} settings, fixed cost included: {whole:.0f}x cheaper than {settings} trainings per seed")
    print("load caveat: measured on a machine shared with other jobs, both sides slowed; read for scale only")
    emit_result("eval_cost", {"seeds": n, "settings": settings, "train_run_time_s": train_s, "train_wall_per_trial_s": train_wall, "eval_marginal_per_setting_s": marginal, "eval_alone_per_setting_s": eval_alone, "eval_fixed_per_trial_s": fixed, "ratio": ratio, "ratio_alone": ratio_alone, "ratio_whole_grid": whole})
    return 0 if ratio >= 20 else 1


if __name__ == "__main__":
    sys.exit(main())
