"""birr: brain-inspired replay (BI-R + SI) with reconstruction repulsion / attraction (RR / RA).

    import birr
    cfg = birr.preset("bir+si", budget="smoke")      # a complete, printed-as-run Config
    res = birr.run(cfg)                              # train, or load by cfg.stamp from results/

Modules, in reading order: config (experiments: the paper's lists of runs) -> data -> encoder (features, reference_encoder) -> model
-> losses (rr, si) -> learner (stacked, fast) -> train (results) -> metrics. The
book's chapters read their tables, figures and sentences from the birr.book package
(`from birr import book as R`), and look at replay through birr.lens (an image decoder: features
back to pictures). Training imports neither.
"""
from birr.config import Config, preset  # noqa: F401
from birr.experiments import (LAMBDA_DECADES, book_configs, fig3_configs, sweep_configs,  # noqa: F401
                              table1_configs, table1_page_configs)
from birr.train import default_results_dir, load_model, load_result, run, run_many  # noqa: F401
from birr import params  # noqa: F401

__version__ = "0.1.0"
