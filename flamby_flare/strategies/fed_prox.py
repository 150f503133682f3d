"""FedProx (Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020).

Server: FedAvg's aggregation. Site: each local update minimizes f_i(w) + (mu/2) ||w - w_round_start||^2
(the term is added only when mu > 0, as in FLamby); under DP-SGD its gradient mu (w - w_start) is added
after the noise (it does not depend on the data).
"""

from __future__ import annotations

from dataclasses import dataclass

from flamby_flare.settings import setting
from flamby_flare.strategies.base import LocalRound, SiteRule, Strategy
from flamby_flare.strategies.in_process import InProcessStrategy


class ProximalTerm(SiteRule):
    """(mu/2) ||w - w_anchor||^2 on the trainable parameters; the anchor is the round's start (FedProx) or
    a given state (Ditto's pull toward the global model)."""

    def __init__(self, mu: float, anchor: dict | None = None):
        self.mu, self.anchor = mu, anchor

    def begin(self, local: LocalRound) -> None:
        if self.mu > 0 and self.anchor is None:
            self.anchor = {k: p.detach().clone() for k, p in local.model.named_parameters()}

    def penalty(self, named):
        if not self.mu > 0:
            return None
        return self.mu / 2 * sum(((p - self.anchor[k]) ** 2).sum() for k, p in named.items())


@dataclass(frozen=True)
class FedProxStrategy(Strategy):
    name = "fedprox"
    label = "FedProx"

    mu: float = setting("float", low=0.0, help="weight of the proximal term (mu/2)||w - w_start||^2")

    def site_rule(self, message: dict) -> SiteRule:
        return ProximalTerm(self.mu)


class FedProx(InProcessStrategy):
    """FLamby's ``flamby.strategies.fed_prox.FedProx``, in process (``InProcessStrategy``)."""

    def __init__(
        self,
        training_dataloaders,
        model,
        loss,
        optimizer_class,
        learning_rate: float,
        num_updates: int,
        nrounds: int,
        mu: float,
        dp_target_epsilon: float = None,
        dp_target_delta: float = None,
        dp_max_grad_norm: float = None,
        seed=None,
        log: bool = False,
        log_period: int = 100,
        bits_counting_function=None,
        log_basename: str = "fed_prox",
        logdir: str = "./runs",
    ):
        super().__init__(
            FedProxStrategy(mu=mu),
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
