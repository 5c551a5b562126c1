"""Analysis of rsb-tune studies: tidy tables in, statistics, figures and reports out.

Seed studies (the same recipe trained with N seeds) and coarse hyperparameter
grids, as in "ResNet strikes back" (Wightman, Touvron, Jégou 2021). Load a study
directory with :func:`load_study`; the statistics are pure functions of its
tables; each ``plot_*`` draws one of them; :mod:`analysis.aggregate` aggregates
several tasks (rliable's IQM, profiles and probability of improvement); :func:`write_report` and
:func:`write_compare_report` write everything to a folder; :func:`compare_studies`
answers whether one study's recipe is better than another's; :func:`factorial_analysis`
whether a ranking flips between procedures in a crossed study. Accuracies are in
percent, and only trials with status ``"ok"`` count unless told otherwise.

Importing :mod:`analysis` is cheap: each name is loaded from its module on first use
(:mod:`analysis.contract`, the words a study is written in, imports nothing heavy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the names as imports for type checkers and the API reference (griffe); at run time: _LAZY
    from analysis.aggregate import AGGREGATES, aggregate_scores, improvement_probabilities, normalize_scores, probability_of_improvement, score_matrices, score_profiles, task_scores
    from analysis.comparison import Comparison, DECISIONS, compare_studies
    from analysis.factorial import Factorial, best_set, cell_table, factorial_analysis, find_factors, holm, interaction_2x2, pairwise, ranking_flip, two_way_anova
    from analysis.evals import crop_table, eval_correct, load_evals, plot_resolution_curve, resolution_curve, test_set_table
    from analysis.grid import grid_summary, param_anova, variance_components
    from analysis.plots import plot_compare, plot_epoch_variance, plot_expected_max, plot_grid_heatmap, plot_grid_summary, plot_interaction, plot_rank_stability, plot_seed_histogram, plot_split_correlation
    from analysis.plots_aggregate import plot_aggregate, plot_improvement, plot_profiles
    from analysis.plots_sequential import plot_confidence_sequence
    from analysis.report import write_compare_report, write_report
    from analysis.sequential import confidence_bounds, confidence_sequence, expected_stopping_n, fixed_t_interval_path, method_record, min_seeds, paired_decision, seeds_needed_table, t_interval_bounds
    from analysis.stats import compare, epoch_rank_stability, epoch_variance, expected_max, normal_expected_max, prob_greater, seed_summary, seed_table, seeds_needed, split_correlation, test_set_decomposition, test_set_noise
    from analysis.study import StudyError, StudyTables, load_study

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
    "DECISIONS",
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
    # crossed studies (architecture x procedure)
    "Factorial",
    "factorial_analysis",
    "cell_table",
    "two_way_anova",
    "interaction_2x2",
    "ranking_flip",
    "pairwise",
    "best_set",
    "find_factors",
    "holm",
    "plot_interaction",
    # re-scored weights (rsb-tune eval: Figure 4, Table 9, the test sets)
    "load_evals",
    "resolution_curve",
    "plot_resolution_curve",
    "crop_table",
    "test_set_table",
    "eval_correct",
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
    # aggregates across tasks (rliable, Agarwal et al. 2021)
    "task_scores",
    "normalize_scores",
    "score_matrices",
    "AGGREGATES",
    "aggregate_scores",
    "score_profiles",
    "improvement_probabilities",
    "probability_of_improvement",
    "plot_aggregate",
    "plot_profiles",
    "plot_improvement",
]

_LAZY = {
    "AGGREGATES": "analysis.aggregate",
    "aggregate_scores": "analysis.aggregate",
    "improvement_probabilities": "analysis.aggregate",
    "normalize_scores": "analysis.aggregate",
    "probability_of_improvement": "analysis.aggregate",
    "score_matrices": "analysis.aggregate",
    "score_profiles": "analysis.aggregate",
    "task_scores": "analysis.aggregate",
    "plot_aggregate": "analysis.plots_aggregate",
    "plot_improvement": "analysis.plots_aggregate",
    "plot_profiles": "analysis.plots_aggregate",
    **{name: "analysis.evals" for name in ("load_evals", "resolution_curve", "plot_resolution_curve", "crop_table", "test_set_table", "eval_correct")},
    "Comparison": "analysis.comparison",
    "DECISIONS": "analysis.comparison",
    "compare_studies": "analysis.comparison",
    "Factorial": "analysis.factorial",
    "best_set": "analysis.factorial",
    "cell_table": "analysis.factorial",
    "find_factors": "analysis.factorial",
    "holm": "analysis.factorial",
    "factorial_analysis": "analysis.factorial",
    "interaction_2x2": "analysis.factorial",
    "pairwise": "analysis.factorial",
    "ranking_flip": "analysis.factorial",
    "two_way_anova": "analysis.factorial",
    "plot_interaction": "analysis.plots",
    "grid_summary": "analysis.grid",
    "param_anova": "analysis.grid",
    "variance_components": "analysis.grid",
    "plot_compare": "analysis.plots",
    "plot_epoch_variance": "analysis.plots",
    "plot_expected_max": "analysis.plots",
    "plot_grid_heatmap": "analysis.plots",
    "plot_grid_summary": "analysis.plots",
    "plot_rank_stability": "analysis.plots",
    "plot_seed_histogram": "analysis.plots",
    "plot_split_correlation": "analysis.plots",
    "plot_confidence_sequence": "analysis.plots_sequential",
    "write_compare_report": "analysis.report",
    "write_report": "analysis.report",
    "confidence_bounds": "analysis.sequential",
    "confidence_sequence": "analysis.sequential",
    "expected_stopping_n": "analysis.sequential",
    "fixed_t_interval_path": "analysis.sequential",
    "method_record": "analysis.sequential",
    "min_seeds": "analysis.sequential",
    "paired_decision": "analysis.sequential",
    "seeds_needed_table": "analysis.sequential",
    "t_interval_bounds": "analysis.sequential",
    "compare": "analysis.stats",
    "epoch_rank_stability": "analysis.stats",
    "epoch_variance": "analysis.stats",
    "expected_max": "analysis.stats",
    "normal_expected_max": "analysis.stats",
    "prob_greater": "analysis.stats",
    "seed_summary": "analysis.stats",
    "seed_table": "analysis.stats",
    "seeds_needed": "analysis.stats",
    "split_correlation": "analysis.stats",
    "test_set_decomposition": "analysis.stats",
    "test_set_noise": "analysis.stats",
    "StudyTables": "analysis.study",
    "StudyError": "analysis.study",
    "load_study": "analysis.study",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
