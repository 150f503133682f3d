"""FedAvg (McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized Data",
AISTATS 2017), as FLamby runs it: full participation, and x <- sum_i (n_i / N) y_i with n_i the size
of site i's train set (equivalently x + sum_i (n_i / N)(y_i - x))."""

from __future__ import annotations

from controllers.base import FlambyController, SiteResult
from flamby_flare.model_state import NumpyState


class FedAvg(FlambyController):
    strategy_name = "FedAvg"

    def aggregate(self, params: NumpyState, results: list[SiteResult]) -> NumpyState:
        return self.average(results)
