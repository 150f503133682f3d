"""q-FFL, run as q-FedAvg (Li, Sanjabi, Beirami and Smith, "Fair Resource Allocation in Federated Learning",
ICLR 2020, Algorithm 2) with full participation: a site whose loss is high weighs more, by F_k^q.

Site k: F_k = its loss at the round's global model w^t over its whole training set (``LocalRound.data_loss``),
then the round's local updates (FLamby's: ``num_updates`` SGD steps) to w_k; it reports F_k.
Server, with L the Lipschitz estimate (the paper's choice, L = 1 / the sites' learning rate, unless given):
Delta w_k = L (w^t - w_k), Delta_k = F_k^q Delta w_k, h_k = q F_k^(q-1) ||Delta w_k||^2 + L F_k^q, and
w^(t+1) = w^t - sum_k Delta_k / sum_k h_k; the norm is over all trainable parameters, F_k is shifted by
1e-10 as in the authors' code. q = 0 is FedAvg with the sites weighted equally.

The trainable parameters follow that rule; buffers (BatchNorm statistics) are FedAvg's size-weighted mean.
F_k is an un-noised function of the site's data: sites under DP-SGD cannot serve q-FFL, and client-level DP
neither (it noises the update, not F_k).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flamby_flare.settings import SettingError, setting
from flamby_flare.strategies.base import LocalRound, SiteResult, SiteRule, Strategy, average
from flamby_flare.strategies.in_process import InProcessStrategy

START_LOSS, LIPSCHITZ = "q_ffl_start_loss", "q_ffl_lipschitz"  # what a site reports


class StartLoss(SiteRule):
    """Measures F_k(w^t) before the first update; reports it with the L the site trained under."""

    def __init__(self, lipschitz: float | None):
        self.lipschitz = lipschitz

    def begin(self, local: LocalRound) -> None:
        self.loss = local.data_loss()
        self.L = self.lipschitz if self.lipschitz is not None else 1.0 / local.learning_rate

    def finish(self, local: LocalRound, new_params) -> dict:
        return {START_LOSS: self.loss, LIPSCHITZ: self.L}


@dataclass(frozen=True)
class QFFLStrategy(Strategy):
    name = "qffl"
    label = "QFFL"
    he_refusal = "its server divides by a sum computed from each site's plaintext update norm"
    client_dp_refusal = "its server rule weighs each site by the site's raw training loss"
    dp_sgd_refusal = "each site reports its un-noised loss on its training data"

    q: float = setting("float", 1.0, low=0.0, help="q, the fairness exponent (0: FedAvg with equal weights)")
    lipschitz: float | None = setting(
        "float", None, low=0.0, low_open=True, help="L, the Lipschitz estimate (default: 1 / the sites' learning rate)"
    )

    def site_rule(self, message: dict) -> SiteRule:
        return StartLoss(self.lipschitz)

    def aggregate(self, params, results: list[SiteResult], state, keys):
        losses, lipschitz = [], []
        for r in results:
            loss, L = r.report.get(START_LOSS), r.report.get(LIPSCHITZ)
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (loss, L)) or loss < 0 or not L > 0:
                raise SettingError(
                    f"qffl: {r.site} reported no usable loss and L (a loss >= 0 and an L > 0 are needed)"
                )
            losses.append(float(loss) + 1e-10)
            lipschitz.append(float(L))
        if max(lipschitz) - min(lipschitz) > 1e-9 * max(lipschitz):
            raise SettingError(f"qffl: the sites trained with different L ({min(lipschitz):g} .. {max(lipschitz):g})")
        L, q = lipschitz[0], self.q
        new = average(results)  # buffers; the trainable parameters below
        x = {k: params[k].astype(np.float64) for k in keys}
        deltas = [{k: L * (x[k] - np.asarray(r.params[k], np.float64)) for k in keys} for r in results]
        numerator = {k: sum(F**q * d[k] for F, d in zip(losses, deltas)) for k in keys}
        h = sum(
            q * F ** (q - 1) * sum(float((d[k] ** 2).sum()) for k in keys) + L * F**q for F, d in zip(losses, deltas)
        )
        for k in keys:
            new[k] = (x[k] - numerator[k] / h).astype(params[k].dtype)
        return new, state


class QFFL(InProcessStrategy):
    """q-FFL with FLamby's in-process signature (``InProcessStrategy``)."""

    def __init__(
        self,
        training_dataloaders,
        model,
        loss,
        optimizer_class,
        learning_rate: float,
        num_updates: int,
        nrounds: int,
        q: float = 1.0,
        lipschitz: float | None = None,
        seed=None,
        log: bool = False,
        log_period: int = 100,
        bits_counting_function=None,
        logdir: str = "./runs",
        log_basename: str = "q_ffl",
    ):
        super().__init__(
            QFFLStrategy(q=q, lipschitz=lipschitz),
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
