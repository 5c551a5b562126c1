"""Sequential seed studies by simulation: how many seeds the anytime interval needs, and its coverage.

For sigma in {0.5, 1.0, 1.5} (the embedded default's val_top1 has sigma ~ 1.0 around a
mean ~ 96), the seeds the t-mixture confidence sequence needs to reach a half-width of
0.25 and 0.3 when looked at after every seed (mean, median and 90th percentile of the
stopping n over simulated studies) against the n a t-interval fixed in advance needs, and
the least n of the betting CS on [0, 100] (reached only by data without spread). Then the
coverage when looked at after every seed: the confidence sequence against the peeked-at
t-interval, on normal and on skewed (Beta, near a ceiling) outcomes. Last, the
seeds-needed table at sigma = 1 (half-widths, and a difference delta with power 0.8 for
independent and paired arms). No timings: these are counts, the same on any machine.

    python benchmarks/sequential_sim.py            # 4,000 studies per cell
    python benchmarks/sequential_sim.py --quick    # 500
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit_result, print_table  # noqa: E402

from analysis import sequential as sq  # noqa: E402

SIGMAS = (0.5, 1.0, 1.5)
HALFWIDTHS = (0.25, 0.3)
MEAN = 96.0


def seeds_rows(n_sim: int) -> list[dict]:
    rows = []
    for halfwidth in HALFWIDTHS:
        betting = sq.min_seeds(halfwidth, method="betting")
        for sigma in SIGMAS:
            fixed = sq._fixed_halfwidth_n(sigma, halfwidth, 0.95)
            stop = sq.expected_stopping_n(sigma, halfwidth=halfwidth, n_sim=n_sim, max_n=8 * fixed + 200)
            rows.append(
                {
                    "halfwidth": halfwidth,
                    "sigma": sigma,
                    "n_fixed_t": fixed,
                    "cs_mean": round(stop["mean"], 1),
                    "cs_median": stop["median"],
                    "cs_q90": stop["q90"],
                    "cs_over_fixed": round(stop["mean"] / fixed, 2),
                    "cs_reached": stop["reached"],
                    "betting_0_100_least_n": betting,
                }
            )
    return rows


def coverage_rows(n_sim: int, n: int = 100) -> list[dict]:
    rng = np.random.default_rng(0)
    cases = {
        "normal sigma 1": (MEAN, rng.normal(MEAN, 1.0, (n_sim, n))),
        "Beta, mean 97.5, sd 1.0, skew -0.78": (97.5, 100 * rng.beta(236.7, 6.07, (n_sim, n))),
        "Beta, mean 97.9, sd 1.4, skew -1.35": (100 * 95 / 97, 100 * rng.beta(95.0, 2.0, (n_sim, n))),
        "shifted exponential, sd 1, skew 2": (97.5, 98.5 - rng.exponential(1.0, (n_sim, n))),
    }
    rows = []
    for name, (mean, x) in cases.items():
        low, high = sq.confidence_bounds(x)
        t_low, t_high = sq.t_interval_bounds(x)
        inside = (low <= mean) & (mean <= high)
        t_inside = (t_low[:, 1:] <= mean) & (mean <= t_high[:, 1:])
        rows.append(
            {
                "outcomes": name,
                "studies": n_sim,
                "seeds": n,
                "cs_covers_every_n": round(float(inside.all(axis=1).mean()), 4),
                "t_covers_every_n": round(float(t_inside.all(axis=1).mean()), 4),
                "t_covers_at_n30": round(float(t_inside[:, 28].mean()), 4),
                "cs_halfwidth_n100": round(float(np.median((high - low)[:, -1] / 2)), 3),
                "t_halfwidth_n100": round(float(np.median((t_high - t_low)[:, -1] / 2)), 3),
            }
        )
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="500 simulated studies per cell")
    args = p.parse_args(argv)
    n_sim = 500 if args.quick else 4000
    seeds = seeds_rows(n_sim)
    print_table(seeds, title=f"Seeds to reach a half-width, level 0.95, t-mixture CS (prior_scale {sq.PRIOR_SCALE}), {n_sim} studies")
    coverage = coverage_rows(n_sim)
    print_table(coverage, title="Coverage when looked at after every seed (level 0.95)")
    plan = sq.seeds_needed_table(1.0, halfwidths=HALFWIDTHS, deltas=(0.25, 0.5, 1.0), n_sim=n_sim)
    plan = [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()} for row in plan.to_dict("records")]
    print_table(plan, title="seeds_needed_table(sigma=1.0): per arm, fixed n against the CS looked at after every seed")
    emit_result("sequential_sim", {"n_sim": n_sim, "seeds": seeds, "coverage": coverage, "plan": plan})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
