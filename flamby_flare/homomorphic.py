"""Secure aggregation by homomorphic encryption (CKKS; TenSEAL through NVFlare's HE filters), a job option
(``job_files(..., homomorphic_encryption=True)``, job names ``..._he``): what the server and the sites share.

- Provisioning makes one CKKS key for the project (NVFlare's ``HEBuilder``: degree 8,192, moduli 60-40-40
  bits, scale 2^40, symmetric): ``client_context.tenseal`` (with the secret key) goes to every site's
  startup kit, ``server_context.tenseal`` (parameters and relinearization keys, no secret key) to the
  server's. POC: ``flamby-flare poc up --he`` (``nvflare poc prepare -he``); production: the ``HEBuilder``
  in the project file. NVFlare's simulator provisions nothing: a simulator run makes its own pair at its start,
  in ``<workspace>/he_contexts`` (``provision_simulator``), from which the server loads only its context and the
  sites theirs.
- A site encrypts the float entries of its train result (``executors.homomorphic.Encryptor``), after any
  client-level DP noise; each entry is a CKKS vector, serialized without its context.
- The server (``ServerCiphertexts``) loads those vectors with its context, which cannot decrypt them, and
  the strategy's server rule forms the weighted sum sum_i (n_i / N) Enc(y_i) on them
  (``aggregation.weighted_average``); the encrypted aggregate is the global model it sends with the next
  ``train`` and the final ``validate`` task, checkpoints and saves. The sites decrypt it
  (``executors.homomorphic.Decryptor``) and restore the entries' shapes, which travel in plain (the model's
  architecture is public: the server built the initial model).
- Strategies whose server rule needs plaintext updates declare ``Strategy.he_refusal``.

CKKS is approximate: a round adds an error of about 1e-6 (relative to the entries' size), and encryption
draws fresh randomness (a seeded encryption would be a flaw), so HE runs reproduce plaintext runs within
that precision, not bit for bit. See docs/privacy.md for what HE protects and what it does not.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from flamby_flare.datasets.lazy import check_installed
from flamby_flare.errors import FlambyFlareError
from flamby_flare.model_state import NumpyState
from flamby_flare.strategies.aggregation import is_ciphertext

SERVER_CONTEXT = "server_context.tenseal"  # NVFlare's ProvFileName.SERVER_CONTEXT_TENSEAL
CLIENT_CONTEXT = "client_context.tenseal"  # NVFlare's ProvFileName.CLIENT_CONTEXT_TENSEAL
ALGORITHM = "CKKS"  # NVFlare's HE_ALGORITHM_CKKS, the DXO's PROCESSED_ALGORITHM
META_KEYS = "PROCESSED_KEYS"  # NVFlare's MetaKey.PROCESSED_KEYS: entry -> encrypted or not (tested equal)
META_ALGORITHM = "PROCESSED_ALGORITHM"  # NVFlare's MetaKey.PROCESSED_ALGORITHM
META_SHAPES = "flamby_flare.he_shapes"  # entry -> [shape, dtype] of the encrypted entries


class HEError(FlambyFlareError):
    """Homomorphic encryption cannot run as configured (a missing or wrong context, a plaintext update)."""


def tenseal_module():
    """TenSEAL, from the ``he`` extra (a missing one is named in one line)."""
    check_installed(__name__, ("tenseal",))
    import tenseal

    return tenseal


def check_context_name(name: str) -> str:
    """A context file name as a job may give it: a plain file name inside the startup kit, nothing else."""
    if not isinstance(name, str) or name in ("", ".", "..") or os.path.basename(name) != name or "\\" in name:
        raise HEError(f"tenseal_context_file must be a file name inside the startup kit, got {name!r}")
    return name


SIMULATOR_CONTEXTS = "he_contexts"  # <simulator workspace>/<this>: a simulator run's own pair of contexts
SIMULATOR_RUNNER = "nvflare.private.fed.app.simulator.simulator_runner"  # loaded in the simulator's server only
SIMULATOR_WORKER = "nvflare.private.fed.app.simulator.simulator_worker"  # a simulator site's __main__


def provision_simulator(workspace: str | os.PathLike) -> Path:
    """Both contexts, made as NVFlare's provisioning makes them, in ``<workspace>/SIMULATOR_CONTEXTS`` (0700);
    an existing pair is kept, and of participants asking at once one makes it (a lock). Returns that folder."""
    import fcntl

    tenseal_module()
    folder = Path(workspace) / SIMULATOR_CONTEXTS
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / SERVER_CONTEXT).is_file() and (folder / CLIENT_CONTEXT).is_file():
            return folder
        from nvflare.lighter.impl.he import HEBuilder

        builder = HEBuilder()
        builder.initialize(None, None)
        for name, is_client in ((SERVER_CONTEXT, False), (CLIENT_CONTEXT, True)):
            tmp = folder / f".{name}.tmp"
            tmp.write_bytes(builder.get_serialized_context(is_client=is_client))
            tmp.chmod(0o600)
            os.replace(tmp, folder / name)
    return folder


def _simulator_workspace(fl_ctx) -> Path | None:
    """The workspace of the NVFlare simulator run this process serves (its server or a site worker), None
    outside the simulator (POC, production: a participant's contexts come from its provisioned kit only)."""
    import multiprocessing
    import sys

    main = getattr(sys.modules.get("__main__"), "__spec__", None)
    server = SIMULATOR_RUNNER in sys.modules and multiprocessing.parent_process() is not None
    if not (server or getattr(main, "name", None) == SIMULATOR_WORKER):
        return None
    return Path(fl_ctx.get_engine().get_workspace().get_root_dir()).parent


def load_context(fl_ctx, name: str, secret: bool):
    """The TenSEAL context ``name`` from this participant's startup kit (NVFlare's loader: signature-checked
    in a secure deployment). ``secret``: a site's, which must hold the secret key; else the server's, which
    must not."""
    tenseal_module()
    from nvflare.app_opt.he.homomorphic_encrypt import load_tenseal_context_from_workspace

    who = "site" if secret else "server"
    try:
        context = load_tenseal_context_from_workspace(check_context_name(name), fl_ctx)
    except ValueError as exc:
        simulator = _simulator_workspace(fl_ctx)
        if simulator is not None:  # NVFlare's simulator provisions nothing: the run makes its own pair
            return _checked(
                tenseal_module().context_from((provision_simulator(simulator) / name).read_bytes()), name, secret
            )
        raise HEError(
            f"homomorphic encryption: the {who}'s HE context {name} cannot be loaded from its startup kit "
            f"({str(exc).rsplit(':', 1)[-1].strip()}); provision it: `nvflare poc prepare -he`, `flamby-flare "
            "poc up --he`, or NVFlare's HEBuilder in the project file"
        ) from None
    return _checked(context, name, secret)


def _checked(context, name: str, secret: bool):
    """``context``, which must hold the secret key (a site's) or must not (the server's)."""
    who = "site" if secret else "server"
    if context.has_secret_key() != secret:
        raise HEError(
            f"homomorphic encryption: the {who}'s HE context {name} "
            + (
                "has no secret key: a site needs client_context.tenseal"
                if secret
                else "holds the secret key: the server must have server_context.tenseal only (re-provision)"
            )
        )
    return context


class ServerCiphertexts:
    """The server's side: loads the sites' encrypted entries, sends and stores the encrypted model."""

    def __init__(self, context, shapes: dict[str, tuple[list[int], str]]):
        self.context, self.shapes = context, shapes

    @classmethod
    def for_model(cls, fl_ctx, params: NumpyState, name: str = SERVER_CONTEXT) -> "ServerCiphertexts":
        floats = {
            k: ([int(n) for n in np.shape(v)], str(np.asarray(v).dtype))
            for k, v in params.items()
            if np.issubdtype(np.asarray(v).dtype, np.floating)
        }
        return cls(load_context(fl_ctx, name, secret=False), floats)

    def incoming(self, params: dict, meta: dict, site: str) -> NumpyState:
        """A site's train result with its encrypted entries loaded as CKKS vectors; a float entry that came
        in plain is refused (that site's job would be sending its update unencrypted)."""
        ts = tenseal_module()
        flags = meta.get(META_KEYS) or {}
        plain = sorted(k for k in self.shapes if k in params and not (flags.get(k) and isinstance(params[k], bytes)))
        if meta.get(META_ALGORITHM) != ALGORITHM or plain:
            raise HEError(
                f"{site} sent {', '.join(plain[:3]) or 'its update'} unencrypted, in a job with homomorphic "
                "encryption: its job config lacks the encryptor"
            )
        try:
            return {k: ts.ckks_vector_from(self.context, v) if k in self.shapes else v for k, v in params.items()}
        except Exception as exc:  # noqa: BLE001 - a corrupt or foreign ciphertext: the site's, named
            raise HEError(
                f"{site} sent a ciphertext this server's HE context cannot load ({type(exc).__name__}): "
                "the sites and the server must be provisioned together"
            ) from None

    def outgoing(self, params: dict) -> tuple[dict, dict]:
        """``params`` for a task: ciphertexts serialized (their context stays here) and the meta the sites'
        decryptor reads; a plaintext model (the initial one) goes as it is, with no meta."""
        encrypted = {k for k, v in params.items() if is_ciphertext(v)}
        if not encrypted:
            return params, {}
        data = {k: v.serialize() if k in encrypted else v for k, v in params.items()}
        meta = {
            META_KEYS: {k: k in encrypted for k in params},
            META_ALGORITHM: ALGORITHM,
            META_SHAPES: {k: list(self.shapes[k]) for k in encrypted},
        }
        return data, meta

    def stored(self, params: dict) -> NumpyState:
        """``params`` as arrays for a checkpoint or the saved model: each ciphertext as its bytes (uint8)."""
        return {k: np.frombuffer(v.serialize(), np.uint8).copy() if is_ciphertext(v) else v for k, v in params.items()}

    def restored(self, params: NumpyState) -> dict:
        """The inverse of ``stored``: a float entry held as uint8 bytes is a ciphertext (one that this server's
        context cannot load is refused, naming the entry)."""
        ts = tenseal_module()
        out = {}
        for k, v in params.items():
            if k in self.shapes and np.asarray(v).dtype == np.uint8:
                try:
                    v = ts.ckks_vector_from(self.context, np.asarray(v, np.uint8).tobytes())
                except Exception as exc:  # noqa: BLE001 - tampered, truncated or of another key: named
                    raise HEError(
                        f"entry {k!r} is not a ciphertext this server's HE context can load "
                        f"({type(exc).__name__}: {exc})"
                    ) from None
            out[k] = v
        return out


FLOAT_DTYPES = ("float16", "float32", "float64")


def restore(data: dict, shapes: dict) -> dict:
    """Decrypted entries (flat lists of values) back to the ``[shape, dtype]`` that ``shapes`` gives them, as
    the server sent it (checked: non-negative integer dimensions, a float dtype, the right number of values)."""
    out = dict(data)
    for key, spec in shapes.items():
        shape, dtype = spec
        if (
            not isinstance(shape, (list, tuple))
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
            or dtype not in FLOAT_DTYPES
        ):
            raise HEError(f"homomorphic encryption: entry {key!r} comes with a malformed shape or dtype")
        values = np.asarray(data[key], np.float64)
        if values.size != int(np.prod(shape, dtype=np.int64)):
            raise HEError(
                f"homomorphic encryption: entry {key!r} decrypts to {values.size} values, its shape holds "
                f"{int(np.prod(shape, dtype=np.int64))}"
            )
        out[key] = values.reshape(shape).astype(dtype)
    return out


def decrypt_entries(data: dict, shapes: dict, context) -> dict:
    """Entries of ``shapes`` (serialized CKKS vectors or uint8 arrays of them) decrypted with a site's
    ``context`` and restored to their shapes and dtypes; the others unchanged."""
    ts = tenseal_module()
    flat = {
        k: ts.ckks_vector_from(context, v if isinstance(v, bytes) else np.asarray(v, np.uint8).tobytes()).decrypt()
        if k in shapes
        else v
        for k, v in data.items()
    }
    return restore(flat, shapes)


def decrypt_model(path: str | os.PathLike, client_context: str | os.PathLike) -> NumpyState:
    """The plaintext of an HE run's saved global model (``FL_global_model.pt`` in the server's run folder,
    which holds only ciphertexts), for whoever holds a site's ``client_context.tenseal``."""
    import torch

    ts = tenseal_module()
    saved = torch.load(path, weights_only=True)
    context = ts.context_from(Path(client_context).read_bytes())
    if not context.has_secret_key():
        raise HEError(f"{client_context} has no secret key: decrypting needs a site's client_context.tenseal")
    model = {k: v.numpy() for k, v in saved["model"].items()}
    return decrypt_entries(model, {k: [list(v[0]), v[1]] for k, v in saved.get("he_shapes", {}).items()}, context)
