"""APFL (Deng, Kamani and Mahdavi, "Adaptive Personalized Federated Learning", 2020, Algorithm 1), full
participation: each site mixes a local model v with the global one, v_bar = alpha v + (1 - alpha) w, and
learns v and (adaptively) alpha beside the federated training of w.

Site k keeps v_k (the initial global model at first) and alpha_k (``alpha`` at first) in its run state
(``apfl_local``, ``apfl_alpha``, one version per round). Before every update of w, on the same batch,
with w as it stands: g = grad f_k(v_bar); v <- v - lr alpha g; with ``adaptive``,
alpha <- clip(alpha - lr <v - w, g>, 0, 1) (v and w before their updates, as in the paper). The update of
w itself is FedAvg's; the server averages the w_k as FedAvg does. At the round's end the site keeps its
personalized model v_bar_k = alpha_k v_k + (1 - alpha_k) w_k (its parameters; the buffers are the global
model's), evaluated beside the final global model (``Strategy.personal_state``).

The mixed forward pass runs on copies of the model's buffers (BatchNorm statistics are the global
model's business) and draws dropout from the same generator as the main loop, in both runners alike.
Neither v nor alpha leaves the site; DP-SGD refuses APFL (its second forward pass would run under
Opacus' per-sample hooks, which this site rule does not handle).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flamby_flare.settings import setting
from flamby_flare.strategies.base import LocalRound, SiteRule, Strategy
from flamby_flare.strategies.in_process import InProcessStrategy

LOCAL, ALPHA, PERSONAL = "apfl_local", "apfl_alpha", "apfl_personal"


class PersonalMix(SiteRule):
    """v and alpha learned on every batch from the mixed model alpha v + (1 - alpha) w."""

    def __init__(self, alpha: float, adaptive: bool):
        self.alpha0, self.adaptive = alpha, adaptive

    def begin(self, local: LocalRound) -> None:
        import torch

        self.model, self.lr = local.model, local.learning_rate
        named = dict(local.model.named_parameters())
        stored = local.state.load_round(LOCAL, local.round_index - 1)
        self.v = {
            k: (
                torch.as_tensor(np.asarray(stored[k]), dtype=p.dtype, device=p.device)
                if stored is not None
                else p.detach().clone()
            )
            for k, p in named.items()
        }
        alpha = local.state.load_round(ALPHA, local.round_index - 1)
        self.alpha = float(alpha["alpha"]) if alpha is not None else self.alpha0

    def on_batch(self, X, y, loss_fn) -> None:
        import torch
        from torch.func import functional_call

        w = {k: p.detach() for k, p in self.model.named_parameters()}
        mixed = {k: (self.alpha * self.v[k] + (1 - self.alpha) * w[k]).requires_grad_(True) for k in w}
        buffers = {k: b.clone() for k, b in self.model.named_buffers()}
        loss = loss_fn(functional_call(self.model, {**mixed, **buffers}, (X,)), y)
        grads = dict(zip(mixed, torch.autograd.grad(loss, list(mixed.values()))))
        with torch.no_grad():
            alpha_grad = float(sum(((self.v[k] - w[k]) * grads[k]).sum() for k in w)) if self.adaptive else 0.0
            for k in w:
                self.v[k] -= self.lr * self.alpha * grads[k]
        if self.adaptive:
            self.alpha = min(1.0, max(0.0, self.alpha - self.lr * alpha_grad))

    def finish(self, local: LocalRound, new_params) -> dict:
        v = {k: t.detach().cpu().numpy() for k, t in self.v.items()}
        a = self.alpha
        local.state.save_round(LOCAL, local.round_index, v)
        local.state.save_round(ALPHA, local.round_index, {"alpha": np.asarray(a)})
        local.state.save_round(
            PERSONAL,
            local.round_index,
            {
                k: (a * v[k].astype(np.float64) + (1 - a) * np.asarray(new_params[k], np.float64)).astype(v[k].dtype)
                for k in v
            },
        )
        return {}


@dataclass(frozen=True)
class APFLStrategy(Strategy):
    name = "apfl"
    label = "APFL"
    personal_state = PERSONAL
    dp_sgd_refusal = "its mixed model's forward pass would run under Opacus' per-sample hooks"

    alpha: float = setting("float", 0.5, low=0.0, high=1.0, help="alpha, the local model's share at the start")
    adaptive: bool = setting("bool", True, help="learn alpha (the paper's adaptive APFL); false: keep it fixed")

    def site_rule(self, message: dict) -> SiteRule:
        return PersonalMix(self.alpha, self.adaptive)


class APFL(InProcessStrategy):
    """APFL with FLamby's in-process signature (``InProcessStrategy``)."""

    def __init__(
        self,
        training_dataloaders,
        model,
        loss,
        optimizer_class,
        learning_rate: float,
        num_updates: int,
        nrounds: int,
        alpha: float = 0.5,
        adaptive: bool = True,
        seed=None,
        log: bool = False,
        log_period: int = 100,
        bits_counting_function=None,
        logdir: str = "./runs",
        log_basename: str = "apfl",
    ):
        super().__init__(
            APFLStrategy(alpha=alpha, adaptive=adaptive),
            training_dataloaders,
            model,
            loss,
            optimizer_class,
            learning_rate,
            num_updates,
            nrounds,
            log=log,
            log_period=log_period,
            bits_counting_function=bits_counting_function,
            logdir=logdir,
            log_basename=log_basename,
            seed=seed,
        )
