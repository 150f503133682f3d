"""The controller's per-round checkpoint: everything a restarted job needs to continue bit-identically.

One file, written atomically (``.tmp`` then rename) after every completed round, so a crash at any moment
leaves the previous round's checkpoint intact. Arrays are stored as tensors from NumPy without a dtype
change, so the round trip is exact; the file loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flamby_flare.model_state import NumpyState

FORMAT = 1


@dataclass
class Checkpoint:
    """``config``: what the run must match to resume; ``rounds_done``: completed rounds; ``params``: the
    global model after them; ``strategy_state``: e.g. SCAFFOLD's c, FedOpt's m and v; ``history``: the
    per-round log (Cyclic's orders included); ``dropped``: sites dropped and when; ``rng_state``: the
    server's global random generators."""

    config: dict
    rounds_done: int
    params: NumpyState
    strategy_state: dict[str, NumpyState] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    rng_state: dict = field(default_factory=dict)


def to_tensors(state: NumpyState) -> dict:
    import torch

    return {k: torch.from_numpy(np.array(v, copy=True)) for k, v in state.items()}


def _to_numpy(state: dict) -> NumpyState:
    return {k: v.numpy() for k, v in state.items()}


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "config": checkpoint.config,
        "rounds_done": checkpoint.rounds_done,
        "params": to_tensors(checkpoint.params),
        "strategy_state": {name: to_tensors(s) for name, s in checkpoint.strategy_state.items()},
        "history": checkpoint.history,
        "dropped": checkpoint.dropped,
        "rng_state": checkpoint.rng_state,
    }
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path``, or None when there is none."""
    if not path.is_file():
        return None
    import torch

    payload = torch.load(path, weights_only=True)
    if payload.get("format") != FORMAT:
        raise RuntimeError(f"{path} has checkpoint format {payload.get('format')}, this version reads {FORMAT}")
    return Checkpoint(
        config=payload["config"],
        rounds_done=int(payload["rounds_done"]),
        params=_to_numpy(payload["params"]),
        strategy_state={name: _to_numpy(s) for name, s in payload["strategy_state"].items()},
        history=payload["history"],
        dropped=payload["dropped"],
        rng_state=payload["rng_state"],
    )


class Checkpointer:
    """The per-round checkpoint of one run at ``path``; ``config`` is what a checkpoint must match to be
    resumed (everything that shapes the run's numbers)."""

    def __init__(self, path: Path, config: dict):
        self.path, self.config = Path(path), config

    def save(self, rounds_done: int, params: NumpyState, strategy_state: dict, history: list[dict],
             dropped: dict[str, int]) -> None:
        from flamby_flare.seeding import get_rng_state

        save_checkpoint(self.path, Checkpoint(self.config, rounds_done, params, strategy_state, history, dict(dropped),
                                              get_rng_state()))

    def resume(self) -> Checkpoint | None:
        """The checkpoint to continue from (None: there is none); one of another run is refused, naming
        what differs. Restores the server's random generators."""
        from flamby_flare.seeding import set_rng_state

        checkpoint = load_checkpoint(self.path)
        if checkpoint is None:
            return None
        if checkpoint.config != self.config:
            changed = sorted(k for k in self.config if checkpoint.config.get(k) != self.config[k])
            raise RuntimeError(
                f"cannot resume from {self.path}: it belongs to a run with different {', '.join(changed)}; "
                "delete it or set resume to false"
            )
        set_rng_state(checkpoint.rng_state)
        return checkpoint

    def delete(self) -> None:
        """The run is over: nothing to resume."""
        shutil.rmtree(self.path.parent, ignore_errors=True)
