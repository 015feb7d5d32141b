"""Keel's statistics, in one place: the intervals and tests that make noise visible, used by evaluation
runs and comparisons, drift monitors, prompt experiments and canary releases. Pure functions over
numbers, foundation level (no service imported), so any part of Keel may use them.

- bootstrap: seeded bootstrap intervals (BCa, percentile where BCa is undefined) of a mean or a
  percentile, paired or not.
- trials: scores as one row per item holding its trials; intervals over items, the trial-to-trial spread.
- paired: two runs on the same items: a paired interval of the difference, Wilcoxon or McNemar.
- rates: rates with Wilson intervals; Fisher's exact test, and the two-proportion z-test.
- samples: two independent samples' means (Mann-Whitney U) and tails; Holm's correction.
"""

from keel.stats.bootstrap import (
    SEED,
    Aggregate,
    Interval,
    bootstrap_interval,
    mean_interval,
    statistic,
    summarise,
)
from keel.stats.paired import PairedDifference, mcnemar, paired_difference, wilcoxon
from keel.stats.rates import Comparison, compare_rates, rate_interval, two_proportion_z
from keel.stats.samples import compare_means, compare_tails, holm
from keel.stats.trials import TrialSpread, estimate, item_means, trial_spread

__all__ = [
    "SEED",
    "Aggregate",
    "Comparison",
    "Interval",
    "PairedDifference",
    "TrialSpread",
    "bootstrap_interval",
    "compare_means",
    "compare_rates",
    "compare_tails",
    "estimate",
    "holm",
    "item_means",
    "mcnemar",
    "mean_interval",
    "paired_difference",
    "rate_interval",
    "statistic",
    "summarise",
    "trial_spread",
    "two_proportion_z",
    "wilcoxon",
]
