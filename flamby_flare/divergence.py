"""When a run counts as diverged, the same rule for both runners (the NVFlare controller and FLamby's
in-process API): a round whose average training loss is not finite, whose model has a non-finite entry, or
whose trainable weights' L2 norm has grown past ``EXPLODED`` x the initial model's (at least ``EXPLODED``): no
learning rate that trains a model does that (docs/security.md, "Divergence rule")."""

from __future__ import annotations

import math

import numpy as np

from flamby_flare.errors import FlambyFlareError
from flamby_flare.model_state import NumpyState

EXPLODED = 1000.0


class TrainingDiverged(FlambyFlareError):
    """A round diverged (``divergence``'s reason); the model of the round before is kept."""

    def __init__(self, round_number: int, reason: str):
        super().__init__(f"training diverged in round {round_number} ({reason})")
        self.round_number, self.reason = round_number, reason


def _finite(params: NumpyState) -> bool:
    from flamby_flare.strategies.aggregation import is_ciphertext  # here: the strategies package imports this module

    return all(
        np.isfinite(v).all()
        for v in params.values()
        if not is_ciphertext(v) and np.issubdtype(np.asarray(v).dtype, np.floating)
    )


def weights_norm(params: NumpyState, keys: list[str]) -> float:
    """The L2 norm of the plaintext entries among ``keys`` (an encrypted model's is not the server's to see)."""
    from flamby_flare.strategies.aggregation import is_ciphertext

    return float(
        np.sqrt(sum(np.sum(np.asarray(params[k], np.float64) ** 2) for k in keys if not is_ciphertext(params[k])))
    )


def round_loss(results) -> float | None:
    """A round's sample-weighted training loss over the ``SiteResult``s that report one (None: all withheld it)."""
    reported = [r for r in results if r.loss is not None]
    return sum(r.loss * r.n_samples for r in reported) / sum(r.n_samples for r in reported) if reported else None


def divergence(loss: float | None, params: NumpyState, keys: list[str], initial_norm: float) -> str | None:
    """Why a round's outcome counts as diverged (None: it does not)."""
    if loss is not None and not math.isfinite(loss):
        return f"the training loss is {loss}"
    if not _finite(params):
        return "the model has non-finite values"
    norm = weights_norm(params, keys)
    if norm > EXPLODED * max(initial_norm, 1.0):
        return f"the weights' norm grew to {norm:.3g} from {initial_norm:.3g} ({EXPLODED:g}x is the limit)"
    return None
