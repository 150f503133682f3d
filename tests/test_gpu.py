"""On a GPU (skipped, with the reason, where CUDA is absent): a site trains and evaluates on CUDA, ``"auto"``
puts site k on GPU k mod the number of GPUs, bf16 autocast runs, loader workers with pinned memory give the
same batches as the site's own process, and what leaves the site is float32 NumPy on the CPU."""

import numpy as np
import pytest
import torch

from executors.trainer import SiteTrainer, resolve_device
from flamby_flare.model_state import initial_model, to_numpy_state
from flamby_flare.protocol import TrainPlan

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def test_heart_site_trains_on_the_gpu_like_on_the_cpu(data_root):
    from flamby_flare.datasets import fed_heart_disease as heart

    assert resolve_device("auto", 0) == torch.device("cuda:0")
    assert resolve_device("auto", torch.cuda.device_count()) == torch.device("cuda:0")
    params = to_numpy_state(initial_model(heart, 42))
    plan = TrainPlan("fed_heart_disease", 42, 0.01, 50, 4)
    gpu = SiteTrainer("fed_heart_disease", 0, data_root, device="auto")
    cpu = SiteTrainer("fed_heart_disease", 0, data_root, device="cpu")
    assert next(gpu.model.parameters()).is_cuda
    on_gpu, on_cpu = gpu.train(params, plan, 0), cpu.train(params, plan, 0)
    for key, value in on_gpu.params.items():
        assert isinstance(value, np.ndarray) and value.dtype == np.float32
        np.testing.assert_allclose(value, on_cpu.params[key], rtol=1e-4, atol=1e-6)
    assert gpu.evaluate(on_gpu.params) == pytest.approx(cpu.evaluate(on_cpu.params), abs=1 / gpu.n_test + 1e-9)


def test_image_site_with_bf16_and_pinned_loader_workers(image_data_root):
    plan = TrainPlan("fed_isic2019", 5, 0.01, 2, 3)
    from flamby_flare.datasets import get_dataset

    params = to_numpy_state(initial_model(get_dataset("fed_isic2019"), 5))
    runs = {}
    for workers in (0, 2):
        trainer = SiteTrainer(
            "fed_isic2019", 0, image_data_root("fed_isic2019"), device="cuda:0", num_workers=workers, precision="bf16"
        )
        runs[workers] = trainer.train(params, plan, 0)
        assert np.isfinite(runs[workers].loss)
        assert all(v.dtype == params[k].dtype for k, v in runs[workers].params.items())
        assert 0.0 <= trainer.evaluate(runs[workers].params) <= 1.0
    # the workers build the same batches (a batch is a function of its indices and seed): same first loss
    assert runs[0].loss == pytest.approx(runs[2].loss, rel=1e-2)
    assert torch.cuda.max_memory_allocated() > 0
