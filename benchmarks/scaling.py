"""How a seed study's wall time grows with the number of seeds and with the epochs.

Runs ``rsb-tune seeds`` through the CLI for N in (10, 20, 50) seeds at the recipe's epochs, and
for E in (5, 10, 20) epochs at 10 seeds, then fits wall = a + b * N (and a + b * E) by least
squares. A linear fit with a small intercept ``a`` (the fixed cost: start-up and shut-down) and
a slope ``b`` close to the ideal (one trial's compute / slots per seed) says nothing in the
study grows faster than its trials. The per-point efficiency wall / (compute / slots) is shown
too.

    python benchmarks/scaling.py           # ~12 minutes on 2 cores
    python benchmarks/scaling.py --quick   # N in (2, 4, 6) x 3 epochs; E in (1, 2, 4) at 2 seeds
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit_result, fit_line, print_table, run_seed_study  # noqa: E402
from study_overhead import add_study_options, study_kwargs  # noqa: E402

COLUMNS = ["axis", "n_trials", "epochs_per_trial", "wall_s", "compute_s", "ideal_wall_s", "efficiency", "startup_s", "tail_s", "foreign_cpu_s"]


def sweep(axis: str, points, fixed, args) -> list[dict]:
    rows = []
    for x in points:
        n, epochs = (x, fixed) if axis == "seeds" else (fixed, x)
        row = run_seed_study(n=n, epochs=epochs, tag=f"{axis}={x}", trace=False, **study_kwargs(args))
        row["axis"], row["x"] = axis, x
        row["foreign_cpu_s"] = row["tree"].get("foreign_cpu_s")
        rows.append(row)
        print(f"{axis}={x}: wall {row['wall_s']:.1f} s, efficiency {row['efficiency']:.3f}", file=sys.stderr, flush=True)
    return rows


def describe(rows, axis: str) -> dict:
    xs = [r["x"] for r in rows]
    fit = fit_line(xs, [r["wall_s"] for r in rows])
    ideal = fit_line(xs, [r["ideal_wall_s"] for r in rows])
    return {
        "axis": axis,
        "points": xs,
        "intercept_s": round(fit["intercept"], 2),
        "slope_s": round(fit["slope"], 3),
        "ideal_slope_s": round(ideal["slope"], 3),
        "slope_over_ideal": round(fit["slope"] / ideal["slope"], 3) if ideal["slope"] else None,
        "r2": round(fit["r2"], 5),
        "max_rel_residual": round(fit["max_rel_residual"], 4),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[10, 20, 50])
    p.add_argument("--epochs", type=int, nargs="+", default=[5, 10, 20])
    p.add_argument("--seeds-epochs", type=int, help="epochs of the seed sweep (default: the recipe's)")
    p.add_argument("--epochs-seeds", type=int, default=10, help="seeds of the epoch sweep (default 10)")
    p.add_argument("--quick", action="store_true")
    add_study_options(p)
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.seeds_epochs, args.epochs_seeds = [2, 4, 6], [1, 2, 4], 3, 2
    by_seeds = sweep("seeds", args.seeds, args.seeds_epochs, args)
    by_epochs = sweep("epochs", args.epochs, args.epochs_seeds, args)
    rows = by_seeds + by_epochs
    print_table(rows, COLUMNS, title="wall time by number of seeds and by epochs")
    fits = [describe(by_seeds, "seeds"), describe(by_epochs, "epochs")]
    print_table(fits, title="least-squares fit wall = intercept + slope * x (ideal slope: compute / slots per unit)")
    emit_result("scaling", {"fits": fits, "runs": [{k: v for k, v in r.items() if k in COLUMNS or k in ("x", "per_epoch_overhead_s", "between_trials_s", "epoch_time_s_median")} for r in rows]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
