r"""The analysis behind the book's chapters, from results dicts: `from birr import book as R`.

Chapters hold prose and calls; the logic lives here, where pytest checks it on hand-built fake
results (tests/test_book_*.py). By concern:

- `paper`: the paper's own numbers (PAPER_TABLE1, PAPER_TEXT_F20, the baselines they imply) and the
  names of metrics and datasets;
- `runs`: reading results dicts (a run's numbers, pairing by seed, `dataset_label`, stored runs);
- `stats`: paired statistics by seed, mean ± SEM, how a number is written;
- `tables`: the DataFrames the pages show (Table 1, summaries, Fig. 3 frames, runs, coverage);
- `competition`: what the RR / RA runs logged, and the competitor rule on a model's own replay;
- `figures`: every plot (a matplotlib Figure each); `lens_figures`: the pictures drawn through the
  image-decoder lens (birr.lens);
- `prose`: the sentences computed from the tables;
- `page`: a chapter's set-up (`Page`: parameters, runs, models, the glue keys every page shares).

Numbers computed on the CIFAR-10 proxy or on synthetic data are never CIFAR-100 numbers: every
table that sits next to the paper's says which data it came from.
"""
import pandas as pd

from birr.book.competition import (applied_by_task, busiest_classes, competition_by_f, competition_frame,  # noqa: F401
                                   competitor_share_vs_f, example_samples, pair_counts, replay_probabilities,
                                   rr_magnitude_frame, top_pairs)
from birr.book.figures import (image_grid, plot_acc_matrix, plot_competition_vs_f, plot_fig2, plot_fig3,  # noqa: F401
                               plot_pair_counts, plot_pair_counts_by_task, plot_per_task, plot_table1_forest)
from birr.book.lens_figures import image_rows, pair_figure, tsne_pair  # noqa: F401
from birr.book.page import Page  # noqa: F401
from birr.book.paper import (CIFAR100_FINE_NAMES, DATASET_NAMES, DATASET_SHORT, METRIC_NAMES, METRICS,  # noqa: F401
                             PAPER_TABLE1, PAPER_TEXT_F20, PUBLISHED_BIR_SI_CIFAR100, cifar100_order_frame,
                             format_paper_table1, implied_baseline, paper_table1_frame)
from birr.book.prose import best_f, beyond_noise, beyond_noise_text, data_caveat  # noqa: F401
from birr.book.runs import (by_seed, dataset_label, distinct, finished, is_rr, metric_value,  # noqa: F401
                             paired_points, run_label)
from birr.book.stats import (format_mean_sem, format_p, mean_sem, nearest_mean_accuracy, paired_diffs,  # noqa: F401
                             paired_stats, paired_summary, two_se)
from birr.book.tables import (RUNS_NOTE, class_order_frame, coverage_frame, coverage_targets,  # noqa: F401
                              encoder_layer_frame, fig3_frame, fig3_gap_frame, format_summary, format_table1,
                              learned_accuracy, metric_summary, runs_table, status_rows, table1_frame, table1_row,
                              wrapping)

# The book's tables write a missing value (a p with one seed, a ratio of nothing) as a dash, never NaN.
pd.set_option("styler.format.na_rep", "–")
