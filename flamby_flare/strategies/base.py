"""A federated strategy as one unit: its server rule and its site rule, in one file per strategy.

- Server rule (pure: arrays in, arrays out): ``schedule`` (which groups of sites train in turn, from the
  model as it stands), ``aggregate`` (global state + the group's results in site order + strategy state ->
  new global state + strategy state) and ``message`` (what the sites get with the round's plan, e.g.
  SCAFFOLD's global control).
- Site rule (``SiteRule``): hooks on the one local training loop (``flamby_flare.local_training``): a
  data-independent penalty added to the loss (FedProx), a gradient correction (SCAFFOLD), what the site
  keeps between rounds (in its ``SiteState``) and what it reports besides its model.

Both runners call exactly this code: the NVFlare controllers (``controllers``, whose ``controllers.<Label>``
classes are made from the registry) and FLamby's in-process API (``flamby_flare.strategies.FedAvg`` ...).
A new strategy is one new file in this package: a ``Strategy`` subclass that sets ``name`` registers
itself; its dataclass fields (``setting``) are its hyperparameters, validated when it is built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from flamby_flare.errors import SiteStateError
from flamby_flare.settings import SettingError, Settings
from flamby_flare.strategies.aggregation import NumpyState, weighted_average

if TYPE_CHECKING:  # torch is imported where a site trains, not where a job is written
    import torch

    from executors.site_state import SiteState

StrategyState = dict[str, NumpyState]  # e.g. {"m": ..., "v": ...}; saved with every checkpoint
REGISTRY: dict[str, type["Strategy"]] = {}


@dataclass
class SiteResult:
    """A site's ``train`` result: its new model state, train-set size, mean training loss (None: withheld
    under DP), local compute seconds, what its site rule reports (``report``), the rest of its reply, and
    the round's message sizes in bytes (``traffic``: ``received``, the task's data; ``sent``, this result;
    None in process)."""

    site: str
    params: NumpyState
    n_samples: int
    loss: float | None
    seconds: float
    meta: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)
    traffic: dict | None = None

    @property
    def privacy(self) -> list[dict]:
        """The ledger records of the DP mechanisms the site applied (``privacy.accounting``)."""
        from flamby_flare.protocol import META_PRIVACY

        return self.meta.get(META_PRIVACY, [])


@dataclass
class LocalRound:
    """What a site rule sees of the local round it runs in."""

    params: NumpyState  # the server's state; the model holds it at ``begin`` (which may load its own: MR-MTL)
    model: "torch.nn.Module"  # trained in place
    state: "SiteState"  # the site's run state: kept across rounds and process swaps, versioned per round
    round_index: int
    learning_rate: float
    num_updates: int
    # the loss of the model as it stands over the site's whole training set (no update; refused under
    # DP-SGD, whose sites release no un-noised loss); q-FFL's F_k(w^t)
    data_loss: Callable[[], float] | None = None


def previous_round(local: "LocalRound", name: str, like: dict) -> dict[str, np.ndarray]:
    """The site's ``name`` arrays saved at the previous round (``SiteState.save_round``), as float64 shaped
    like ``like``'s tensors; zeros before round 1 (SCAFFOLD's c_i, FedDyn's g_k)."""
    stored = local.state.load_round(name, local.round_index - 1)
    return {
        k: np.zeros(tuple(p.shape)) + (np.asarray(stored[k], np.float64) if stored is not None else 0.0)
        for k, p in like.items()
    }


class SiteRule:
    """What a strategy changes in a site's local updates: nothing, for FedAvg."""

    def begin(self, local: LocalRound) -> None:
        """Before the first update (read the site's state, build anchors or corrections)."""

    def penalty(self, named: dict[str, "torch.Tensor"]) -> "torch.Tensor | None":
        """A data-independent term added to every update's loss (None: none). Under DP-SGD its gradient is
        added after clipping and noise (post-processing)."""
        return None

    def correct(self, named: dict[str, "torch.Tensor"]) -> None:
        """Change the gradients in place after the backward pass (under DP-SGD: after the noise)."""

    def on_batch(self, X: "torch.Tensor", y: "torch.Tensor", loss_fn) -> None:
        """Before each update, with the model as it stands: work of the site's own on the same batch (APFL's
        personal model). What it trains never leaves the site."""

    def finish(self, local: LocalRound, new_params: NumpyState) -> dict:
        """After the last update: save what the site keeps; return what it reports besides its model."""
        return {}


@dataclass(frozen=True)
class Strategy(Settings):
    """Base of every strategy (FedAvg's rule: full participation, x <- sum_i (n_i / N) y_i)."""

    name: ClassVar[str]  # registry key and job-name part, e.g. "fedprox"
    label: ClassVar[str]  # FLamby's method label prefix and the controller's class name, e.g. "FedProx"
    client_dp_refusal: ClassVar[str | None] = None  # why client-level DP cannot serve it (None: it can)
    dp_sgd_refusal: ClassVar[str | None] = None  # why its sites cannot train under DP-SGD (None: they can)
    # why secure aggregation (flamby_flare.homomorphic) cannot serve it: its server rule needs the sites'
    # plaintext updates (None: its aggregate is a weighted sum of the sites' states, formed on ciphertexts);
    # a strategy that overrides ``aggregate`` is refused unless it declares this itself
    he_refusal: ClassVar[str | None] = None
    # a personalized strategy: the site-state name under which its site rule keeps each round's personal
    # entries (MR-MTL: its whole model; FedPer: the head); the last round's, over the final global model,
    # are the site's personalized model, evaluated beside the global one (None: not a personalized strategy)
    personal_state: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            if cls.name in REGISTRY and REGISTRY[cls.name].__qualname__ != cls.__qualname__:
                raise ValueError(f"two strategies are named {cls.name!r}: {REGISTRY[cls.name]} and {cls}")
            REGISTRY[cls.name] = cls
            cls.owner = f"{cls.name}: "
        if "aggregate" in cls.__dict__ and "he_refusal" not in cls.__dict__:  # safe by default: not assumed linear
            cls.he_refusal = (
                "its own server rule (aggregate) is not declared a weighted sum of the sites' states "
                "(a strategy whose rule is one sets he_refusal = None)"
            )

    # ---- server rule ---------------------------------------------------------------------------
    def initial_state(self, params: NumpyState, keys: Sequence[str]) -> StrategyState:
        """The strategy's server state before round 1 (``keys``: the trainable parameters)."""
        return {}

    def schedule(self, round_index: int, sites: Sequence[str], rng: np.random.Generator) -> list[list[str]]:
        """The round's groups of sites, in turn; each group trains from the model as the previous left it.
        ``rng`` is the round's own generator (derived from the run seed and the round)."""
        return [list(sites)]

    def message(self, state: StrategyState) -> dict[str, Any]:
        """What every site gets with the round's plan (arrays allowed)."""
        return {}

    def aggregate(
        self, params: NumpyState, results: list[SiteResult], state: StrategyState, keys: Sequence[str]
    ) -> tuple[NumpyState, StrategyState]:
        """The new global state (and strategy state) from the start state and a group's results."""
        return average(results), state

    # ---- site rule -----------------------------------------------------------------------------
    def site_rule(self, message: dict[str, Any]) -> SiteRule:
        """The hooks of one site's local round, given the round's ``message``."""
        return SiteRule()

    # ---- what runs and results record ----------------------------------------------------------
    def hyperparameters(self) -> dict:
        """The strategy's hyperparameters (its fields), as results record them."""
        return self.to_dict()

    def personal_model(self, global_params: NumpyState, state: "SiteState", rounds_done: int) -> NumpyState | None:
        """A personalized strategy's site model after ``rounds_done`` rounds: its last saved personal entries
        over the final global model (None: not a personalized strategy). Both runners report this one."""
        if self.personal_state is None:
            return None
        personal = state.load_round(self.personal_state, rounds_done - 1)
        if personal is None:
            raise SiteStateError(
                f"{self.name}: this site's personal model of round {rounds_done} is missing from its state"
            )
        return {**global_params, **personal}


def average(results: list[SiteResult]) -> NumpyState:
    """The sites' states averaged with weights n_i / N (the model-state policy of ``aggregation``)."""
    return weighted_average([r.params for r in results], [r.n_samples for r in results])


TrainGroup = Callable[[list[str], NumpyState, dict, int], list[SiteResult]]


def play_round(
    strategy: Strategy,
    params: NumpyState,
    state: StrategyState,
    round_index: int,
    sites: Sequence[str],
    rng: np.random.Generator,
    keys: Sequence[str],
    train: TrainGroup,
    skip: Container[str] = (),
) -> tuple[NumpyState, StrategyState, list[SiteResult], list[list[str]]]:
    """One round of ``strategy`` over ``sites``: for each group of its schedule, ``train(group, params,
    message, round_index)`` (the group's results in site order; a lost site gives none; sites in ``skip``,
    looked at as each group starts, are left out), then ``aggregate``. Returns the new global and strategy
    states, every result in the order produced, and the groups as sent."""
    results, sent = [], []
    for group in strategy.schedule(round_index, list(sites), rng):
        group = [site for site in group if site not in skip]
        if not group:
            continue
        group_results = train(group, params, strategy.message(state), round_index)
        if group_results:
            params, state = strategy.aggregate(params, group_results, state, keys)
        results += group_results
        sent.append(group)
    return params, state, results, sent


ENTRY_POINTS = "flamby_flare.strategies"  # where installed packages declare their own strategy modules
_loaded = False


def load_registry(refresh: bool = False) -> dict[str, type[Strategy]]:
    """Every strategy, by name: this package's modules, and the modules installed packages declare under
    the ``flamby_flare.strategies`` entry-point group (importing a module registers its strategies). The
    modules are this machine's installed code: nothing a job or a server sends names one."""
    global _loaded
    if _loaded and not refresh:
        return REGISTRY
    import importlib
    import pkgutil
    from importlib.metadata import entry_points

    import flamby_flare.strategies as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_") and info.name not in ("base", "aggregation", "in_process"):
            importlib.import_module(f"{package.__name__}.{info.name}")
    for entry in entry_points(group=ENTRY_POINTS):
        importlib.import_module(entry.value)
    _loaded = True
    return REGISTRY


def get_strategy(name: str) -> type[Strategy]:
    """The strategy registered as ``name`` (an unknown name is refused, listing the known ones)."""
    registry = load_registry()
    if isinstance(name, str) and name not in registry:
        registry = load_registry(refresh=True)  # a strategy installed since
    if not isinstance(name, str) or name not in registry:
        raise SettingError(f"unknown strategy {name!r}; strategies: {', '.join(strategy_names())}")
    return registry[name]


def strategy_names() -> list[str]:
    """Every registered strategy: FLamby's seven in FLamby's order, then the others by name."""
    from flamby_flare.hyperparameters import STRATEGIES

    registry = load_registry()
    return [n for n in STRATEGIES if n in registry] + sorted(n for n in registry if n not in STRATEGIES)


def make_strategy(name: str, hyperparameters: dict | None = None) -> Strategy:
    """The strategy ``name`` with ``hyperparameters`` (checked: unknown keys and bad values are refused)."""
    return get_strategy(name).from_arguments(hyperparameters, name)


def method_label(name: str, num_updates: int = 100) -> str:
    """FLamby's label of a strategy run, e.g. ``method_label("fedavg") == "FedAvg100"``."""
    return f"{get_strategy(name).label}{num_updates}"


def by_label(label: str) -> type[Strategy] | None:
    """The strategy whose label (FLamby's name, the controller's class name) is ``label``."""
    return next((cls for cls in load_registry().values() if cls.label == label), None)


def fields_of(cls: type[Strategy]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]
