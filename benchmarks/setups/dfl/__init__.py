"""Decision-focused learning set-ups of the benchmarks: the baselines by name
(:mod:`~benchmarks.setups.dfl.baselines`), the Gen-DFL paper's data, sizes and evaluation
pipeline (:mod:`~benchmarks.setups.dfl.gen_dfl`), and the reports
(:mod:`~benchmarks.setups.dfl.report`)."""

from benchmarks.setups.dfl.baselines import (
    BASELINES,
    METHODS,
    POOL_METHODS,
    TrainedBaseline,
    decide_baseline,
    loss_options,
    train_baseline,
    tune_baseline,
)
from benchmarks.setups.dfl.gen_dfl import (
    LP_REG,
    PAPER_TABLE1,
    PROTOCOLS,
    SIZES,
    TAIL_PROB,
    data_free_decisions,
    decide_gen_dfl,
    evaluate,
    make_data,
    make_flow,
    saa_decisions,
)
from benchmarks.setups.dfl.report import (
    EXPERIMENTS,
    best_baseline,
    partial_methods,
    ordering,
    plot,
    plot_curves,
    renamed,
    summarise,
    table,
    table1_cells,
    table1_report,
    verdict,
)

__all__ = [
    "BASELINES", "METHODS", "POOL_METHODS", "TrainedBaseline", "decide_baseline", "loss_options",
    "train_baseline", "tune_baseline", "LP_REG", "PROTOCOLS", "data_free_decisions", "PAPER_TABLE1", "SIZES",
    "TAIL_PROB", "decide_gen_dfl", "evaluate", "make_data", "make_flow", "saa_decisions", "EXPERIMENTS",
    "best_baseline", "partial_methods", "ordering", "plot", "plot_curves", "verdict", "renamed", "summarise",
    "table", "table1_cells", "table1_report",
]
