"""Sample-level DP-SGD at a site (Abadi et al., "Deep Learning with Differential Privacy", CCS 2016), with
Opacus' building blocks: Poisson sampling (``UniformWithReplacementSampler``), per-sample gradients
(``GradSampleModule``), per-sample clipping to ``max_grad_norm`` and Gaussian noise of std
``noise_multiplier * max_grad_norm`` on their sum (``DPOptimizer``), and Opacus' accountants.

Unit of privacy: one training record of the site (add/remove adjacency, as Opacus). Each step samples
every record independently with rate q = batch_size / n_site, so a run of R rounds x K local updates
is R*K subsampled Gaussian steps, and with a target epsilon the noise is set for exactly those R*K
steps at rate q. (FLamby's DP example calls Opacus' ``make_private_with_epsilon(epochs=rounds)``,
which plans R epochs of n/B steps while the site takes R*K steps: for Fed-Heart-Disease's largest
center it plans 750 steps and takes 1500, so its real epsilon exceeds the target.)

Why not ``PrivacyEngine.make_private``: it fixes q to 1/len(data loader) instead of B/n, iterates
a loader per epoch where FLamby streams a fixed number of updates per round, and keeps its accountant
in process memory, which NVFlare's simulator swaps between rounds. The pieces are the same.

Strategy terms that do not depend on the data (the gradient of a site rule's penalty, e.g. FedProx's
mu (w - w_start), and its correction, e.g. SCAFFOLD's c - c_i) are added to the privatized gradient after
clipping and noise, as post-processing. ``DPSGDRound.take`` is the step of the one local loop
(``flamby_flare.local_training``).
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from flamby_flare.seeding import derive_seed
from flamby_flare.settings import SettingError
from privacy.accounting import GaussianBudget, RoundLedger

if TYPE_CHECKING:
    from executors.site_state import SiteState

# Opacus is imported where it is used: a site without DP does not pay its import (about 1 s) at every start.


@dataclass(frozen=True, kw_only=True)
class DPSGDConfig(GaussianBudget):
    """DP-SGD settings of a site (``GaussianBudget``'s, plus the per-sample clipping norm)."""

    max_grad_norm: float

    mechanism: ClassVar[str] = "dp-sgd"
    clip_field: ClassVar[str] = "max_grad_norm"


def check_private_model(model: nn.Module) -> None:
    """Refuse a model DP-SGD cannot train (Opacus' validator: BatchNorm mixes the samples of a batch, so
    a per-sample gradient does not exist and clipping bounds nothing)."""
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise SettingError(
            f"dp-sgd cannot train this {type(model).__name__}: {errors[0]}"
            + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
            + "; use a model without BatchNorm (e.g. opacus' ModuleValidator.fix, on the server and every site)"
        )


class DPSGDRound:
    """One round of DP-SGD local training on a site: ``batches()`` gives the Poisson-sampled index
    batches, ``step()`` replaces ``optimizer.step()``, ``finish()`` unhooks the model and books the round.

    The budget is checked before anything is trained: a round that would spend past ``target_epsilon``
    raises ``PrivacyBudgetExceeded``.
    """

    def __init__(
        self,
        config: DPSGDConfig,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        n_samples: int,
        batch_size: int,
        num_updates: int,
        total_rounds: int,
        round_index: int,
        seed: int,
        state: "SiteState",
        input_digest: str,
    ):
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer

        self.n_samples, self.num_updates = n_samples, num_updates
        self.sample_rate = min(1.0, batch_size / n_samples)
        self.sigma = config.sigma(self.sample_rate, total_rounds * num_updates)
        self.booking = RoundLedger(state, "dp_sgd", config).spend(
            round_index, input_digest, self.sigma, self.sample_rate, num_updates
        )
        noise_seed = secrets.randbits(63) if config.secure_mode else seed
        device = next(model.parameters()).device
        self._sampling = torch.Generator().manual_seed(derive_seed(noise_seed, 0))
        self.augmentation_seed = derive_seed(noise_seed, 2)  # of the batches' augmentation
        noise = torch.Generator(device=device).manual_seed(derive_seed(noise_seed, 1))
        self.module = GradSampleModule(model)
        self.optimizer = DPOptimizer(
            optimizer,
            noise_multiplier=self.sigma,
            max_grad_norm=config.max_grad_norm,
            expected_batch_size=max(1, round(self.sample_rate * n_samples)),
            generator=noise,
            secure_mode=config.secure_mode,
        )

    def batches(self) -> Iterator[torch.Tensor]:
        """``num_updates`` batches, each record in each with probability q (a batch may be empty)."""
        from opacus.utils.uniform_sampler import UniformWithReplacementSampler

        sampler = UniformWithReplacementSampler(
            num_samples=self.n_samples,
            sample_rate=self.sample_rate,
            generator=self._sampling,
            steps=self.num_updates,
        )
        for indices in sampler:
            yield torch.as_tensor(indices, dtype=torch.long)

    def backward(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad()
        with warnings.catch_warnings():  # an empty batch's loss has no input that requires a gradient
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            loss.backward()

    def step(self, add_grad: Callable[[], None] | None = None) -> None:
        """Clip, add noise and average (Opacus), then ``add_grad()`` for data-independent terms, then SGD."""
        if self.optimizer.pre_step():
            if add_grad is not None:
                add_grad()
            self.optimizer.original_optimizer.step()

    def take(self, loss: torch.Tensor, named: dict[str, torch.Tensor], rule) -> None:
        """The local loop's step: privatized gradients, then ``rule``'s data-independent terms, then SGD."""

        def rule_terms() -> None:
            penalty = rule.penalty(named)
            if penalty is not None:
                params = list(named.values())
                for p, g in zip(params, torch.autograd.grad(penalty, params)):
                    p.grad += g
            rule.correct(named)

        self.backward(loss)
        self.step(rule_terms)

    def finish(self) -> dict:
        """Unhook the model, book the round in the ledger; returns the site's ledger record."""
        self.module._close()
        return self.booking.commit(sample_rate=self.sample_rate)
