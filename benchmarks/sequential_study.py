"""Sequential seed studies on the embedded default, through the real CLI.

1. ``rsb-tune seeds --until "halfwidth<=0.3"`` (cap ``--cap``) against a fixed ``--n-fixed``-seed
   study of the same recipe: seeds used, wall time of each, and whether the fixed study's mean
   lies inside the sequential study's anytime interval.
2. ``rsb-tune ab --recipe A2 --vs-recipe A3`` (cap ``--cap``): seeds until decided, the verdict,
   the difference a - b and its anytime interval, wall time.

    python benchmarks/sequential_study.py                 # A2, 15 epochs, fixed 100 seeds, cap 200: hours on 2 cores
    python benchmarks/sequential_study.py --smoke         # cap 12, 1 epoch, fixed 12 seeds: shows it runs
    python benchmarks/sequential_study.py --fixed-study DIR   # reuse a finished fixed-n study (e.g. seed_study.py --keep)
    python benchmarks/sequential_study.py --fixed-prefix --skip-paired   # the fixed study = the sequential one's first 100 seeds

Wall times are of the whole CLI process (Ray's start included) and depend on what else the
machine runs; compare them only within one run of this script.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit_result, print_table, run_cli, temp_storage  # noqa: E402


def _study_args(args, epochs) -> list[str]:
    out = ["--quiet", "--cpus-per-trial", f"{args.cpus_per_trial:g}"]
    if epochs is not None:
        out += ["--epochs", str(epochs)]
    for item in args.set:
        out += ["--set", item]
    return out


def _stopping(storage: Path, name: str) -> dict:
    import yaml

    return yaml.safe_load((storage / name / "study.yaml").read_text())["stopping"]


def _trials(path: Path):
    import pandas as pd

    return pd.read_parquet(path / "trials.parquet")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default="A2")
    p.add_argument("--vs-recipe", default="A3")
    p.add_argument("--until", default="halfwidth<=0.3")
    p.add_argument("--cap", type=int, default=200, help="cap of the sequential and of the paired study (default 200)")
    p.add_argument("--n-fixed", type=int, default=100, help="seeds of the fixed-n study (default 100)")
    fixed = p.add_mutually_exclusive_group()
    fixed.add_argument("--fixed-study", type=Path, help="a finished fixed-n study directory to compare with (skips running it)")
    fixed.add_argument("--fixed-prefix", action="store_true",
                   help="take the fixed-n study as the sequential study's first --n-fixed seeds instead of running it: the same seeds and configs give "
                        "the same values on CPU (checked in RESULTS.md 9); needs a sequential study that ran at least that many seeds")  # fmt: skip
    p.add_argument("--epochs", type=int, help="epochs (default: the recipe's, scaled by the profile: 15 for A2)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every study")
    p.add_argument("--smoke", action="store_true", help="cap 12, 1 epoch, fixed 12 seeds")
    p.add_argument("--skip-paired", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the studies' directory")
    args = p.parse_args(argv)
    cap, n_fixed, epochs = (12, 12, 1) if args.smoke else (args.cap, args.n_fixed, args.epochs)
    common = _study_args(args, epochs)
    rows, result = [], {"conditions": {"recipe": args.recipe, "vs_recipe": args.vs_recipe, "until": args.until, "cap": cap, "n_fixed": n_fixed, "epochs": epochs or "recipe x profile"}}
    with temp_storage("rsb-seq-", keep=args.keep) as storage:
        run = run_cli(["seeds", "--n", str(cap), "--recipe", args.recipe, "--until", args.until, "--storage", str(storage), "--name", "until", *common], sample=False, log=storage / "until.log")
        rec = _stopping(storage, "until")
        seq = _trials(storage / "until")
        if args.fixed_prefix:
            fixed, fixed_wall, label = seq.sort_values("seed").head(n_fixed), None, f"first {n_fixed} seeds of the sequential study"
            if len(fixed) < n_fixed:
                raise SystemExit(f"--fixed-prefix: the sequential study ran {len(seq)} seeds, fewer than --n-fixed {n_fixed}")
        else:
            if args.fixed_study:
                fixed_dir, fixed_wall = args.fixed_study, None
            else:
                fixed_run = run_cli(["seeds", "--n", str(n_fixed), "--recipe", args.recipe, "--storage", str(storage), "--name", "fixed", *common], sample=False, log=storage / "fixed.log")
                fixed_dir, fixed_wall = storage / "fixed", fixed_run["wall_s"]
            fixed, label = _trials(fixed_dir), f"fixed n={n_fixed}"
        fixed_ok = fixed[fixed["status"] == "ok"]["val_top1"]
        rows.append({"study": label, "seeds_run": len(fixed), "wall_min": None if fixed_wall is None else round(fixed_wall / 60, 2),
                     "mean": round(float(fixed_ok.mean()), 3), "interval": "-", "reason": "fixed n"})  # fmt: skip
        inside = rec["lower"] <= float(fixed_ok.mean()) <= rec["upper"]
        rows.append({"study": f"--until {args.until}", "seeds_run": len(seq), "wall_min": round(run["wall_s"] / 60, 2), "mean": round(rec["mean"], 3),
                     "interval": f"[{rec['lower']:.3f}, {rec['upper']:.3f}] at n={rec['n_seeds']}", "reason": rec["reason"]})  # fmt: skip
        result["sequential"] = {"seeds_run": len(seq), "n_at_decision": rec["n_seeds"], "reason": rec["reason"], "mean": rec["mean"], "lower": rec["lower"], "upper": rec["upper"],
                                "wall_s": run["wall_s"], "fixed_mean": float(fixed_ok.mean()), "fixed_n": int(len(fixed_ok)), "fixed_wall_s": fixed_wall, "fixed_mean_inside": inside}  # fmt: skip
        print_table(rows, title=f"sequential ({args.until}, cap {cap}) against a fixed-n study of {args.recipe}; fixed mean inside the anytime interval: {inside}")

        if not args.skip_paired:
            run = run_cli(["ab", "--n", str(cap), "--recipe", args.recipe, "--vs-recipe", args.vs_recipe, "--storage", str(storage), "--name", "ab", *common], sample=False, log=storage / "ab.log")
            rec = _stopping(storage, "ab-a")
            paired = {"seeds_run": len(_trials(storage / "ab-a")), "n_at_decision": rec["n_seeds"], "verdict": rec["reason"], "mean_diff": rec["mean"],
                      "lower": rec["lower"], "upper": rec["upper"], "wall_s": run["wall_s"]}  # fmt: skip
            result["paired"] = paired
            print_table([{**paired, "wall_min": round(run["wall_s"] / 60, 2)}], title=f"paired {args.recipe} (a) vs {args.vs_recipe} (b) on the same seeds: mean(a - b) and its anytime interval")
        emit_result("sequential_study", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
