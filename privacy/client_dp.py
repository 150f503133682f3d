"""Client-level DP as an NVFlare task-result filter: DP-FedAvg's Gaussian mechanism (McMahan et al.,
"Learning Differentially Private Recurrent Language Models", ICLR 2018), applied by each site to its
own update before it leaves: Delta = y - x is clipped to L2 norm ``clip_norm`` (C) and Gaussian noise of
std sigma * C is added to every coordinate; the site then sends the noisy difference (DIFF), from which
the server rebuilds x + Delta~.

Unit of privacy: the site's whole dataset. A site's update is replaced by one of norm <= C, so each
round is a Gaussian mechanism of sensitivity C (add/remove of the site's contribution, McMahan et al.'s
adjacency; under replace-one adjacency the sensitivity is 2C, i.e. sigma / 2). Every site takes part
in every round (no sampling), so R rounds compose R Gaussian mechanisms, accounted by Opacus' RDP (or
PRV) accountant at sample rate 1. The noise is added at the site, so the guarantee holds against the
server too (McMahan et al. add it once, at a trusted server).

Floating-point entries of the state (parameters and float buffers, e.g. BatchNorm statistics, which are
computed from data) are clipped and noised together; integer entries (step counters) pass unchanged.
Strategies served: those whose site message is the model alone (FedAvg, FedProx, FedAdam, FedYogi,
FedAdagrad, Cyclic). A reply whose site rule reports more (SCAFFOLD's control-variate update, computed
from the raw update, travels beside the model) is refused: the guarantee would not cover it. The job
generator refuses such strategies up front (their ``client_dp_refusal``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from nvflare.apis.dxo import MetaKey
from nvflare.apis.filter import Filter
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.abstract.fl_model import FLModel, ParamsType
from nvflare.app_common.utils.fl_model_utils import FLModelUtils

from flamby_flare.errors import site_message
from flamby_flare.model_state import NumpyState, difference
from flamby_flare.protocol import (
    META_ERROR,
    META_PRIVACY,
    META_REPORT,
    METRIC_EPSILON,
    METRIC_TRAIN_LOSS,
    PROP_TRAIN_INPUT,
    TrainInput,
    error_reply,
)
from flamby_flare.seeding import derive_seed
from flamby_flare.settings import SettingError
from privacy.accounting import GaussianBudget, RoundLedger, digest


@dataclass(frozen=True, kw_only=True)
class ClientDPConfig(GaussianBudget):
    """Client-level DP settings (``GaussianBudget``'s, plus the update's clipping norm C)."""

    clip_norm: float

    mechanism: ClassVar[str] = "client-dp"
    clip_field: ClassVar[str] = "clip_norm"


def clip_and_noise(
    update: NumpyState, clip_norm: float, noise_std: float, rng: np.random.Generator
) -> tuple[NumpyState, float]:
    """``update``'s float entries scaled to L2 norm <= ``clip_norm`` (jointly), plus N(0, noise_std^2) per
    coordinate; integer entries unchanged. Returns the result and the update's norm before clipping."""
    floats = [k for k in sorted(update) if np.issubdtype(np.asarray(update[k]).dtype, np.floating)]
    norm = float(np.sqrt(sum(np.sum(np.asarray(update[k], np.float64) ** 2) for k in floats)))
    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    out = dict(update)
    for k in floats:
        value = np.asarray(update[k], np.float64) * scale + rng.normal(0.0, noise_std, size=np.shape(update[k]))
        out[k] = value.astype(np.asarray(update[k]).dtype)
    return out, norm


class ClientLevelDP(Filter):
    """Task-result filter for ``train``: clip and noise the site's update (see the module docstring).

    Arguments as ``ClientDPConfig``; with ``target_epsilon`` the noise is set so that the job's rounds
    spend at most it. Needs the round's global model, which ``executors.FlambySiteExecutor`` leaves in
    the task's context (an executor that already sends a DIFF works without it). A site that cannot
    serve (SCAFFOLD, budget spent) answers with a one-line reason, and the server ends the run with it.
    """

    def __init__(
        self,
        clip_norm: float,
        delta: float,
        target_epsilon: float | None = None,
        noise_multiplier: float | None = None,
        accountant: str = "rdp",
        secure_mode: bool = False,
        release_train_loss: bool = False,
    ):
        super().__init__()
        self.config = ClientDPConfig(
            clip_norm=clip_norm,
            delta=delta,
            target_epsilon=target_epsilon,
            noise_multiplier=noise_multiplier,
            accountant=accountant,
            secure_mode=secure_mode,
            release_train_loss=release_train_loss,
        )

    def process(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        reply = FLModelUtils.from_shareable(shareable)
        if META_ERROR in (reply.meta or {}):
            return shareable
        try:
            return FLModelUtils.to_shareable(self.privatize(reply, fl_ctx.get_prop(PROP_TRAIN_INPUT)))
        except Exception as exc:  # noqa: BLE001 - the server ends the run with this line
            self.log_exception(fl_ctx, f"client-dp: {exc}")
            return error_reply(f"{fl_ctx.get_identity_name()}: client-dp: {site_message(exc)}")

    def privatize(self, reply: FLModel, train_input: TrainInput | None) -> FLModel:
        """The noisy DIFF reply for a site's ``train`` reply."""
        if reply.meta.get(META_REPORT):
            strategy = train_input.plan.strategy if train_input is not None else "this strategy"
            raise SettingError(
                f"cannot serve {strategy}: its site reports more than the model "
                f"({', '.join(sorted(reply.meta[META_REPORT]))}), computed from the raw update, which the "
                "guarantee would not cover; use dp_sgd (sample-level DP) or another strategy"
            )
        if train_input is None:
            raise SettingError("needs the round's global model: use it with executors.FlambySiteExecutor")
        x = train_input.params
        update = dict(reply.params) if reply.params_type == ParamsType.DIFF else difference(reply.params, x)
        config, r = self.config, train_input.round_index
        sigma = config.sigma(1.0, train_input.total_rounds)
        booking = RoundLedger(train_input.state, "client_dp", config).spend(r, digest(x), sigma, 1.0, 1)
        seed = (
            secrets.randbits(63) if config.secure_mode else derive_seed(train_input.plan.seed, train_input.center, r, 4)
        )
        noisy, _ = clip_and_noise(update, config.clip_norm, sigma * config.clip_norm, np.random.default_rng(seed))
        for k, v in noisy.items():  # the server adds it to its float32 model
            noisy[k] = v.astype(np.asarray(x[k]).dtype)
        record = booking.commit()
        metrics = dict(reply.metrics or {})
        if not config.release_train_loss:
            metrics.pop(METRIC_TRAIN_LOSS, None)
        records = [*reply.meta.get(META_PRIVACY, []), record]
        metrics[METRIC_EPSILON] = max(rec["epsilon"] for rec in records)
        meta = {k: v for k, v in reply.meta.items() if k != MetaKey.INITIAL_METRICS}  # the metrics travel there
        return FLModel(
            params_type=ParamsType.DIFF,
            params=noisy,
            metrics=metrics,
            meta={**meta, META_PRIVACY: records},
            current_round=reply.current_round,
        )
