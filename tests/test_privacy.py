"""The privacy layer without NVFlare's simulator: accounting against Opacus, per-sample clipping, the
client-level filter's clipping and noise, the budget, and what a site's train result carries."""

import copy

import numpy as np
import pytest
import torch
from nvflare.apis.fl_constant import ReservedKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.apis.signal import Signal
from nvflare.app_common.abstract.fl_model import FLModel, ParamsType
from nvflare.app_common.utils.fl_model_utils import FLModelUtils

from executors import FlambySiteExecutor, SiteTrainer
from executors.site_state import SiteState
from flamby_flare.datasets import get_dataset
from flamby_flare.datasets.tensor_dataset import fetch_batch
from flamby_flare.model_state import initial_model, to_numpy_state
from flamby_flare.protocol import (
    META_ERROR,
    META_PRIVACY,
    META_REPORT,
    METRIC_TRAIN_LOSS,
    PROP_TRAIN_INPUT,
    TrainInput,
    TrainPlan,
)
from privacy import ClientLevelDP, DPSGDConfig, DPSGDRound, PrivacyBudgetExceeded, check_private_model, clip_and_noise

HEART = get_dataset("fed_heart_disease")
PLAN = TrainPlan("fed_heart_disease", 42, 0.001, 20, 4, run_key="job-test")


def _init():
    return to_numpy_state(initial_model(HEART, 42))


def _trainer(heart_dir, tmp_path, center=0, **dp):
    return SiteTrainer(
        "fed_heart_disease",
        center,
        heart_dir.parent,
        "cpu",
        state_dir=tmp_path / "state",
        dp_sgd=DPSGDConfig(**{"max_grad_norm": 1.1, "delta": 1e-3, **dp}),
    )


@pytest.mark.parametrize("accountant,reference", [("rdp", "RDPAccountant"), ("prv", "PRVAccountant")])
def test_reported_epsilon_is_opacus_accountant_for_the_same_steps(heart_dir, tmp_path, accountant, reference):
    from opacus import accountants  # in the tests that use it: Opacus costs a pytest worker 3 CPU-s to import

    reference = getattr(accountants, reference)
    trainer = _trainer(heart_dir, tmp_path, center=2, noise_multiplier=1.3, accountant=accountant)
    params = _init()
    for r in range(3):
        result = trainer.train(params, PLAN, r, total_rounds=3)
        params = result.params
        (record,) = result.privacy
        independent = reference()
        independent.history = [(1.3, 4 / 30, (r + 1) * 20)]  # q = batch / n_site: 4 / 30 at Switzerland
        assert record["epsilon"] == pytest.approx(independent.get_epsilon(delta=1e-3), rel=1e-12)
        assert record["sample_rate"] == 4 / 30 and record["steps"] == (r + 1) * 20 and record["noise_multiplier"] == 1.3


def test_target_epsilon_sets_the_noise_for_exactly_rounds_times_updates_steps(heart_dir, tmp_path):
    from opacus.accountants import RDPAccountant
    from opacus.accountants.utils import get_noise_multiplier

    trainer = _trainer(heart_dir, tmp_path, target_epsilon=2.0)
    result = trainer.train(_init(), PLAN, 0, total_rounds=5)
    (record,) = result.privacy
    expected = get_noise_multiplier(
        target_epsilon=2.0,
        target_delta=1e-3,
        sample_rate=4 / 199,
        steps=5 * 20,
        accountant="rdp",
        epsilon_tolerance=0.01,
    )
    assert record["noise_multiplier"] == pytest.approx(expected, rel=1e-12)
    full = RDPAccountant()
    full.history = [(record["noise_multiplier"], 4 / 199, 100)]
    assert 2.0 - 0.011 < full.get_epsilon(delta=1e-3) <= 2.0  # spent after all 5 rounds: at most the budget
    assert not result.release_loss  # the training loss stays at the site by default


def test_a_site_refuses_to_train_past_its_budget(heart_dir, tmp_path):
    trainer = _trainer(heart_dir, tmp_path, target_epsilon=1.0)
    params = _init()
    first = trainer.train(params, PLAN, 0, total_rounds=2)
    second = trainer.train(first.params, PLAN, 1, total_rounds=2)
    # a restarted server repeating round 2 on the same input gets the same release, at no extra cost
    again = trainer.train(first.params, PLAN, 1, total_rounds=2)
    assert again.privacy == second.privacy
    assert all(np.array_equal(again.params[k], second.params[k]) for k in second.params)
    with pytest.raises(
        PrivacyBudgetExceeded, match=r"dp-sgd budget exhausted: round 3 would bring epsilon to .* > 1.0"
    ):
        trainer.train(second.params, PLAN, 2, total_rounds=2)
    # round 2 repeated on another input is a second release: it counts, and here it no longer fits
    with pytest.raises(PrivacyBudgetExceeded):
        trainer.train(params, PLAN, 1, total_rounds=2)


def test_per_sample_gradients_are_clipped_before_noise(heart_dir):
    """One DP-SGD step with negligible noise equals SGD on (sum of per-sample clipped gradients) / (q n)."""
    torch.manual_seed(0)
    model, loss_fn = HEART.Baseline(), HEART.BaselineLoss()
    reference = copy.deepcopy(model)
    train = HEART.FedClass(center=0, train=True, data_path=heart_dir)
    clip, lr = 0.05, 0.5
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    config = DPSGDConfig(max_grad_norm=clip, noise_multiplier=1e-12, delta=1e-3)
    dp = DPSGDRound(
        config,
        model,
        optimizer,
        n_samples=len(train),
        batch_size=16,
        num_updates=1,
        total_rounds=1,
        round_index=0,
        seed=3,
        state=SiteState(None),
        input_digest="x",
    )
    (indices,) = list(dp.batches())
    assert len(indices) > 4
    X, y = fetch_batch(train, indices)
    dp.backward(loss_fn(model(X), y))
    dp.step()
    dp.finish()
    summed = [torch.zeros_like(p) for p in reference.parameters()]
    norms = []
    for i in range(len(indices)):
        reference.zero_grad()
        loss_fn(reference(X[i : i + 1]), y[i : i + 1]).backward()
        grads = [p.grad.detach().clone() for p in reference.parameters()]
        norm = torch.sqrt(sum((g**2).sum() for g in grads))
        norms.append(float(norm))
        for s, g in zip(summed, grads):
            s += g * min(1.0, clip / (float(norm) + 1e-6))
    assert max(norms) > 2 * clip  # clipping is really at work in this batch
    expected_batch = round(16 / len(train) * len(train))
    for p, p0, s in zip(model.parameters(), reference.parameters(), summed):
        assert torch.allclose(p.detach(), p0.detach() - lr * s / expected_batch, atol=1e-6)
    assert not hasattr(next(model.parameters()), "grad_sample")  # the model is unhooked after the round


def test_batchnorm_models_are_refused_with_a_clear_message():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))
    with pytest.raises(ValueError, match=r"dp-sgd cannot train this Sequential: .*BatchNorm.*ModuleValidator.fix"):
        check_private_model(model)
    check_private_model(HEART.Baseline())  # the tabular baselines are fine


def test_bad_dp_settings_are_refused_at_job_start():
    with pytest.raises(ValueError, match="give target_epsilon"):
        FlambySiteExecutor("fed_heart_disease", dp_sgd={"max_grad_norm": 1.0, "delta": 1e-3})
    with pytest.raises(ValueError, match="unknown setting.*max_grad"):
        FlambySiteExecutor("fed_heart_disease", dp_sgd={"max_grad": 1.0, "delta": 1e-3, "target_epsilon": 1})
    with pytest.raises(ValueError, match=r"dp-sgd: missing setting\(s\) delta$"):
        FlambySiteExecutor("fed_heart_disease", dp_sgd={"max_grad_norm": 1.0, "target_epsilon": 1})
    with pytest.raises(ValueError, match="accountant must be one of rdp, prv"):
        DPSGDConfig(max_grad_norm=1.0, delta=1e-3, noise_multiplier=1.0, accountant="gdp")


def test_client_dp_clips_to_the_bound():
    rng = np.random.default_rng(0)
    big = {
        "w": rng.normal(size=(50, 20)).astype(np.float32),
        "b": rng.normal(size=20).astype(np.float32),
        "steps": np.array(7),
    }
    clipped, norm = clip_and_noise(big, 0.5, 0.0, rng)
    assert norm > 0.5
    out_norm = np.sqrt(sum(np.sum(clipped[k].astype(np.float64) ** 2) for k in ("w", "b")))
    assert out_norm == pytest.approx(0.5, rel=1e-6)
    assert clipped["w"] / big["w"] == pytest.approx(np.full((50, 20), 0.5 / norm), rel=1e-5)  # direction kept
    assert clipped["steps"] == 7  # integer counters are not data
    small = {k: v * 1e-3 for k, v in big.items() if k != "steps"}
    unclipped, _ = clip_and_noise(small, 0.5, 0.0, rng)
    assert all(np.array_equal(unclipped[k], small[k]) for k in small)


def test_client_dp_noise_has_std_sigma_c():
    zero = {"w": np.zeros(400_000, np.float64)}
    noisy, _ = clip_and_noise(zero, clip_norm=2.0, noise_std=0.5 * 2.0, rng=np.random.default_rng(1234))
    sample = noisy["w"]
    se_mean, se_std = 1.0 / np.sqrt(sample.size), 1.0 / np.sqrt(2 * sample.size)
    assert abs(sample.mean()) < 4 * se_mean
    assert abs(sample.std() - 1.0) < 4 * se_std


def _filter_input(tmp_path, params, round_index=0, total_rounds=3):
    return TrainInput(params, round_index, total_rounds, PLAN, 0, SiteState(tmp_path / "state"))


def test_client_dp_filter_sends_a_noisy_difference_and_accounts_rounds(tmp_path):
    from opacus.accountants import RDPAccountant

    x = {"w": np.ones(1000, np.float32), "n": np.array(3)}
    y = {"w": np.full(1000, 3.0, np.float32), "n": np.array(4)}  # update norm 2 * sqrt(1000), clipped to 1
    dp = ClientLevelDP(clip_norm=1.0, noise_multiplier=0.8, delta=1e-4)
    reply = FLModel(
        params_type=ParamsType.FULL,
        params=y,
        metrics={METRIC_TRAIN_LOSS: 0.3, "train_seconds": 1.0},
        meta={"n_samples": 10},
    )
    for r in range(3):
        out = dp.privatize(reply, _filter_input(tmp_path, x, r))
        assert out.params_type == ParamsType.DIFF and out.params["n"] == 1
        assert METRIC_TRAIN_LOSS not in out.metrics  # withheld by default
        (record,) = out.meta[META_PRIVACY]
        independent = RDPAccountant()
        independent.history = [(0.8, 1.0, r + 1)]
        assert record["epsilon"] == pytest.approx(independent.get_epsilon(delta=1e-4), rel=1e-12)
        assert (
            record["mechanism"] == "client-dp"
            and record["clip_norm"] == 1.0
            and out.metrics["epsilon"] == record["epsilon"]
        )
    # the clipped update (norm 1 along the all-ones direction) is under the noise, std 0.8 per coordinate
    w = out.params["w"].astype(np.float64)
    assert abs(w.mean() - 1 / np.sqrt(1000)) < 4 * 0.8 / np.sqrt(1000)
    assert 0.7 < w.std() < 0.9


def _filter(dp: ClientLevelDP, reply: FLModel, train_input: TrainInput) -> FLModel:
    """``dp.process`` as NVFlare calls it, on site-2."""
    ctx = FLContext()
    ctx.set_prop(ReservedKey.IDENTITY_NAME, "site-2", private=False, sticky=False)
    ctx.set_prop(PROP_TRAIN_INPUT, train_input, private=True, sticky=False)
    return FLModelUtils.from_shareable(dp.process(FLModelUtils.to_shareable(reply), ctx))


def test_client_dp_refuses_scaffold_and_rounds_past_its_budget(tmp_path):
    x = {"w": np.zeros(3, np.float32)}
    scaffold = FLModel(
        params_type=ParamsType.FULL,
        params={"w": np.ones(3, np.float32)},
        meta={META_REPORT: {"c_diff": {"w": np.zeros(3, np.float32)}}},
    )
    out = _filter(ClientLevelDP(clip_norm=1.0, noise_multiplier=0.8, delta=1e-4), scaffold, _filter_input(tmp_path, x))
    assert out.meta[META_ERROR].startswith(
        "site-2: client-dp: cannot serve fedavg: its site reports more than the model (c_diff)"
    )
    dp = ClientLevelDP(clip_norm=1.0, target_epsilon=3.0, delta=1e-4)
    reply = FLModel(params_type=ParamsType.FULL, params={"w": np.ones(3, np.float32)}, meta={})
    assert META_ERROR not in _filter(dp, reply, _filter_input(tmp_path, x, 0, total_rounds=1)).meta
    out = _filter(dp, reply, _filter_input(tmp_path, x, 1, total_rounds=1))
    assert out.meta[META_ERROR].startswith("site-2: client-dp: client-dp budget exhausted: round 2")


def _walk(value, path="", found=None):
    """Every leaf of a (nested) task result: path -> value."""
    found = {} if found is None else found
    if isinstance(value, dict):
        for k, v in value.items():
            _walk(v, f"{path}/{k}", found)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _walk(v, f"{path}[{i}]", found)
    else:
        found[path] = value
    return found


@pytest.mark.parametrize("mechanisms", ["dp_sgd", "client_dp", "both"])
def test_a_train_result_holds_only_the_model_and_declared_scalars(heart_dir, tmp_path, mechanisms):
    """The whole Shareable that leaves the site (after its result filter): model entries with the
    model's shapes, and scalars; nothing with a row per sample, no feature row, no label vector."""
    executor = FlambySiteExecutor(
        "fed_heart_disease",
        dp_sgd={"max_grad_norm": 1.1, "delta": 1e-3, "noise_multiplier": 1.0} if mechanisms != "client_dp" else None,
    )
    trainer = SiteTrainer(
        "fed_heart_disease", 1, heart_dir.parent, "cpu", state_dir=tmp_path, dp_sgd=executor.settings.dp_sgd
    )
    executor._trainer = trainer
    ctx = FLContext()
    ctx.set_prop(ReservedKey.IDENTITY_NAME, "site-2", private=False, sticky=False)
    task = FLModel(params_type=ParamsType.FULL, params=_init(), current_round=0, total_rounds=2, meta=PLAN.to_meta())
    result = executor.execute("train", FLModelUtils.to_shareable(task), ctx, Signal())
    if mechanisms != "dp_sgd":
        result = ClientLevelDP(clip_norm=0.5, noise_multiplier=1.0, delta=1e-3).process(result, ctx)
    assert isinstance(result, Shareable)
    leaves = _walk(dict(result))
    shapes = {k: v.shape for k, v in _init().items()}
    train = HEART.FedClass(center=1, train=True, data_path=heart_dir)
    X, _ = fetch_batch(train, torch.arange(len(train)))
    arrays = {p: v for p, v in leaves.items() if isinstance(v, (np.ndarray, torch.Tensor))}
    assert {p.rsplit("/", 1)[-1] for p in arrays} == set(shapes)
    for p, v in arrays.items():
        assert v.shape == shapes[p.rsplit("/", 1)[-1]]
        assert len(train) not in v.shape
    for p, v in leaves.items():
        if p not in arrays:
            assert v is None or isinstance(v, (bool, int, float, str)), f"{p}: {type(v)}"
    floats = {round(float(v), 6) for v in leaves.values() if isinstance(v, float)}
    assert not floats & {round(float(v), 6) for v in X[:, 0].unique()}  # no raw ages
    model = FLModelUtils.from_shareable(result)
    assert set(model.metrics) <= {"train_seconds", "epsilon"}
    assert len(model.meta[META_PRIVACY]) == (2 if mechanisms == "both" else 1)


def test_secure_mode_noise_is_not_the_run_seeds(heart_dir, tmp_path):
    """By default the noise is reproducible from the run seed; in secure mode it comes from OS entropy."""
    params = _init()
    runs = {}
    for secure in (False, True):
        for i in range(2):
            trainer = _trainer(heart_dir, tmp_path / f"{secure}{i}", noise_multiplier=1.0, secure_mode=secure)
            runs[secure, i] = trainer.train(params, PLAN, 0, total_rounds=1)
    assert all(np.array_equal(runs[False, 0].params[k], runs[False, 1].params[k]) for k in params)
    assert not all(np.array_equal(runs[True, 0].params[k], runs[True, 1].params[k]) for k in params)
    assert (
        runs[True, 0].privacy[0]["noise_seed"] == "os-entropy" and runs[False, 0].privacy[0]["noise_seed"] == "run-seed"
    )
