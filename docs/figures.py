"""Draw the documentation's figures (docs/img/*.png) from real studies, with `analysis`.

    python docs/figures.py SEEDS_A2 [--vs SEEDS_A3] [--grid GRID]

SEEDS_A2, SEEDS_A3 and GRID are study directories (the figures committed here: the README's
`rsb-tune seeds --n 100 --recipe A2`, `rsb-tune seeds --n 20 --recipe A3` and
`rsb-tune grid --space lamb_bce`, all on the embedded digits). Each figure is a small PNG
(under 100 KB) so that the repository stays light; the captions in the pages say which study
each one shows.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

import analysis  # noqa: E402

OUT = Path(__file__).resolve().parent / "img"
LIMIT = 100_000  # bytes per figure


def save(ax, name: str) -> None:
    """The Axes' figure as a palette PNG (the plots use few colours: a quarter of the bytes)."""
    fig = ax.figure
    fig.set_size_inches(6.4, 4.0)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    image = Image.open(buffer).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    path = OUT / f"{name}.png"
    image.save(path, optimize=True)
    size = path.stat().st_size
    assert size < LIMIT, f"{path}: {size} bytes"
    print(f"{path.relative_to(OUT.parent.parent)}: {size // 1000} KB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seeds", help="a seed study's directory (the histogram, epochs, best of k, val/v2, CS)")
    parser.add_argument("--vs", help="a second seed study's directory (the comparison)")
    parser.add_argument("--grid", help="a grid study's directory (ranking, heatmap)")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)

    ok = analysis.load_study(args.seeds).select()
    save(analysis.plot_seed_histogram(ok.trials, metric="val_top1"), "seed_histogram")
    save(analysis.plot_epoch_variance(ok.epochs, metric="val_top1"), "epoch_variance")
    save(analysis.plot_rank_stability(ok.epochs, metric="val_top1"), "rank_stability")
    save(analysis.plot_expected_max(ok.trials, metric="val_top1"), "expected_max")
    save(analysis.plot_split_correlation(ok.trials), "split_correlation")
    save(analysis.plot_confidence_sequence(ok.trials, halfwidth=0.3), "confidence_sequence")
    if args.vs:
        other = analysis.load_study(args.vs)
        labels = (ok.meta["recipe"], other.meta["recipe"])
        save(analysis.plot_compare(ok.trials, other.trials, labels=labels), "compare")
    if args.grid:
        grid = analysis.load_study(args.grid)
        params, metric, mode = grid.meta["params"], grid.meta["metric"], grid.meta["mode"]
        seed_std = analysis.seed_summary(ok.trials, metric)["std"].item()  # the seeds study's noise: one seed per point
        summary = analysis.grid_summary(grid.trials, params, metric, mode, seed_std=seed_std)
        save(analysis.plot_grid_summary(summary), "grid_summary")
        save(analysis.plot_grid_heatmap(grid.trials, x=params[0], y=params[1], metric=metric), "grid_heatmap")


if __name__ == "__main__":
    main()
