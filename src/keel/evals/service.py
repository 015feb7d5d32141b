"""Evaluation's services, built once by the runtime and reached through it."""

from __future__ import annotations

from dataclasses import dataclass

from keel.evals.datasets import EvalDatasets
from keel.evals.harvest import Harvest


@dataclass(frozen=True)
class Evaluation:
    datasets: EvalDatasets
    harvest: Harvest
