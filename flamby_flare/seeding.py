"""Seeds: one run seed, from which every random stream is derived deterministically.

Per-site streams are derived from ``(seed, center, ...)`` rather than carried in process memory, so a
site gives the same numbers whether NVFlare keeps its process alive or swaps it out between rounds.
"""

from __future__ import annotations

import os
import random
import threading

import numpy as np

SEED_ENV = "FLAMBY_FLARE_SEED"
# Held by every step that seeds or draws from the process-global generators (Python's, NumPy's, torch's) in
# a process that runs several things at once (``flamby-flare benchmark``'s central cells and evaluations):
# a model built in one thread draws from the RNG that another thread's seeded training is shuffling with.
GLOBAL_RNG = threading.RLock()
DEFAULT_SEED = 42


def resolve_seed(seed: int | str | None = None) -> int:
    """Explicit seed > environment ``FLAMBY_FLARE_SEED`` > 42."""
    if seed is None or seed == "":
        seed = os.environ.get(SEED_ENV) or DEFAULT_SEED
    try:
        return int(seed)
    except ValueError:
        raise ValueError(f"seed must be an integer, got {seed!r}") from None


def derive_seed(*keys: int) -> int:
    """A 32-bit seed that depends on every key (NumPy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch, as FLamby's ``set_seed`` does (``torch.manual_seed``). Without an
    accelerator the CPU generator is all there is to seed: seeded alone, because ``torch.manual_seed`` would
    also queue a seeding of CUDA for its lazy start, formatting the caller's whole stack every time (1.5 ms a
    site round in a simulator worker, where the stack is deep)."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    if torch.cuda.is_available() or torch.backends.mps.is_available() or torch.xpu.is_available():
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)


def get_rng_state() -> dict:
    """The states of Python's, NumPy's and torch's global generators (as tensors and plain types)."""
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict) -> None:
    """Restore what ``get_rng_state`` returned (an empty dict leaves the generators as they are)."""
    if not state:
        return
    import torch

    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
