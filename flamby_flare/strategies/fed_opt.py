"""Adaptive federated optimization (Reddi et al., "Adaptive Federated Optimization", ICLR 2021):
FedAdam, FedYogi and FedAdagrad, as FLamby implements them (reference §2). Sites train as FedAvg's.

Delta = sum_i (n_i/N)(y_i - x), the sample-weighted mean update (trainable parameters; buffers are averaged)
m <- beta1 m + (1 - beta1) Delta                      (all three, FedAdagrad included)
v <- beta2 v + (1 - beta2) Delta^2                    FedAdam
v <- v - (1 - beta2) Delta^2 sign(v - Delta^2)        FedYogi
v <- v + Delta^2                                      FedAdagrad
x <- x + eta m / (sqrt(v) + tau)                      m, v start at 0; no bias correction
m and v are the strategy state (saved with every checkpoint and the final model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from flamby_flare.settings import setting
from flamby_flare.strategies.base import Strategy, average
from flamby_flare.strategies.in_process import InProcessStrategy


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
    x: np.ndarray,
    delta: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    rule: str,
    lr: float,
    beta1: float,
    beta2: float,
    tau: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One server step (float64): returns the new (x, m, v)."""
    m = beta1 * m + (1 - beta1) * delta
    v = second_moment(rule, v, delta, beta2)
    return x + lr * m / (np.sqrt(v) + tau), m, v


@dataclass(frozen=True)
class FedOptStrategy(Strategy):
    """Base of the three: ``rule`` picks the second-moment update."""

    rule: ClassVar[str]
    he_refusal = "its server moments m and v are nonlinear in the plaintext average update"

    server_learning_rate: float = setting("float", 1e-2, low=0.0, low_open=True, help="eta, the server optimizer's lr")
    tau: float = setting("float", 1e-3, low=0.0, low_open=True, help="adaptivity (added to sqrt(v))")
    beta1: float = setting("float", 0.9, low=0.0, high=1.0, high_open=True, help="first-moment decay")
    beta2: float = setting("float", 0.999, low=0.0, high=1.0, high_open=True, help="second-moment decay")

    def initial_state(self, params, keys):
        return {"m": {}, "v": {}}

    def aggregate(self, params, results, state, keys):
        new = average(results)
        m, v = dict(state["m"]), dict(state["v"])
        for key in keys:
            x = params[key].astype(np.float64)
            zeros = np.zeros_like(x)
            x, m[key], v[key] = fedopt_step(
                x,
                new[key].astype(np.float64) - x,
                m.get(key, zeros),
                v.get(key, zeros),
                self.rule,
                self.server_learning_rate,
                self.beta1,
                self.beta2,
                self.tau,
            )
            new[key] = x.astype(params[key].dtype)
        return new, {"m": m, "v": v}


@dataclass(frozen=True)
class FedAdamStrategy(FedOptStrategy):
    name, label, rule = "fedadam", "FedAdam", "adam"


@dataclass(frozen=True)
class FedYogiStrategy(FedOptStrategy):
    name, label, rule = "fedyogi", "FedYogi", "yogi"


@dataclass(frozen=True)
class FedAdagradStrategy(FedOptStrategy):
    name, label, rule = "fedadagrad", "FedAdagrad", "adagrad"


class FedOpt(InProcessStrategy):
    """FLamby's ``flamby.strategies.fed_opt.FedOpt`` signature, in process; the three below pick the rule.
    SGD clients only, as FLamby asserts."""

    strategy_class: ClassVar[type[FedOptStrategy]]

    def __init__(
        self,
        training_dataloaders,
        model,
        loss,
        optimizer_class,
        learning_rate: float,
        num_updates: int,
        nrounds: int,
        dp_target_epsilon: float = None,
        dp_target_delta: float = None,
        dp_max_grad_norm: float = None,
        seed=None,
        log: bool = False,
        log_period: int = 100,
        bits_counting_function=None,
        tau: float = 1e-3,
        server_learning_rate: float = 1e-2,
        beta1: float = 0.9,
        beta2: float = 0.999,
        logdir: str = "./runs",
        log_basename: str = "fed_opt",
    ):
        import torch

        if optimizer_class is not torch.optim.SGD:
            raise ValueError(
                f"{type(self).__name__}: the clients' optimizer_class must be torch.optim.SGD "
                "(the adaptivity is the server's)"
            )
        strategy = self.strategy_class(server_learning_rate=server_learning_rate, tau=tau, beta1=beta1, beta2=beta2)
        super().__init__(
            strategy,
            training_dataloaders,
            model,
            loss,
            optimizer_class,
            learning_rate,
            num_updates,
            nrounds,
            dp_target_epsilon,
            dp_target_delta,
            dp_max_grad_norm,
            log,
            log_period,
            bits_counting_function,
            logdir,
            log_basename,
            seed,
        )


class FedAdam(FedOpt):
    strategy_class = FedAdamStrategy

    def __init__(self, *args, log_basename: str = "fed_adam", **kwargs):
        super().__init__(*args, log_basename=log_basename, **kwargs)


class FedYogi(FedOpt):
    strategy_class = FedYogiStrategy

    def __init__(self, *args, log_basename: str = "fed_yogi", **kwargs):
        super().__init__(*args, log_basename=log_basename, **kwargs)


class FedAdagrad(FedOpt):
    strategy_class = FedAdagradStrategy

    def __init__(self, *args, log_basename: str = "fed_adagrad", **kwargs):
        super().__init__(*args, log_basename=log_basename, **kwargs)
