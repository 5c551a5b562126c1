"""The cost of ``rsb-tune eval`` per evaluation setting against retraining per setting, on the
embedded default (A2 on digits), through the real CLI.

A setting (a test resolution and a crop ratio) asked of a trained study costs either a
training run per seed (the setting in the recipe: ``--set test_img_size=40``) or an evaluation
of the kept weights. This trains ``--n`` seeds of the default recipe with ``--executor local``,
then evaluates them at 4 test sizes x 3 crops on val and v2 (24 rows per trial) with
``--executor local``, and prints both per setting and per trial:

- retrain per setting: a trial's training time (its ``run_time_s``, the epochs alone) and the
  ``seeds`` command's wall time per trial (process start and data loading included);
- eval per setting: the ``eval`` command's wall time over trials x settings (process start,
  data loading, each trial's checkpoint load and model build included), and the evaluation
  alone (the rows' ``eval_time_s``: transform and forwards).

The ratio is retrain / eval per setting; the target is >= 20x. Load caveat: on a machine shared
with other jobs both sides slow down, not necessarily alike; read a loaded run for scale only.

    python benchmarks/eval_cost.py [--n 2] [--keep DIR]
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
    parser.add_argument("--n", type=int, default=2, help="seeds (default 2)")
    parser.add_argument("--keep", help="storage to keep the study in (default: a temporary one)")
    args = parser.parse_args()
    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="rsb-eval-cost-") as tmp:
        storage = args.keep or tmp
        train = run_cli(["seeds", "--n", str(args.n), "--executor", "local", "--quiet", "--storage", storage, "--name", "cost"], sample=False)
        grid = ["--test-size", *map(str, SIZES), "--crop-pct", *map(str, CROPS), "--split", *SPLITS]
        evaluate = run_cli(["eval", "cost", "--executor", "local", "--quiet", "--storage", storage, *grid], sample=False)
        trials = pd.read_parquet(Path(storage) / "cost" / "trials.parquet")
        evals = pd.read_parquet(Path(storage) / "cost" / "evals.parquet")
    settings = len(SIZES) * len(CROPS)  # each on val and v2, as a training run evaluates both
    n = len(trials)
    train_s = float(trials["run_time_s"].mean())
    train_wall = train["wall_s"] / n
    eval_wall = evaluate["wall_s"] / (n * settings)
    eval_alone = float(evals.groupby(["trial_id", "test_img_size", "crop_pct"])["eval_time_s"].sum().mean())
    rows = [
        {"what": "retrain per setting: a trial's epochs (run_time_s)", "seconds": train_s},
        {"what": "retrain per setting: seeds command wall / trials", "seconds": train_wall},
        {"what": "eval per setting: eval command wall / (trials x settings)", "seconds": eval_wall},
        {"what": "eval per setting: transform + forwards on val and v2 (eval_time_s)", "seconds": eval_alone},
    ]
    print_table(rows, title=f"A2 on digits, {n} seeds, {settings} settings (test sizes {SIZES} x crops {CROPS}) on val and v2")
    ratio_wall, ratio_alone = train_wall / eval_wall, train_s / eval_alone
    print(f"\neval is {ratio_wall:.0f}x cheaper per setting than retraining (command walls), {ratio_alone:.0f}x (training epochs against the evaluation alone); target >= 20x")
    print("load caveat: measured on a machine shared with other jobs, both sides slowed; read for scale only")
    emit_result("eval_cost", {"seeds": n, "settings": settings, "train_run_time_s": train_s, "train_wall_per_trial_s": train_wall, "eval_wall_per_setting_s": eval_wall, "eval_alone_per_setting_s": eval_alone, "ratio_wall": ratio_wall, "ratio_alone": ratio_alone})
    return 0 if ratio_wall >= 20 else 1


if __name__ == "__main__":
    sys.exit(main())
