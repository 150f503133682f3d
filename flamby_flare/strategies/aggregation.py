"""Aggregation of site model states.

Policy: every floating-point entry of the state dict (parameters and BatchNorm running statistics) is
averaged with the given weights, accumulated in float64 in site order and cast back to its dtype;
integer entries (e.g. BatchNorm's ``num_batches_tracked``) are counters, not estimates, and take the
element-wise maximum. FLamby averages parameters only and keeps site 0's buffers (reference §2).
Under homomorphic encryption (``flamby_flare.homomorphic``) a float entry is a CKKS vector: the same
weighted sum is formed on the ciphertexts (plaintext weights, site order).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from flamby_flare.model_state import NumpyState


def is_ciphertext(value) -> bool:
    """An encrypted entry (a TenSEAL CKKS vector), told without importing TenSEAL."""
    return hasattr(value, "decrypt") and hasattr(value, "serialize")


def weighted_average(states: Sequence[NumpyState], weights: Sequence[float]) -> NumpyState:
    """Sum_i w_i / sum(w) * state_i for float entries (plain or encrypted); max for integer entries."""
    if not states or len(states) != len(weights):
        raise ValueError(f"need one weight per state, got {len(states)} states and {len(weights)} weights")
    w = np.asarray(weights, dtype=np.float64)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"aggregation weights must be >= 0 with a positive sum, got {list(weights)}")
    w = w / w.sum()
    out: NumpyState = {}
    for key, first in states[0].items():
        if is_ciphertext(first):
            acc = None
            for wi, state in zip(w, states):
                term = state[key] * float(wi)
                acc = term if acc is None else acc + term
            out[key] = acc
            continue
        first = np.asarray(first)
        if np.issubdtype(first.dtype, np.floating):
            acc = np.zeros(first.shape, dtype=np.float64)
            for wi, state in zip(w, states):
                acc += wi * np.asarray(state[key], dtype=np.float64)
            out[key] = acc.astype(first.dtype)
        else:
            out[key] = np.maximum.reduce([np.asarray(state[key]) for state in states])
    return out
