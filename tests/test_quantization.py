"""Message quantization (``executors.quantization``, NVFlare's filters) and the wire sizes the server's
``controllers.traffic.MessageSize`` filters record: a float16 message is half a float32 one, the sender's
own state is never quantized in place, non-float entries travel as they are, and a quantized heart run
trains as the plain one does up to float16 rounding."""

import json

import numpy as np
import pytest
import torch
from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.apis.fl_context import FLContext

from controllers.traffic import serialized_bytes
from flamby_flare.jobs import job_files, write_job
from tests.simulator import run_dir, run_simulator


@pytest.fixture(scope="module")
def quantization():
    """``executors.quantization``, imported by the tests that use it: NVFlare's filters import bitsandbytes, 4
    CPU-s in every pytest worker that collects this module, most of which run none of it."""
    import executors.quantization

    return executors.quantization


def _message(state: dict):
    return DXO(DataKind.WEIGHTS, data=state).to_shareable()


def test_float16_halves_a_float32_message_and_leaves_the_senders_state_and_other_dtypes_alone(quantization):
    rng = np.random.default_rng(0)
    state = {
        "conv.weight": rng.normal(size=(1000, 500)).astype(np.float32),
        "bn.num_batches_tracked": np.array(7),
        "fc.bias": rng.normal(size=10).astype(np.float32),
    }
    sent = {k: v.copy() for k, v in state.items()}
    plain = serialized_bytes(_message(state))
    quantized = quantization.Quantizer("float16").process(_message(state), FLContext())
    assert {k: v.dtype for k, v in from_shareable(quantized).data.items()} == {
        "conv.weight": np.float16,
        "bn.num_batches_tracked": np.int64,
        "fc.bias": np.float16,
    }
    assert all(np.array_equal(state[k], sent[k]) and state[k].dtype == sent[k].dtype for k in state)  # untouched
    assert 0.49 < serialized_bytes(quantized) / plain < 0.51
    back = from_shareable(quantization.Dequantizer().process(quantized, FLContext())).data
    assert list(back) == list(state) and {v.dtype for v in back.values()} == {np.dtype(np.float32), np.dtype(np.int64)}
    assert back["bn.num_batches_tracked"] == 7
    assert np.allclose(back["conv.weight"], state["conv.weight"], rtol=1e-3, atol=1e-4)
    assert not np.array_equal(back["conv.weight"], state["conv.weight"])  # rounded on the wire


def test_every_sites_copy_of_a_task_goes_out_quantized(quantization):
    """NVFlare gives each site a shallow copy of the task (``make_copy``), sharing its DXO's meta: the
    quantizer's flag set for the first site once made the others go out unquantized."""
    from nvflare.apis.shareable import make_copy

    task = _message({"w": np.ones((100, 100), np.float32)})
    copies = [quantization.Quantizer("float16").process(make_copy(task), FLContext()) for _ in range(3)]
    assert [from_shareable(c).data["w"].dtype for c in copies] == [np.float16] * 3
    assert from_shareable(task).data["w"].dtype == np.float32 and not from_shareable(task).meta


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_blockwise8_without_a_gpu_is_refused_in_one_line(quantization):
    with pytest.raises(RuntimeError, match="^blockwise8 quantization needs a CUDA GPU at the server and every site"):
        quantization.Quantizer("blockwise8")


def test_the_job_quantizes_both_ways_and_measures_on_the_wire(quantization):
    files = job_files(
        "fed_heart_disease",
        "fedavg",
        quantization="float16",
        client_dp={"clip_norm": 1.0, "noise_multiplier": 0.5, "delta": 1e-3},
    )
    server, client = (json.loads(files[f"app/config/config_fed_{side}.json"]) for side in ("server", "client"))
    paths = lambda chain: [[f["path"].rsplit(".", 1)[1] for f in c["filters"]] for c in chain]  # noqa: E731
    assert paths(server["task_data_filters"]) == [["Quantizer", "MessageSize"]]
    assert paths(server["task_result_filters"]) == [["MessageSize", "Dequantizer"]]
    assert paths(client["task_data_filters"]) == [["Dequantizer"]]
    assert paths(client["task_result_filters"]) == [["ClientLevelDP", "Quantizer"]]  # noise first, then rounding
    assert json.loads(files["meta.json"])["name"] == "fed_heart_disease_fedavg_cdp_fp16"
    for make in (
        lambda: job_files("fed_heart_disease", "fedavg", quantization="int4"),
        lambda: quantization.Quantizer("int4"),
    ):
        with pytest.raises(ValueError, match="quantization must be one of float16, blockwise8, got 'int4'"):
            make()  # the generator, and the filter of a hand-edited job
    from controllers.traffic import MessageSize

    with pytest.raises(ValueError, match="direction must be one of task_data, task_result, got 'out'"):
        MessageSize("out")


@pytest.mark.simulator
def test_a_float16_run_trains_as_the_plain_one_up_to_rounding(tmp_path, data_root):
    runs = {}
    for quantization in (None, "float16"):
        job = write_job(
            "fed_heart_disease",
            "fedavg",
            tmp_path / str(quantization),
            num_rounds=3,
            seed=5,
            **({"quantization": quantization} if quantization else {}),
        )
        proc = run_simulator(job, tmp_path / f"ws_{quantization}", 4, {"FLAMBY_FLARE_DATA": str(data_root)})
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        out = run_dir(tmp_path / f"ws_{quantization}")
        runs[quantization] = (
            json.loads((out / "summary.json").read_text()),
            torch.load(out / "FL_global_model.pt", weights_only=True)["model"],
        )
    (plain, plain_model), (half, half_model) = runs[None], runs["float16"]
    for key, value in plain_model.items():
        assert value.dtype == half_model[key].dtype == torch.float32
        assert torch.allclose(value, half_model[key], atol=2e-3), key
    assert not all(torch.equal(plain_model[k], half_model[k]) for k in plain_model)
    for summary in (plain, half):
        assert [t["rounds"] for t in summary["communication"].values()] == [3] * 4
    # heart's model is 14 floats: the quantizer's own metadata outweighs what float16 saves
    assert all(
        half["communication"][s]["received_bytes"] > plain["communication"][s]["received_bytes"]
        for s in plain["per_site"]
    )
