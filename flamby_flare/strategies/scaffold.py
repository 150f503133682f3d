"""SCAFFOLD (Karimireddy et al., "SCAFFOLD: Stochastic Controlled Averaging for Federated Learning",
ICML 2020), option II, with a server learning rate, full participation.

Server: global control c (zeros at start), sent with every round's plan;
x <- x + eta_s sum_i (n_i/N)(y_i - x) and c <- c + sum_i (n_i/N) Delta c_i.
Site i keeps its control c_i in its run state (so it survives process swaps and resumes), takes local
steps y <- y - lr (g + c - c_i), then sets c_i+ = c_i - c + (x - y_i) / (K lr) and reports
Delta c_i = c_i+ - c_i.

With c the sample-weighted mean of the c_i this is algebraically what FLamby's Scaffold computes (it keeps
c~_i = c_i - c per site, updated one round late from the new global model; reference §2). Controls exist
for trainable parameters only; buffers are averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flamby_flare.settings import setting
from flamby_flare.strategies.base import LocalRound, SiteResult, SiteRule, Strategy, average, previous_round
from flamby_flare.strategies.in_process import InProcessStrategy

C_LOCAL = "scaffold_c_local"  # the site's control c_i, in its run state (per round)


class ScaffoldSite(SiteRule):
    """Every gradient gets c - c_i; after the round, c_i is updated and its change reported."""

    def __init__(self, c_global: dict):
        self.c_global = c_global

    def begin(self, local: LocalRound) -> None:
        import torch

        named = dict(local.model.named_parameters())
        self.c = {
            k: np.zeros(tuple(p.shape)) + np.asarray(self.c_global.get(k, 0.0), np.float64) for k, p in named.items()
        }
        self.c_i = previous_round(local, C_LOCAL, named)
        self.correction = {
            k: torch.as_tensor(self.c[k] - self.c_i[k], dtype=p.dtype, device=p.device) for k, p in named.items()
        }

    def correct(self, named) -> None:
        for k, p in named.items():
            p.grad += self.correction[k]

    def finish(self, local: LocalRound, new_params) -> dict:
        """Option II: c_i+ = c_i - c + (x - y) / (K lr), saved as this round's; reports c_i+ - c_i."""
        x, c, c_i = local.params, self.c, self.c_i
        scale = 1.0 / (local.num_updates * local.learning_rate)
        c_new = {k: c_i[k] - c[k] + (x[k].astype(np.float64) - new_params[k].astype(np.float64)) * scale for k in c}
        local.state.save_round(C_LOCAL, local.round_index, {k: v.astype(x[k].dtype) for k, v in c_new.items()})
        return {"c_diff": {k: (c_new[k] - c_i[k]).astype(x[k].dtype) for k in c}}


@dataclass(frozen=True)
class ScaffoldStrategy(Strategy):
    name = "scaffold"
    label = "Scaffold"
    he_refusal = "its server averages the sites' plaintext control variates and applies a server step to them"
    client_dp_refusal = "its control-variate update travels beside the model and is computed from the raw update"

    server_learning_rate: float = setting(
        "float", 1.0, low=0.0, low_open=True, help="eta_s, the server's step on the averaged update"
    )

    def initial_state(self, params, keys):
        return {"c_global": {k: np.zeros_like(params[k]) for k in keys}}

    def message(self, state):
        return {"c_global": state["c_global"]}

    def site_rule(self, message: dict) -> SiteRule:
        return ScaffoldSite(message["c_global"])

    def aggregate(self, params, results: list[SiteResult], state, keys):
        new = average(results)
        eta = self.server_learning_rate
        for key in keys:
            x = params[key].astype(np.float64)
            new[key] = (x + eta * (new[key].astype(np.float64) - x)).astype(params[key].dtype)
        weights = np.array([r.n_samples for r in results], dtype=np.float64)
        weights /= weights.sum()
        c = {k: np.zeros(params[k].shape) + state["c_global"][k] for k in keys}
        for w, r in zip(weights, results):
            delta = r.report.get("c_diff")
            if delta is None:
                raise RuntimeError(f"{r.site} returned no SCAFFOLD control update: is it a flamby-flare site?")
            for k in keys:
                c[k] += w * np.asarray(delta[k], np.float64)
        return new, {"c_global": {k: v.astype(params[k].dtype) for k, v in c.items()}}


class Scaffold(InProcessStrategy):
    """FLamby's ``flamby.strategies.scaffold.Scaffold``, in process (``InProcessStrategy``); SGD clients only.

    ``previous_client_state_list`` is FLamby's per-client y^_i (the state its next correction is computed
    from); setting it shifts the clients' controls so the next round's correction is FLamby's."""

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
        server_learning_rate: float = 1,
        log: bool = False,
        log_period: int = 100,
        bits_counting_function=None,
        logdir: str = "./runs",
        log_basename: str = "scaffold",
    ):
        import torch

        if optimizer_class is not torch.optim.SGD:
            raise ValueError(
                "Scaffold: the clients' optimizer_class must be torch.optim.SGD (its correction is an SGD step's)"
            )
        strategy = ScaffoldStrategy(server_learning_rate=server_learning_rate)
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
        )
        self._previous = [[self.params[k].copy() for k in self.keys] for _ in self.models_list]

    def _after_round(self, start, results: list[SiteResult]) -> None:
        eta = self.strategy.server_learning_rate
        for r in results:
            self._previous[int(r.site.split("-")[1]) - 1] = [
                eta * r.params[k] + (1 - eta) * start[k] for k in self.keys
            ]

    @property
    def previous_client_state_list(self) -> list[list[np.ndarray]]:
        return self._previous

    @previous_client_state_list.setter
    def previous_client_state_list(self, states: list[list[np.ndarray]]) -> None:
        # FLamby's next correction is c~_i + (x - y^_i) / (eta_s lr K): replacing y^_i by P moves c_i by (y^_i - P) / (eta_s lr K)
        scale = 1.0 / (self.strategy.server_learning_rate * self.learning_rate * self.num_updates)
        last = self.rounds_done - 1
        for client, old, new in zip(self.models_list, self._previous, states):
            stored = client.state.load_round(C_LOCAL, last) or {k: np.zeros_like(self.params[k]) for k in self.keys}
            shifted = {
                k: (
                    np.asarray(stored[k], np.float64) + (np.asarray(o, np.float64) - np.asarray(n, np.float64)) * scale
                ).astype(self.params[k].dtype)
                for k, o, n in zip(self.keys, old, new)
            }
            client.state.save_round(C_LOCAL, last, shifted)
        self._previous = [list(s) for s in states]
