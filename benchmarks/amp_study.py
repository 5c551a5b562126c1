"""What bf16 autocast does to the README's seed study: the same seeds trained in fp32 and in bf16.

Runs ``rsb-tune seeds --n N --recipe A2`` twice through the CLI, ``--set amp=off`` (fp32) and
``--set amp=bf16``, on the same seeds, and compares the final val top-1 of the two arms:

- the difference of means bf16 - fp32 with its Welch t interval (the arms as independent
  samples: rounding makes a seed's two runs part ways within a few updates) and, beside it, the
  paired t interval over the seeds both arms finished;
- the ratio of standard deviations bf16 / fp32 with its F interval (exact for normal seeds);
- each arm's wall time, so the precision's cost and its effect on the results are read together.

An interval of the difference that holds 0 and one of the ratio that holds 1 say the
distribution did not move detectably at this n: the check behind ``amp: auto`` taking bf16 on
CPUs with bf16 matrix units (AMX, AVX-512 BF16); benchmarks/RESULTS.md section 14c has its run.

    python benchmarks/amp_study.py                  # 100 seeds x 15 epochs each arm: ~15 min on 2 cores
    python benchmarks/amp_study.py --n 10 --epochs 2    # a check that it runs
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's analysis

from _common import emit_result, print_table, run_seed_study  # noqa: E402

ARMS = {"fp32": "amp=off", "bf16": "amp=bf16"}


def compare_arms(fp32, bf16, confidence: float = 0.95) -> dict:
    """bf16 against fp32 over their seeds: ``fp32`` and ``bf16`` map seed -> final value."""
    import numpy as np
    from scipy import stats as st

    from analysis.stats import compare

    x, y = np.array(list(bf16.values()), float), np.array(list(fp32.values()), float)
    out = compare(x, y, confidence=confidence)
    both = sorted(set(fp32) & set(bf16))
    d = np.array([bf16[s] - fp32[s] for s in both])
    if d.size > 1:
        half = st.t.ppf(0.5 + confidence / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
        paired = (float(d.mean() - half), float(d.mean() + half))
    else:
        paired = (math.nan, math.nan)
    ratio = out["std_a"] / out["std_b"]
    lo_f = st.f.ppf(0.5 + confidence / 2, x.size - 1, y.size - 1)
    hi_f = st.f.ppf(0.5 - confidence / 2, x.size - 1, y.size - 1)
    return {
        "n_fp32": int(y.size), "n_bf16": int(x.size), "n_paired": len(both),
        "mean_fp32": out["mean_b"], "mean_bf16": out["mean_a"], "std_fp32": out["std_b"], "std_bf16": out["std_a"],
        "diff_means": out["delta"], "diff_ci_welch": (out["delta_ci_low"], out["delta_ci_high"]), "diff_ci_paired": paired,
        "std_ratio": ratio, "std_ratio_ci": (ratio / math.sqrt(lo_f), ratio / math.sqrt(hi_f)), "confidence": confidence,
    }  # fmt: skip


def finals(study_dir: str, metric: str) -> dict[int, float]:
    """seed -> the final ``metric`` of each trial that finished ok."""
    from analysis.study import load_study

    t = load_study(study_dir).select().trials
    return {int(s): float(v) for s, v in zip(t["seed"], t[metric])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100, help="seeds per arm (default 100)")
    p.add_argument("--epochs", type=int, help="epochs (default: the recipe's, scaled by the profile: 15 for A2)")
    p.add_argument("--recipe", default="A2")
    p.add_argument("--metric", default="val_top1")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--keep", metavar="DIR", help="move the two studies (amp-fp32, amp-bf16) into this storage instead of deleting them (to eval or report them)")
    args = p.parse_args(argv)
    rows, values = [], {}
    for arm, item in ARMS.items():
        row = run_seed_study(n=args.n, recipe=args.recipe, epochs=args.epochs, sets=[item], cpus_per_trial=args.cpus_per_trial, keep=True, trace=False, tag=arm)
        try:
            values[arm] = finals(row["study_dir"], args.metric)
            if args.keep:
                Path(args.keep).mkdir(parents=True, exist_ok=True)
                shutil.move(row["study_dir"], Path(args.keep) / f"amp-{arm}")
        finally:
            shutil.rmtree(row["tmp_dir"], ignore_errors=True)
        rows.append({"arm": arm, "set": item, "n_ok": len(values[arm]), "wall_s": round(row["wall_s"], 1)})
    res = compare_arms(values["fp32"], values["bf16"])
    for r in rows:
        r["mean"], r["std"] = round(res[f"mean_{r['arm']}"], 3), round(res[f"std_{r['arm']}"], 3)
    print_table(rows, title=f"the seed study in fp32 and in bf16 ({args.n} seeds, recipe {args.recipe}, {args.metric})")

    def ci(pair):
        return f"[{pair[0]:+.3f}, {pair[1]:+.3f}]"

    summary = {
        "diff_means_bf16_minus_fp32": round(res["diff_means"], 3), "welch_95ci": ci(res["diff_ci_welch"]), "paired_95ci": ci(res["diff_ci_paired"]),
        "std_ratio_bf16_over_fp32": round(res["std_ratio"], 3), "f_95ci": f"[{res['std_ratio_ci'][0]:.3f}, {res['std_ratio_ci'][1]:.3f}]",
        "wall_ratio_bf16_over_fp32": round(rows[1]["wall_s"] / rows[0]["wall_s"], 3),
    }  # fmt: skip
    print_table([summary], title="bf16 against fp32: difference of means, ratio of stds (95 % intervals), wall")
    emit_result("amp_study", {"args": vars(args), "arms": rows, "comparison": res, "values": {a: {str(s): v for s, v in d.items()} for a, d in values.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
