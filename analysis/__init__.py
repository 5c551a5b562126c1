"""Analysis of rsb-tune studies: tidy tables in, statistics, figures and reports out.

Seed studies (the same recipe trained with N seeds) and coarse hyperparameter
grids, as in "ResNet strikes back" (Wightman, Touvron, Jégou 2021). Load a study
directory with :func:`load_study`; the statistics are pure functions of its
tables; each ``plot_*`` draws one of them; :func:`write_report` and
:func:`write_compare_report` write everything to a folder; :func:`compare_studies`
answers whether one study's recipe is better than another's. Accuracies are in
percent, and only trials with status ``"ok"`` count unless told otherwise.
"""

from analysis.comparison import Comparison, compare_studies
from analysis.grid import grid_summary, param_anova, variance_components
from analysis.plots import (
    plot_compare,
    plot_epoch_variance,
    plot_expected_max,
    plot_grid_heatmap,
    plot_grid_summary,
    plot_rank_stability,
    plot_seed_histogram,
    plot_split_correlation,
)
from analysis.plots_sequential import plot_confidence_sequence
from analysis.report import write_compare_report, write_report
from analysis.sequential import (
    confidence_bounds,
    confidence_sequence,
    expected_stopping_n,
    fixed_t_interval_path,
    method_record,
    min_seeds,
    paired_decision,
    seeds_needed_table,
    t_interval_bounds,
)
from analysis.stats import (
    compare,
    epoch_rank_stability,
    epoch_variance,
    expected_max,
    normal_expected_max,
    prob_greater,
    seed_summary,
    seed_table,
    seeds_needed,
    split_correlation,
    test_set_decomposition,
    test_set_noise,
)
from analysis.study import StudyTables, StudyError, load_study

__all__ = [
    # loading
    "StudyTables",
    "StudyError",
    "load_study",
    # the seeds (Figures 1 and 2)
    "seed_summary",
    "seed_table",
    "normal_expected_max",
    "plot_seed_histogram",
    # along the epochs (Figure 3)
    "epoch_variance",
    "plot_epoch_variance",
    "epoch_rank_stability",
    "plot_rank_stability",
    # the best of k
    "expected_max",
    "plot_expected_max",
    # val against V2, and the test set's own noise
    "split_correlation",
    "plot_split_correlation",
    "test_set_noise",
    "test_set_decomposition",
    # two recipes
    "Comparison",
    "compare_studies",
    "compare",
    "prob_greater",
    "seeds_needed",
    "plot_compare",
    # grids
    "grid_summary",
    "plot_grid_summary",
    "plot_grid_heatmap",
    "variance_components",
    "param_anova",
    # reports
    "write_report",
    "write_compare_report",
    # sequential seed studies (anytime-valid intervals)
    "confidence_sequence",
    "fixed_t_interval_path",
    "confidence_bounds",
    "t_interval_bounds",
    "paired_decision",
    "min_seeds",
    "method_record",
    "expected_stopping_n",
    "seeds_needed_table",
    "plot_confidence_sequence",
]
