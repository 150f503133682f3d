"""What every DP mechanism of a site shares: how its Gaussian noise is set, how the privacy it spends is
accounted (Opacus' accountants), and the ledger record it reports.

A mechanism's accountant history, a list of ``(noise_multiplier, sample_rate, steps)``, is kept in the
site's run state (``executors.site_state.SiteState`` under the run key, ``save_round``): round r starts
from what round r - 1 saved. So the accounting survives process swaps (``-t`` < sites) and job
restarts. A round that a restarted server repeats with the same input reproduces the very same output
(the noise is drawn from the same seeds), which costs no further privacy; repeated with a different input
(or with ``secure_mode`` noise), it is counted again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from flamby_flare.errors import FlambyFlareError
from flamby_flare.model_state import NumpyState
from flamby_flare.settings import SettingError

# Opacus is imported where it is used: a site without DP does not pay its import (about 1 s) at every start.

ACCOUNTANTS = ("rdp", "prv")
History = list[tuple[float, float, int]]


class PrivacyBudgetExceeded(FlambyFlareError, RuntimeError):
    """Training one more round would spend more than the site's budget."""


@dataclass(frozen=True, kw_only=True)
class GaussianBudget:
    """How a Gaussian mechanism's noise is set: either ``noise_multiplier`` (sigma) or ``target_epsilon``,
    for which Opacus computes the smallest sigma that spends at most ``target_epsilon`` over the run's
    planned steps. ``target_epsilon`` is also the budget: a site refuses a round that would exceed it.

    Args:
        delta: the delta of the reported (epsilon, delta).
        target_epsilon: the run's budget (and what sets sigma when ``noise_multiplier`` is None).
        noise_multiplier: sigma, the noise std in units of the clipping norm.
        accountant: ``"rdp"`` (Mironov 2017, the default) or ``"prv"`` (Gopi et al. 2021, tighter).
        secure_mode: draw the noise from OS entropy instead of the run seed. Off (as in Opacus), noise is
            reproducible from the run seed, which the server knows: fine for research, not for production.
        release_train_loss: report the round's training loss to the server. It is computed from the
            training data and not covered by the guarantee, so it is withheld by default.
    """

    delta: float
    target_epsilon: float | None = None
    noise_multiplier: float | None = None
    accountant: str = "rdp"
    secure_mode: bool = False
    release_train_loss: bool = False

    mechanism: ClassVar[str] = "gaussian"
    clip_field: ClassVar[str]  # the subclass's clipping-norm field

    @property
    def clip(self) -> float:
        return float(getattr(self, self.clip_field))

    def __post_init__(self) -> None:
        if not self.clip > 0:
            raise SettingError(f"{self.mechanism}: {self.clip_field} must be > 0, got {self.clip}")
        if self.target_epsilon is None and self.noise_multiplier is None:
            raise SettingError(f"{self.mechanism}: give target_epsilon (a budget) or noise_multiplier")
        if self.target_epsilon is not None and not self.target_epsilon > 0:
            raise SettingError(f"{self.mechanism}: target_epsilon must be > 0, got {self.target_epsilon}")
        if self.noise_multiplier is not None and not self.noise_multiplier > 0:
            raise SettingError(f"{self.mechanism}: noise_multiplier must be > 0, got {self.noise_multiplier}")
        if not 0 < self.delta < 1:
            raise SettingError(f"{self.mechanism}: delta must be in (0, 1), got {self.delta}")
        if self.accountant not in ACCOUNTANTS:
            raise SettingError(
                f"{self.mechanism}: accountant must be one of {', '.join(ACCOUNTANTS)}, got {self.accountant!r}"
            )

    @classmethod
    def from_dict(cls, values: dict) -> "GaussianBudget":
        """From a job's JSON arguments; an unknown key is refused, naming the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SettingError(
                f"{cls.mechanism}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing := [name for name in required if name not in values]:
            raise SettingError(f"{cls.mechanism}: missing setting(s) {', '.join(missing)}")
        return cls(**values)

    def sigma(self, sample_rate: float, steps: int) -> float:
        """The noise multiplier for the run's ``steps`` steps at ``sample_rate``."""
        if steps < 1:
            raise SettingError(
                f"{self.mechanism} needs the run's number of rounds (the task's total_rounds) to plan its noise"
            )
        if self.noise_multiplier is not None:
            return float(self.noise_multiplier)
        try:
            return _noise_for(self.target_epsilon, self.delta, sample_rate, steps, self.accountant)
        except ValueError as exc:  # Opacus: "The privacy budget is too low."
            raise SettingError(
                f"{self.mechanism}: no noise multiplier reaches epsilon {self.target_epsilon} at delta {self.delta} "
                f"over {steps} steps at sample rate {sample_rate:.4g} ({exc})"
            ) from None

    def epsilon(self, history: History) -> float:
        return epsilon_of(history, self.delta, self.accountant)

    def record(self, sigma: float, history: History, epsilon: float, **extra) -> dict:
        """The ledger record of what this mechanism has spent (``history``, i.e. ``epsilon``) at a site."""
        return {
            "mechanism": self.mechanism,
            "noise_multiplier": sigma,
            "clip_norm": self.clip,
            "delta": self.delta,
            "epsilon": epsilon,
            "target_epsilon": self.target_epsilon,
            "accountant": self.accountant,
            "steps": int(sum(s for _, _, s in history)),
            "noise_seed": "os-entropy" if self.secure_mode else "run-seed",
            **extra,
        }


@functools.lru_cache(maxsize=64)
def _noise_for(target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    from opacus.accountants.utils import get_noise_multiplier

    tolerance = min(0.01, 0.01 * target_epsilon)  # Opacus' default 0.01 is 10 % of epsilon = 0.1
    with _opacus_alpha_warnings_off():
        return float(
            get_noise_multiplier(
                target_epsilon=target_epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=accountant,
                epsilon_tolerance=tolerance,
            )
        )


@contextlib.contextmanager
def _opacus_alpha_warnings_off() -> Iterator[None]:
    """Opacus' RDP warns when its best order is at the end of its default range: the bound it gives is
    then valid but loose (e.g. epsilon 50). We keep Opacus' defaults, so that numbers match Opacus'."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the (largest|smallest) alpha")
        yield


def epsilon_of(history: History, delta: float, accountant: str = "rdp") -> float:
    """Opacus' epsilon at ``delta`` for an accountant history (0 for no history)."""
    from opacus.accountants import create_accountant

    if not history:
        return 0.0
    acc = create_accountant(mechanism=accountant)
    acc.history = [(float(s), float(q), int(n)) for s, q, n in history]
    with _opacus_alpha_warnings_off():
        return float(acc.get_epsilon(delta=delta))


def compose(history: History, sigma: float, sample_rate: float, steps: int) -> History:
    """``history`` plus ``steps`` steps (merged with the last entry when it has the same sigma and rate,
    as Opacus' accountants do)."""
    if history and history[-1][0] == sigma and history[-1][1] == sample_rate:
        return [*history[:-1], (sigma, sample_rate, history[-1][2] + steps)]
    return [*history, (sigma, sample_rate, steps)]


def digest(params: NumpyState) -> str:
    """A fingerprint of a model state (the input of a round)."""
    h = hashlib.sha256()
    for key in sorted(params):
        value = np.ascontiguousarray(params[key])
        h.update(key.encode())
        h.update(str(value.dtype).encode())
        h.update(value.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Booking:
    """A round's spending at a site, already checked against the budget; ``commit`` books it once the
    round's result is released."""

    ledger: "RoundLedger"
    round_index: int
    input_digest: str
    sigma: float
    history: History
    epsilon: float

    def commit(self, **extra) -> dict:
        """Save the history as this round's; returns the ledger record (``extra``: mechanism-specific fields)."""
        self.ledger.state.save_round(
            self.ledger.name,
            self.round_index,
            {
                "history": np.asarray(self.history, dtype=np.float64).reshape(-1, 3),
                "input": np.frombuffer(self.input_digest.encode(), dtype=np.uint8),
            },
        )
        return self.ledger.budget.record(self.sigma, self.history, self.epsilon, **extra)


class RoundLedger:
    """One mechanism's (``budget``'s) accountant history at one site over a run, versioned per round in
    ``state`` (a ``SiteState``) under ``name``."""

    def __init__(self, state, name: str, budget: GaussianBudget):
        self.state, self.name, self.budget = state, name, budget

    def _load(self, round_index: int) -> tuple[History, str] | None:
        stored = self.state.load_round(self.name, round_index)
        if stored is None:
            return None
        history = [(float(s), float(q), int(n)) for s, q, n in stored["history"].reshape(-1, 3)]
        return history, bytes(stored["input"]).decode()

    def _before(self, round_index: int, input_digest: str) -> History:
        """The history to compose round ``round_index`` onto."""
        repeated = self._load(round_index)
        if repeated is not None and repeated[1] != input_digest:
            return repeated[0]  # the round ran before on another input: that release counts too
        previous = self._load(round_index - 1)
        return previous[0] if previous is not None else []

    def epsilon(self, round_index: int) -> float:
        """The epsilon spent after round ``round_index`` (0 before any round)."""
        stored = self._load(round_index)
        return self.budget.epsilon(stored[0]) if stored is not None else 0.0

    def spend(self, round_index: int, input_digest: str, sigma: float, sample_rate: float, steps: int) -> Booking:
        """This round's ``steps`` steps at (``sigma``, ``sample_rate``) on top of what the run spent before,
        refused (``PrivacyBudgetExceeded``) if they would bring epsilon past ``budget.target_epsilon``."""
        budget = self.budget
        history = compose(self._before(round_index, input_digest), sigma, sample_rate, steps)
        eps = budget.epsilon(history)
        if budget.target_epsilon is not None and eps > budget.target_epsilon * (1 + 1e-9):
            raise PrivacyBudgetExceeded(
                f"{budget.mechanism} budget exhausted: round {round_index + 1} would bring epsilon to {eps:.4g} "
                f"> {budget.target_epsilon} (delta {budget.delta}); the site refuses to train further"
            )
        return Booking(self, round_index, input_digest, sigma, history, eps)
