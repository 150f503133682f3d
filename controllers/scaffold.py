"""SCAFFOLD (Karimireddy et al., "SCAFFOLD: Stochastic Controlled Averaging for Federated Learning",
ICML 2020), option II, with a server learning rate, full participation.

Server: global control c (zeros at start), sent with every train task. Site i keeps its control c_i on
disk (so it survives process swaps), takes local steps y <- y - lr (g + c - c_i), then sets
c_i+ = c_i - c + (x - y_i) / (K lr) and returns Delta c_i = c_i+ - c_i. Server:
x <- x + eta_s sum_i (n_i/N)(y_i - x) and c <- c + sum_i (n_i/N) Delta c_i.

With c the sample-weighted mean of the c_i this is algebraically what FLamby's Scaffold computes (it
keeps c_i - c per site, updated one round late from the new global model; reference §2); controls exist
for trainable parameters only, buffers are averaged.
"""

from __future__ import annotations

import numpy as np
from nvflare.app_common.app_constant import AlgorithmConstants

from controllers.base import FlambyController, SiteResult
from flamby_flare.model_state import NumpyState


class Scaffold(FlambyController):
    strategy_name = "Scaffold"

    def __init__(self, dataset: str, server_learning_rate: float = 1.0, **kwargs):
        super().__init__(dataset, **kwargs)
        self.server_learning_rate = server_learning_rate
        self.c_global: NumpyState = {}  # empty = zeros: sites treat a missing key as 0

    def train_meta(self) -> dict:
        return {AlgorithmConstants.SCAFFOLD_CTRL_GLOBAL: self.c_global}

    def aggregate(self, params: NumpyState, results: list[SiteResult]) -> NumpyState:
        new = self.average(results)
        eta = self.server_learning_rate
        for key in self.param_keys:
            x = params[key].astype(np.float64)
            new[key] = (x + eta * (new[key].astype(np.float64) - x)).astype(params[key].dtype)
        weights = np.array([r.n_samples for r in results], dtype=np.float64)
        weights /= weights.sum()
        c = {k: np.zeros(params[k].shape) + self.c_global.get(k, 0.0) for k in self.param_keys}
        for w, r in zip(weights, results):
            delta = r.meta.get(AlgorithmConstants.SCAFFOLD_CTRL_DIFF)
            if delta is None:
                raise RuntimeError(f"{r.site} returned no SCAFFOLD control update: is it a flamby-flare site?")
            for k in self.param_keys:
                c[k] += w * np.asarray(delta[k], np.float64)
        self.c_global = {k: v.astype(params[k].dtype) for k, v in c.items()}
        return new

    def strategy_state(self) -> dict:
        return {"c_global": self.c_global}

    def load_strategy_state(self, state: dict) -> None:
        self.c_global = dict(state["c_global"])

    def hyperparameters(self) -> dict:
        return {**super().hyperparameters(), "server_learning_rate": self.server_learning_rate}
