"""Adaptive federated optimization (Reddi et al., "Adaptive Federated Optimization", ICLR 2021):
FedAdam, FedYogi and FedAdagrad, as FLamby implements them (reference §2).

Delta = sum_i (n_i/N)(y_i - x), the sample-weighted mean update (trainable parameters; buffers are averaged)
m <- beta1 m + (1 - beta1) Delta                      (all three, FedAdagrad included)
v <- beta2 v + (1 - beta2) Delta^2                    FedAdam
v <- v - (1 - beta2) Delta^2 sign(v - Delta^2)        FedYogi
v <- v + Delta^2                                      FedAdagrad
x <- x + eta m / (sqrt(v) + tau)                      m, v start at 0; no bias correction
m and v are saved with the global model.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from controllers.base import FlambyController, SiteResult
from flamby_flare.model_state import NumpyState


def second_moment(rule: str, v: np.ndarray, delta: np.ndarray, beta2: float) -> np.ndarray:
    d2 = delta * delta
    if rule == "adam":
        return beta2 * v + (1 - beta2) * d2
    if rule == "yogi":
        return v - (1 - beta2) * d2 * np.sign(v - d2)
    if rule == "adagrad":
        return v + d2
    raise ValueError(f"unknown second-moment rule {rule!r}")


def fedopt_step(
    x: np.ndarray, delta: np.ndarray, m: np.ndarray, v: np.ndarray, rule: str,
    lr: float, beta1: float, beta2: float, tau: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One server step (float64): returns the new (x, m, v)."""
    m = beta1 * m + (1 - beta1) * delta
    v = second_moment(rule, v, delta, beta2)
    return x + lr * m / (np.sqrt(v) + tau), m, v


class FedOpt(FlambyController):
    """Base of the three: ``rule`` picks the second-moment update."""

    rule: ClassVar[str]

    def __init__(self, dataset: str, server_learning_rate: float = 1e-2, tau: float = 1e-3,
                 beta1: float = 0.9, beta2: float = 0.999, **kwargs):
        super().__init__(dataset, **kwargs)
        self.server_learning_rate, self.tau, self.beta1, self.beta2 = server_learning_rate, tau, beta1, beta2
        self.m: NumpyState = {}
        self.v: NumpyState = {}

    def aggregate(self, params: NumpyState, results: list[SiteResult]) -> NumpyState:
        new = self.average(results)
        for key in self.param_keys:
            x = params[key].astype(np.float64)
            zeros = np.zeros_like(x)
            x, self.m[key], self.v[key] = fedopt_step(
                x, new[key].astype(np.float64) - x, self.m.get(key, zeros), self.v.get(key, zeros), self.rule,
                self.server_learning_rate, self.beta1, self.beta2, self.tau,
            )
            new[key] = x.astype(params[key].dtype)
        return new

    def strategy_state(self) -> dict:
        return {"m": self.m, "v": self.v}

    def load_strategy_state(self, state: dict) -> None:
        self.m, self.v = dict(state["m"]), dict(state["v"])

    def hyperparameters(self) -> dict:
        return {**super().hyperparameters(), "server_learning_rate": self.server_learning_rate,
                "tau": self.tau, "beta1": self.beta1, "beta2": self.beta2}


class FedAdam(FedOpt):
    strategy_name, rule = "FedAdam", "adam"


class FedYogi(FedOpt):
    strategy_name, rule = "FedYogi", "yogi"


class FedAdagrad(FedOpt):
    strategy_name, rule = "FedAdagrad", "adagrad"
