"""FedDyn (Acar et al., "Federated Learning Based on Dynamic Regularization", ICLR 2021), Algorithm 1 with
full participation.

Site k keeps g_k, the gradient of its last local objective at its last model (zero at start), in its run
state (so it survives process swaps and resumes); its local updates minimize
L_k(theta) - <g_k, theta> + (alpha/2) ||theta - theta^{t-1}||^2, then it sets
g_k <- g_k - alpha (theta_k^t - theta^{t-1}).
Server: h <- h - (alpha/m) sum_k (theta_k^t - theta^{t-1}) (h zero at start, m the number of sites), and
theta^t = (1/|P|) sum_k theta_k^t - h / alpha.

As in the paper the sites are averaged uniformly (FLamby's other strategies weight them by train-set size).
The dynamic terms exist for the trainable parameters; buffers (BatchNorm statistics) are averaged uniformly
too. Under DP-SGD the regularizer's gradient is added after clipping and noise (it does not depend on data).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flamby_flare.settings import setting
from flamby_flare.strategies.base import LocalRound, SiteResult, SiteRule, Strategy, previous_round
from flamby_flare.strategies.in_process import InProcessStrategy

G_LOCAL = "feddyn_g_local"  # the site's g_k, in its run state (per round)


class DynamicRegularizer(SiteRule):
    """-<g_k, theta> + (alpha/2)||theta - theta^{t-1}||^2 on every update; g_k updated after the round."""

    def __init__(self, alpha: float):
        self.alpha = alpha

    def begin(self, local: LocalRound) -> None:
        import torch

        named = dict(local.model.named_parameters())
        self.g = previous_round(local, G_LOCAL, named)  # zero before round 1
        self.g_tensor = {k: torch.as_tensor(self.g[k], dtype=p.dtype, device=p.device) for k, p in named.items()}
        self.anchor = {k: p.detach().clone() for k, p in named.items()}

    def penalty(self, named):
        linear = sum((self.g_tensor[k] * p).sum() for k, p in named.items())
        proximal = sum(((p - self.anchor[k]) ** 2).sum() for k, p in named.items())
        return self.alpha / 2 * proximal - linear

    def finish(self, local: LocalRound, new_params) -> dict:
        """g_k <- g_k - alpha (theta_k^t - theta^{t-1}), saved as this round's."""
        x = local.params
        g_new = {
            k: self.g[k] - self.alpha * (new_params[k].astype(np.float64) - x[k].astype(np.float64)) for k in self.g
        }
        local.state.save_round(G_LOCAL, local.round_index, {k: v.astype(x[k].dtype) for k, v in g_new.items()})
        return {}


@dataclass(frozen=True)
class FedDynStrategy(Strategy):
    name = "feddyn"
    label = "FedDyn"
    he_refusal = "its server state h accumulates the plaintext updates of every site"
    client_dp_refusal = "its server state h accumulates the raw updates of every site"

    alpha: float = setting("float", 0.01, low=0.0, low_open=True, help="alpha, the dynamic regularizer's weight")

    def initial_state(self, params, keys):
        return {"h": {k: np.zeros_like(params[k]) for k in keys}}

    def site_rule(self, message: dict) -> SiteRule:
        return DynamicRegularizer(self.alpha)

    def aggregate(self, params, results: list[SiteResult], state, keys):
        """``results`` are all m sites (FLamby's full participation)."""
        m = len(results)
        mean = {k: sum(np.asarray(r.params[k], np.float64) for r in results) / m for k in params}
        h = {}
        for k in keys:
            drift = mean[k] - params[k].astype(np.float64)  # (1/m) sum_k (theta_k - theta^{t-1})
            h[k] = np.asarray(state["h"][k], np.float64) - self.alpha * drift
            mean[k] = mean[k] - h[k] / self.alpha
        new = {k: mean[k].astype(params[k].dtype) for k in params}
        return new, {"h": {k: v.astype(params[k].dtype) for k, v in h.items()}}


class FedDyn(InProcessStrategy):
    """FedDyn with FLamby's in-process signature (``InProcessStrategy``); SGD clients as in the paper."""

    def __init__(
        self,
        training_dataloaders,
        model,
        loss,
        optimizer_class,
        learning_rate: float,
        num_updates: int,
        nrounds: int,
        alpha: float = 0.01,
        dp_target_epsilon: float = None,
        dp_target_delta: float = None,
        dp_max_grad_norm: float = None,
        seed=None,
        log: bool = False,
        log_period: int = 100,
        bits_counting_function=None,
        logdir: str = "./runs",
        log_basename: str = "fed_dyn",
    ):
        super().__init__(
            FedDynStrategy(alpha=alpha),
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
