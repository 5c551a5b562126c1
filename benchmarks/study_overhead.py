"""What a seed study pays beyond its trials' own compute, through the real CLI.

Runs ``rsb-tune seeds --n N --recipe A2 --storage <tmp> --quiet`` in a subprocess and reports:

- ``wall_s``: process spawn to exit;
- ``compute_s``: the sum of every epoch's in-trial time (``epoch_time_s`` in epochs.parquet:
  train + eval of the epoch, measured inside the trial);
- ``slots``: trials at once (CPUs / CPUs per trial, here 2);
- ``efficiency`` = wall / (compute / slots): 1.0 is a study with no overhead at all;
- ``startup_s``: process spawn to the first trial's first epoch start (first result time minus
  that epoch's ``epoch_time_s``): the CLI imports, dataset decode, model check, Ray start, the
  trial actor's start and imports, and the trial's setup before epoch 1;
- ``trial_process_start_s``: process spawn to the first trial actor process's start;
- ``tail_s``: last result to process exit (final tables, Ray shutdown);
- ``per_epoch_overhead_s``: between two results of one trial, what is not the epoch itself
  (report, checkpoint, the driver's round trip: Ray's function API pauses the trial until the
  driver has taken each result);
- ``between_trials_s``: on one slot, a trial's last result to the next trial's first-epoch start;
- the driver's phases (timestamped by a bootstrap that wraps the CLI's functions; the CLI's code
  is unchanged) and the CPU seconds of each role in the process tree, with the CPU seconds
  other processes on the machine used meanwhile (``foreign_cpu_s``: noise indicator).

    python benchmarks/study_overhead.py            # 20 seeds of A2 (15 epochs), ~2 min here
    python benchmarks/study_overhead.py --quick    # 4 seeds x 3 epochs
    python benchmarks/study_overhead.py --n 10 --set checkpoint_every=1000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit_result, print_table, run_seed_study  # noqa: E402

TIMELINE_COLUMNS = [
    "run", "n_trials", "epochs_per_trial", "wall_s", "compute_s", "slots", "ideal_wall_s", "efficiency",
    "startup_s", "trial_process_start_s", "tail_s", "per_epoch_overhead_s", "between_trials_s", "epoch_time_s_median",
]  # fmt: skip


def print_runs(rows) -> None:
    print(f"command: {rows[0]['cmd']}")
    print_table(rows, TIMELINE_COLUMNS, title="study overhead (efficiency = wall / (compute / slots))")
    print_table([{"run": r["run"], **r["phases"]} for r in rows], title="driver phases (s)")
    tree_rows = []
    for r in rows:
        t = r["tree"]
        tree_rows.append(
            {"run": r["run"], **{f"cpu_s_{k}": v for k, v in t.get("cpu_s_by_role", {}).items()}, "foreign_cpu_s": t.get("foreign_cpu_s"),
             "peak_trial_rss_mb": t.get("peak_trial_rss_mb"), "peak_trial_pss_mb": t.get("peak_trial_pss_mb"),
             "peak_driver_rss_mb": t.get("peak_driver_rss_mb"), "peak_tree_pss_mb": t.get("peak_tree_pss_mb")}
        )  # fmt: skip
    print_table(tree_rows, title="process tree: CPU seconds by role (foreign: other processes meanwhile), peak memory (MB)")


def add_study_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default="A2")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.5, help="with --device cuda (default 0.5: two trials share a GPU)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to the CLI")
    p.add_argument("--keep", action="store_true", help="keep the study directory")


def study_kwargs(args) -> dict:
    return dict(recipe=args.recipe, sets=args.set, cpus_per_trial=args.cpus_per_trial, device=args.device, gpus_per_trial=args.gpus_per_trial, keep=args.keep)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20, help="seeds (default 20)")
    p.add_argument("--epochs", type=int, help="epochs (default: the recipe's, scaled by the profile)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="4 seeds x 3 epochs")
    add_study_options(p)
    args = p.parse_args(argv)
    n, epochs = (4, 3) if args.quick else (args.n, args.epochs)
    rows = [run_seed_study(n=n, epochs=epochs, tag=f"#{i + 1}", **study_kwargs(args)) for i in range(args.repeats)]
    print_runs(rows)
    emit_result("study_overhead", {"runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
