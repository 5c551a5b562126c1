"""The README's seed study, ``rsb-tune seeds --n 100 --recipe A2``, on the embedded default.

Reports the wall time (process spawn to exit), the peak memory of the whole process tree (the
driver, Ray's services and the trial actors, sampled from /proc every half second: RSS, and
PSS, which counts pages shared between processes once) and of one trial actor, the study's
efficiency (see ``study_overhead.py``), and the accuracy the seeds reach: val/v2 top-1 mean,
standard deviation, min and max over the seeds, as the paper reports them.

    python benchmarks/seed_study.py            # 100 seeds x 15 epochs: ~8 minutes on 2 cores
    python benchmarks/seed_study.py --quick    # 6 seeds x 3 epochs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit_result, print_table, run_seed_study  # noqa: E402
from study_overhead import add_study_options, print_runs, study_kwargs  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100, help="seeds (default 100)")
    p.add_argument("--epochs", type=int, help="epochs (default: the recipe's, scaled by the profile: 15 for A2)")
    p.add_argument("--quick", action="store_true", help="6 seeds x 3 epochs")
    add_study_options(p)
    args = p.parse_args(argv)
    n, epochs = (6, 3) if args.quick else (args.n, args.epochs)
    row = run_seed_study(n=n, epochs=epochs, tag="seeds", **study_kwargs(args))
    t = row["tree"]
    summary = {
        "n_trials": row["n_trials"],
        "n_ok": row["n_ok"],
        "epochs": row["epochs_per_trial"],
        "wall_min": round(row["wall_s"] / 60, 2),
        "efficiency": row["efficiency"],
        "trial_compute_s_median": row["trial_compute_s_median"],
        "peak_tree_rss_gb": round(t["peak_tree_rss_mb"] / 1024, 2),
        "peak_tree_pss_gb": round(t["peak_tree_pss_mb"] / 1024, 2),
        "peak_trial_rss_gb": round((t.get("peak_trial_rss_mb") or 0) / 1024, 2),
        "peak_trial_pss_gb": round((t.get("peak_trial_pss_mb") or 0) / 1024, 2),
        "peak_driver_rss_gb": round(t["peak_driver_rss_mb"] / 1024, 2),
        "val_top1": f"{row.get('val_top1_mean', float('nan')):.2f} ± {row.get('val_top1_std') or float('nan'):.2f}",
        "val_top1_min_max": f"{row.get('val_top1_min', float('nan')):.2f} / {row.get('val_top1_max', float('nan')):.2f}",
        "v2_top1": f"{row.get('v2_top1_mean', float('nan')):.2f} ± {row.get('v2_top1_std') or float('nan'):.2f}",
        "v2_top1_min_max": f"{row.get('v2_top1_min', float('nan')):.2f} / {row.get('v2_top1_max', float('nan')):.2f}",
    }
    print_runs([row])
    print_table([summary], title="seed study: wall time, peak memory, accuracy over the seeds (mean ± std)")
    emit_result("seed_study", {"summary": summary, "run": row})
    return 0


if __name__ == "__main__":
    sys.exit(main())
