"""The controller's per-round checkpoint: everything a restarted job needs to continue bit-identically.

One file, written atomically (``.tmp`` then rename) after every completed round, so a crash at any moment
leaves the previous round's checkpoint intact. Arrays are stored as tensors from NumPy without a dtype
change, so the round trip is exact; everything else (config, history, dropped sites, the run id and the plain
parts of the random generators' states) as one JSON string, which round-trips floats exactly and which
``torch.save`` writes as one object instead of pickling thousands (7 ms a round before, on the 2-core machine,
in series with the round). The file loads with ``torch.load(weights_only=True)``.

Every run has its own id (``open_run``): its folder ``<state root>/server/<run id>`` holds its checkpoint,
and the sites keep their state under the same id, so two runs, even identical ones started at once, never
share state. While a run is alive it holds an exclusive lock on its folder; a resume continues an
unlocked run: the one named (``resume_run``), or the only unfinished run of the same job and settings.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flamby_flare.model_state import NumpyState

FORMAT = 3
LOCK_FILE = "lock"


@dataclass
class Checkpoint:
    """``config``: what the run must match to resume; ``rounds_done``: completed rounds; ``params``: the
    global model after them; ``strategy_state``: e.g. SCAFFOLD's c, FedOpt's m and v; ``history``: the
    per-round log (Cyclic's orders included); ``dropped``: sites dropped and when; ``rng_state``: the
    server's global random generators; ``run_id``: the run it belongs to (its sites' state is kept under it)."""

    config: dict
    rounds_done: int
    params: NumpyState
    strategy_state: dict[str, NumpyState] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    rng_state: dict = field(default_factory=dict)
    run_id: str = ""


def to_tensors(state: NumpyState) -> dict:
    import torch

    return {k: torch.from_numpy(np.array(v, copy=True)) for k, v in state.items()}


def _to_numpy(state: dict) -> NumpyState:
    return {k: v.numpy() for k, v in state.items()}


def plain(value):
    """``value`` as it comes back from the checkpoint's JSON (tuples as lists)."""
    return json.loads(json.dumps(value))


def _split_rng(state: dict) -> tuple[dict, dict]:
    """``seeding.get_rng_state``'s tensors, and the rest (JSON)."""
    if not state:
        return {}, {}
    numpy = state["numpy"]
    return (
        {"numpy_keys": numpy["keys"], "torch": state["torch"]},
        {"python": state["python"], "numpy": {k: v for k, v in numpy.items() if k != "keys"}},
    )


def _joined_rng(tensors: dict, rest: dict) -> dict:
    if not rest:
        return {}
    version, internal, gauss = rest["python"]
    return {
        "python": (version, tuple(internal), gauss),
        "numpy": {"keys": tensors["numpy_keys"], **rest["numpy"]},
        "torch": tensors["torch"],
    }


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng_tensors, rng_rest = _split_rng(checkpoint.rng_state)
    meta = {
        "config": checkpoint.config,
        "rounds_done": checkpoint.rounds_done,
        "history": checkpoint.history,
        "dropped": checkpoint.dropped,
        "rng_state": rng_rest,
        "run_id": checkpoint.run_id,
    }
    payload = {
        "format": FORMAT,
        "meta": json.dumps(meta),
        "params": to_tensors(checkpoint.params),
        "strategy_state": {name: to_tensors(s) for name, s in checkpoint.strategy_state.items()},
        "rng_tensors": rng_tensors,
    }
    import torch

    buffer = io.BytesIO()  # then one write: torch.save straight to a file writes it in many (twice the time)
    torch.save(payload, buffer)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buffer.getbuffer())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path``, or None when there is none."""
    if not path.is_file():
        return None
    import torch

    payload = torch.load(path, weights_only=True)
    if payload.get("format") != FORMAT:
        raise RuntimeError(f"{path} has checkpoint format {payload.get('format')}, this version reads {FORMAT}")
    meta = json.loads(payload["meta"])
    return Checkpoint(
        config=meta["config"],
        rounds_done=int(meta["rounds_done"]),
        params=_to_numpy(payload["params"]),
        strategy_state={name: _to_numpy(s) for name, s in payload["strategy_state"].items()},
        history=meta["history"],
        dropped=meta["dropped"],
        rng_state=_joined_rng(payload["rng_tensors"], meta["rng_state"]),
        run_id=meta["run_id"],
    )


class Checkpointer:
    """The per-round checkpoint of run ``run_id`` in ``folder``, locked while the run is alive; ``config`` is
    what a checkpoint must match to be resumed (everything that shapes the run's numbers)."""

    def __init__(self, folder: Path, config: dict, run_id: str):
        self.folder, self.config, self.run_id = Path(folder), plain(config), run_id
        self.path = self.folder / "checkpoint.pt"
        self._lock = None

    def acquire(self) -> None:
        """Take the run's lock (another live process holding it is refused in one line)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.folder / LOCK_FILE, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise RuntimeError(
                f"run {self.run_id} is running in another process ({self.folder}); a run is resumed "
                "only once it has stopped"
            ) from None
        self._lock = handle

    def save(
        self, rounds_done: int, params: NumpyState, strategy_state: dict, history: list[dict], dropped: dict[str, int]
    ) -> None:
        from flamby_flare.seeding import get_rng_state

        save_checkpoint(
            self.path,
            Checkpoint(
                self.config, rounds_done, params, strategy_state, history, dict(dropped), get_rng_state(), self.run_id
            ),
        )

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
        """The run is over: nothing to resume. Its checkpoint and lock go, and the folder if nothing else is in it
        (a ``checkpoint_dir`` may hold what this run did not write: that stays)."""
        for path in (self.path, self.path.with_name(self.path.name + ".tmp"), self.folder / LOCK_FILE):
            path.unlink(missing_ok=True)
        self.release()
        try:
            self.folder.rmdir()
        except OSError:
            pass

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _locked(folder: Path) -> bool:
    try:
        with open(folder / LOCK_FILE, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(handle, fcntl.LOCK_UN)
        return False
    except OSError:
        return True


def open_run(
    root: Path, prefix: str, config: dict, resume: bool, resume_run: str | None, checkpoint_dir: str | None
) -> tuple[Checkpointer, Checkpoint | None]:
    """The run this controller is (locked) and the checkpoint it continues (None: a fresh start).

    A fresh run gets a new id ``<prefix>-<8 hex>``. ``resume_run`` continues that run (its checkpoint must
    exist); ``resume`` continues the only unfinished, unlocked run of ``prefix`` (several: refused, listing
    them). ``checkpoint_dir``: the checkpoint lives in ``root/<checkpoint_dir>`` instead (a plain name, as
    ``RunSettings`` checks it), and a resume takes the run id it holds."""
    from flamby_flare.paths import run_folder

    def fresh_id() -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    if checkpoint_dir:
        folder = run_folder(root, checkpoint_dir)
        kept = load_checkpoint(folder / "checkpoint.pt") if (resume or resume_run) else None
        checkpointer = Checkpointer(folder, config, kept.run_id if kept and kept.run_id else (resume_run or fresh_id()))
    elif resume_run:
        folder = run_folder(root, resume_run)
        if not (folder / "checkpoint.pt").is_file():
            raise RuntimeError(f"resume_run {resume_run}: no checkpoint at {folder} (it finished, or never ran here)")
        checkpointer = Checkpointer(folder, config, resume_run)
    else:
        candidates = (
            sorted(d for d in root.glob(f"{prefix}-*") if (d / "checkpoint.pt").is_file() and not _locked(d))
            if resume and root.is_dir()
            else []
        )
        if len(candidates) > 1:
            raise RuntimeError(
                f"resume: {len(candidates)} unfinished runs of this job: {', '.join(d.name for d in candidates)}; "
                "name the one to continue with resume_run"
            )
        run_id = candidates[0].name if candidates else fresh_id()
        checkpointer = Checkpointer(run_folder(root, run_id), config, run_id)
    checkpointer.acquire()
    try:
        return checkpointer, (checkpointer.resume() if (resume or resume_run) else None)
    except Exception:
        checkpointer.release()
        raise
