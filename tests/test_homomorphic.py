"""Secure aggregation by homomorphic encryption (``flamby_flare.homomorphic``, ``executors.homomorphic``):
the server's weighted sum on CKKS ciphertexts equals the plaintext one within CKKS precision, the server's
context cannot decrypt a site's update, malformed or plaintext messages are refused in one line, strategies
whose server rule needs plaintext are refused, and the committed HE job in the simulator gives the plaintext
main job's recorded result within CKKS precision while the server keeps only ciphertexts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.fl_constant import FLContextKey
from nvflare.apis.fl_context import FLContext
from nvflare.fuel.sec.security_content_service import SecurityContentService

from executors.homomorphic import Decryptor, Encryptor
from flamby_flare.homomorphic import (
    CLIENT_CONTEXT,
    META_ALGORITHM,
    META_KEYS,
    SERVER_CONTEXT,
    SIMULATOR_CONTEXTS,
    HEError,
    ServerCiphertexts,
    check_context_name,
    decrypt_model,
    load_context,
    provision_simulator,
    restore,
)
from flamby_flare.jobs import job_files
from flamby_flare.settings import SettingError
from flamby_flare.strategies.aggregation import weighted_average
from tests import golden
from tests.conftest import REPO
from tests.simulator import pinned, run_dir, run_simulator

CKKS = (0.0, 1e-5)  # what CKKS at scale 2^40 keeps of these models' entries over 15 rounds (measured: < 1e-6)


@pytest.fixture(scope="module")
def contexts(tmp_path_factory):
    """The project's key, provisioned as the simulator gets it: (folder, site context, server context)."""
    import tenseal as ts

    folder = provision_simulator(tmp_path_factory.mktemp("he"))
    return (
        folder,
        ts.context_from((folder / CLIENT_CONTEXT).read_bytes()),
        ts.context_from((folder / SERVER_CONTEXT).read_bytes()),
    )


def _site_state(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "conv.weight": rng.normal(size=(10, 500)).astype(np.float32),  # more values than one ciphertext holds
        "bn.num_batches_tracked": np.array(seed + 3),
        "fc.bias": rng.normal(size=3).astype(np.float32),
    }


def _encrypted(state: dict, site_context) -> tuple[dict, dict]:
    """What a site sends: its state through the real ``Encryptor`` filter (data, meta)."""
    encryptor = Encryptor()
    encryptor.tenseal_context = site_context
    dxo = from_shareable(encryptor.process(DXO(DataKind.WEIGHTS, data=dict(state)).to_shareable(), FLContext()))
    return dxo.data, dxo.meta


def _shapes(state: dict) -> dict:
    return {k: ([int(n) for n in v.shape], str(v.dtype)) for k, v in state.items() if v.dtype.kind == "f"}


def test_the_weighted_sum_on_ciphertexts_is_the_plaintext_one_within_ckks_precision(contexts):
    _, site_context, server_context = contexts
    states, weights = [_site_state(s) for s in range(3)], [185, 240, 95]
    server = ServerCiphertexts(server_context, _shapes(states[0]))
    received = [server.incoming(*_encrypted(s, site_context), f"site-{i + 1}") for i, s in enumerate(states)]
    assert isinstance(received[0]["bn.num_batches_tracked"], np.ndarray)  # counters travel in plain
    aggregate = weighted_average(received, weights)
    data, meta = server.outgoing(aggregate)
    assert [k for k, v in data.items() if isinstance(v, bytes)] == ["conv.weight", "fc.bias"]  # the counter in plain
    decryptor = Decryptor()
    decryptor.tenseal_context = site_context
    task = DXO(DataKind.WEIGHTS, data=data, meta=meta).to_shareable()
    back = from_shareable(decryptor.process(task, FLContext())).data
    plain = weighted_average(states, weights)
    assert {k: (v.shape, v.dtype) for k, v in back.items()} == {k: (v.shape, v.dtype) for k, v in plain.items()}
    assert back["bn.num_batches_tracked"] == 5  # the counters' maximum
    for key in ("conv.weight", "fc.bias"):
        assert np.abs(back[key] - plain[key]).max() < 1e-5, key
        assert not np.array_equal(back[key], plain[key])  # approximate: CKKS, not a plaintext path


def test_the_server_cannot_read_a_sites_update(contexts):
    _, site_context, server_context = contexts
    state = _site_state(0)
    data, meta = _encrypted(state, site_context)
    assert not server_context.has_secret_key()
    received = ServerCiphertexts(server_context, _shapes(state)).incoming(data, meta, "site-1")
    for key in ("conv.weight", "fc.bias"):
        with pytest.raises(ValueError, match="doesn't hold a secret_key"):
            received[key].decrypt()
        assert state[key].tobytes()[:16] not in data[key]  # no plaintext value in the bytes sent
    assert np.allclose(received["fc.bias"].decrypt(site_context.secret_key()), state["fc.bias"], atol=1e-6)


def test_the_server_refuses_an_unencrypted_or_foreign_update(contexts):
    import tenseal as ts
    from nvflare.lighter.impl.he import HEBuilder

    _, site_context, server_context = contexts
    state = _site_state(1)
    server = ServerCiphertexts(server_context, _shapes(state))
    with pytest.raises(
        HEError, match="^site-2 sent conv.weight, fc.bias unencrypted, in a job with homomorphic encryption"
    ):
        server.incoming(state, {}, "site-2")
    other = HEBuilder()
    other.initialize(None, None)
    foreign = ts.context_from(other.get_serialized_context(is_client=True))
    data, meta = _encrypted(state, foreign)
    data["fc.bias"] = data["fc.bias"][:100]
    with pytest.raises(HEError, match="^site-2 sent a ciphertext this server's HE context cannot load"):
        server.incoming(data, meta, "site-2")


def test_a_tampered_ciphertext_in_a_checkpoint_is_named(contexts):
    """A resume reads the encrypted model back from the checkpoint: an entry whose bytes were changed is refused
    naming it (the controller adds the checkpoint's file), not with TenSEAL's "ciphertext data is invalid"."""
    _, site_context, server_context = contexts
    state = _site_state(3)
    server = ServerCiphertexts(server_context, _shapes(state))
    stored = server.stored(server.incoming(*_encrypted(state, site_context), "site-1"))
    stored["fc.bias"] = stored["fc.bias"][: len(stored["fc.bias"]) // 2]
    with pytest.raises(HEError, match="^entry 'fc.bias' is not a ciphertext this server's HE context can load"):
        server.restored(stored)


def test_a_site_refuses_a_task_whose_encryption_meta_does_not_add_up(contexts):
    _, site_context, server_context = contexts
    state = _site_state(2)
    server = ServerCiphertexts(server_context, _shapes(state))
    data, meta = server.outgoing(server.incoming(*_encrypted(state, site_context), "site-1"))
    decryptor = Decryptor()
    decryptor.tenseal_context = site_context
    bad = {**meta, META_KEYS: {**meta[META_KEYS], "fc.bias": False}}
    with pytest.raises(HEError, match="does not say consistently which entries are encrypted"):
        decryptor.process_dxo(DXO(DataKind.WEIGHTS, data=dict(data), meta=bad), None, FLContext())
    with pytest.raises(HEError, match="'fc.bias' comes with a malformed shape or dtype"):
        restore({"fc.bias": [0.0] * 3}, {"fc.bias": [[3], "object"]})
    with pytest.raises(HEError, match="'fc.bias' decrypts to 3 values, its shape holds 4"):
        restore({"fc.bias": [0.0] * 3}, {"fc.bias": [[2, 2], "float32"]})
    plain = DXO(DataKind.WEIGHTS, data={"w": np.ones(3, np.float32)})  # the initial model: passes unchanged
    assert decryptor.process_dxo(plain, None, FLContext()) is None


def test_checkpointed_ciphertexts_come_back_as_ciphertexts(contexts):
    _, site_context, server_context = contexts
    state = _site_state(3)
    server = ServerCiphertexts(server_context, _shapes(state))
    received = server.incoming(*_encrypted(state, site_context), "site-1")
    stored = server.stored(received)
    assert stored["conv.weight"].dtype == np.uint8 and stored["bn.num_batches_tracked"] == 6
    back = server.restored(stored)
    assert np.allclose(back["conv.weight"].decrypt(site_context.secret_key()), state["conv.weight"].ravel(), atol=1e-6)


def test_contexts_are_loaded_from_the_startup_kit_only_as_provisioned(contexts, tmp_path):
    folder = contexts[0]
    assert [check_context_name(n) for n in (CLIENT_CONTEXT, "x.tenseal")] == [CLIENT_CONTEXT, "x.tenseal"]
    for name in ("../client_context.tenseal", "/etc/passwd", "a/b", "..", ""):
        with pytest.raises(HEError, match="^tenseal_context_file must be a file name inside the startup kit"):
            check_context_name(name)

    def fl_ctx():  # as the simulator's (not secure mode: its kits are unsigned; a signed kit's files are checked)
        ctx = FLContext()
        ctx.set_prop(FLContextKey.SECURE_MODE, False, private=True, sticky=False)
        return ctx

    saved = SecurityContentService.security_content_manager
    try:
        SecurityContentService.security_content_manager = None  # NVFlare's initialize runs once per process
        SecurityContentService.initialize(content_folder=str(folder))
        assert load_context(fl_ctx(), SERVER_CONTEXT, secret=False).has_secret_key() is False
        with pytest.raises(HEError, match="the server's HE context client_context.tenseal holds the secret key"):
            load_context(fl_ctx(), CLIENT_CONTEXT, secret=False)
        with pytest.raises(HEError, match="the site's HE context server_context.tenseal has no secret key"):
            load_context(fl_ctx(), SERVER_CONTEXT, secret=True)
        SecurityContentService.security_content_manager = None
        SecurityContentService.initialize(content_folder=str(tmp_path))
        with pytest.raises(
            HEError,
            match="^homomorphic encryption: the site's HE context client_context.tenseal "
            "cannot be loaded from its startup kit",
        ):
            load_context(fl_ctx(), CLIENT_CONTEXT, secret=True)
    finally:
        SecurityContentService.security_content_manager = saved
    assert (META_KEYS, META_ALGORITHM) == (MetaKey.PROCESSED_KEYS, MetaKey.PROCESSED_ALGORITHM)  # NVFlare's names


def test_the_job_encrypts_at_the_sites_and_refuses_what_he_cannot_serve():
    from controllers import controller_for
    from flamby_flare.strategies.base import get_strategy

    files = job_files(
        "fed_heart_disease",
        "fedavg",
        homomorphic_encryption=True,
        client_dp={"clip_norm": 1.0, "noise_multiplier": 0.5, "delta": 1e-3},
    )
    client, server = (
        json.loads(files["app/config/config_fed_client.json"]),
        json.loads(files["app/config/config_fed_server.json"]),
    )
    assert json.loads(files["meta.json"])["name"] == "fed_heart_disease_fedavg_cdp_he"
    assert [f["path"] for f in client["task_result_filters"][0]["filters"]] == [
        "privacy.ClientLevelDP",
        "executors.homomorphic.Encryptor",
    ]
    assert client["task_data_filters"] == [
        {"tasks": ["train", "validate"], "filters": [{"path": "executors.homomorphic.Decryptor", "args": {}}]}
    ]
    assert server["workflows"][0]["args"]["homomorphic_encryption"] is True
    for strategy in ("fedadam", "fedyogi", "fedadagrad", "scaffold", "feddyn", "qffl"):
        reason = get_strategy(strategy).he_refusal  # each its own reason, not the default for an own aggregate
        assert reason and "plaintext" in reason and "not declared" not in reason
        with pytest.raises(ValueError, match=f"^homomorphic encryption cannot serve {strategy}: "):
            job_files("fed_heart_disease", strategy, homomorphic_encryption=True)
        with pytest.raises(SettingError, match="homomorphic encryption cannot serve"):
            controller_for(get_strategy(strategy))("fed_heart_disease", homomorphic_encryption=True)
    for strategy in ("fedavg", "fedprox", "cyclic", "mrmtl", "fedper", "fedrep", "apfl"):
        assert get_strategy(strategy).he_refusal is None
    with pytest.raises(ValueError, match="^quantization and homomorphic encryption do not combine"):
        job_files("fed_heart_disease", "fedavg", homomorphic_encryption=True, quantization="float16")
    with pytest.raises(ValueError, match="^homomorphic_encryption must be true or false"):
        job_files("fed_heart_disease", "fedavg", homomorphic_encryption="yes")


@pytest.mark.simulator
def test_the_committed_he_job_gives_the_plaintext_result_within_ckks_precision(tmp_path, data_root):
    """The main job with secure aggregation, as ``nvflare simulator JOB -w WS -t 4`` runs it (nothing provisioned:
    the run makes its own key): the recorded plaintext result (``main_job/heart_fedavg_seed42``) within CKKS
    precision; the server's saved model and checkpoints hold ciphertexts only, which its own context cannot
    decrypt; the traffic measure shows what encryption costs on the wire."""
    import tenseal as ts

    job = REPO / "jobs" / "fed_heart_disease_fedavg_he"
    proc = run_simulator(
        job, tmp_path / "ws", 4, {"FLAMBY_FLARE_DATA": str(data_root), "FLAMBY_FLARE_STATE": str(tmp_path / "state")}
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = run_dir(tmp_path / "ws")
    saved = torch.load(out / "FL_global_model.pt", weights_only=True)
    assert {k: v.dtype for k, v in saved["model"].items()} == {"linear.weight": torch.uint8, "linear.bias": torch.uint8}
    assert saved["he_shapes"] == {"linear.weight": [[1, 13], "float32"], "linear.bias": [[1], "float32"]}
    contexts = tmp_path / "ws" / SIMULATOR_CONTEXTS  # the run's own pair (NVFlare's simulator provisions nothing)
    assert not list((tmp_path / "ws").glob("server/startup/*.tenseal"))  # the server holds no key file of its own
    server_context = ts.context_from((contexts / SERVER_CONTEXT).read_bytes())
    with pytest.raises(ValueError, match="secret_key"):
        ts.ckks_vector_from(server_context, saved["model"]["linear.weight"].numpy().tobytes()).decrypt()
    model = decrypt_model(out / "FL_global_model.pt", contexts / CLIENT_CONTEXT)
    result = pinned(out)
    result["model"] = golden.fingerprint(model)
    golden.check("main_job/heart_fedavg_seed42", result, tolerance=CKKS)
    summary = json.loads((out / "summary.json").read_text())
    for site, traffic in summary["communication"].items():  # two CKKS ciphertexts (~235 KB each) per result,
        assert traffic["sent_bytes"] / traffic["rounds"] > 200 * 1000, site  # where the plaintext one is 1.9 KB
