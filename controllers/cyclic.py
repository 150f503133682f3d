"""Cyclic (cyclic weight transfer; Chang et al., "Distributed deep learning networks among institutions
for medical imaging", JAMIA 2018): the model travels from site to site, each training it for
``num_updates`` local updates. One round is one pass through all sites; the order is a permutation
drawn from ``(seed, round)`` (or site order with ``deterministic_cycle``).

Deviation from FLamby, on purpose: FLamby's shipped Cyclic never passes the model on (each site trains
its own copy; the benchmark evaluates site 0's, reference §2), and counts one site visit as a round.
This is the algorithm as published; the recorded per-round order is in the run history.
"""

from __future__ import annotations

import numpy as np

from controllers.base import FlambyController, RoundOutcome, SiteResult
from flamby_flare.model_state import NumpyState
from flamby_flare.seeding import derive_seed


class Cyclic(FlambyController):
    strategy_name = "Cyclic"

    def __init__(self, dataset: str, deterministic_cycle: bool = False, **kwargs):
        super().__init__(dataset, **kwargs)
        self.deterministic_cycle = deterministic_cycle

    def order(self, round_index: int) -> list[str]:
        if self.deterministic_cycle:
            return list(self.sites)
        rng = np.random.default_rng(derive_seed(self.plan.seed, round_index, 2))
        return [self.sites[i] for i in rng.permutation(len(self.sites))]

    def run_round(self, round_index: int, params: NumpyState) -> RoundOutcome:
        order = [site for site in self.order(round_index) if site not in self.dropped]
        results = []
        for site in order:
            for result in self.train_on([site], round_index, params):  # none if the site was dropped
                params = result.params
                results.append(result)
        return RoundOutcome(params, results, {"order": order})

    def aggregate(self, params: NumpyState, results: list[SiteResult]) -> NumpyState:
        return results[-1].params

    def hyperparameters(self) -> dict:
        return {**super().hyperparameters(), "deterministic_cycle": self.deterministic_cycle}
