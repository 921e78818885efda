"""Does RR + RA help? Everything the book's "Does it work?" chapter computes, as one namespace (`from
birr.book import verdict as V`): the sweep frames, gradient shares and tests (verdict_stats), the
figures (verdict_figures) and the sentences its Findings boxes print (verdict_prose)."""
from birr.book import METRIC_NAMES, METRICS, is_rr  # noqa: F401
from birr.book.verdict_stats import (  # noqa: F401
    ci_text,
    PAPER_GAINS_F20, PAPER_GAINS_MAX, setting, applied_shares, sweep_frame, acting_lambda,
    grad_share_frame, mean_grad_shares, separation, model_separation, holm, tost,
    detectable_difference, headline_tests, paired_differences, verdict_sentence, format_lambda,
    complete_pairs,
)
from birr.book.verdict_figures import (  # noqa: F401
    VARIANT_STYLE, plot_sweep, GRAD_COLOURS, plot_grad_shares,
)
from birr.book.verdict_prose import (  # noqa: F401
    setups_frame, moved, lambda_sentence, confirm_sentence, grad_sentence,
    control_sentence, applied_sentence, f_note, format_share, power_sentence, control_reading,
    separation_reading, long_runs_sentence, setups_sentence, fidelity_sentence,
)
