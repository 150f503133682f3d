"""A site's filters for secure aggregation (``flamby_flare.homomorphic``): NVFlare's HE model encryptor and
decryptor (TenSEAL CKKS), with the site's provisioned ``client_context.tenseal``.

``Encryptor`` (train results, after any client-level DP): NVFlare's ``HEModelEncryptor`` on the float
entries only (NVFlare's would flatten and encrypt integer counters too), unweighted (the server weighs by
n_i / N), each CKKS vector serialized without its context (NVFlare's FOBS encoding ships the context, 0.66
MB, with every vector). ``Decryptor`` (train and validate tasks): NVFlare's ``HEModelDecryptor``, then each
entry back to the shape and dtype the server's meta gives (NVFlare's returns flat lists). A plaintext task
(the initial model of round 1) passes unchanged.
"""

from __future__ import annotations

from flamby_flare.datasets.lazy import check_installed

check_installed(__name__, ("tenseal",))

import numpy as np  # noqa: E402
from nvflare.apis.dxo import DXO  # noqa: E402
from nvflare.apis.event_type import EventType  # noqa: E402
from nvflare.apis.fl_context import FLContext  # noqa: E402
from nvflare.apis.shareable import Shareable  # noqa: E402
from nvflare.app_opt.he.model_decryptor import HEModelDecryptor  # noqa: E402
from nvflare.app_opt.he.model_encryptor import HEModelEncryptor  # noqa: E402

from flamby_flare.homomorphic import (  # noqa: E402
    ALGORITHM,
    CLIENT_CONTEXT,
    META_ALGORITHM,
    META_KEYS,
    META_SHAPES,
    HEError,
    check_context_name,
    load_context,
    restore,
)


def _is_float(value) -> bool:
    return np.issubdtype(np.asarray(value).dtype, np.floating)


class _SiteKey:
    """The site's provisioned context, loaded at the run's start (a wrong or missing one fails the site there,
    in one line) and dropped at its end."""

    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        if event_type == EventType.START_RUN:
            self.tenseal_context = load_context(fl_ctx, self.tenseal_context_file, secret=True)
        elif event_type == EventType.END_RUN:
            self.tenseal_context = None

    def _key(self, fl_ctx: FLContext) -> None:
        if self.tenseal_context is None:
            self.tenseal_context = load_context(fl_ctx, self.tenseal_context_file, secret=True)


class Encryptor(_SiteKey, HEModelEncryptor):
    """Encrypts the site's float entries (see the module docstring)."""

    def __init__(self, tenseal_context_file: str = CLIENT_CONTEXT):
        super().__init__(tenseal_context_file=check_context_name(tenseal_context_file), weigh_by_local_iter=False)

    def process_dxo(self, dxo: DXO, shareable: Shareable, fl_ctx: FLContext) -> DXO:
        self._key(fl_ctx)
        floats = [k for k, v in dxo.data.items() if _is_float(v)]
        if not floats:
            raise HEError("homomorphic encryption: the site's result has no float entry to encrypt")
        rest = {k: v for k, v in dxo.data.items() if k not in floats}
        self.encrypt_layers = floats
        dxo.data = {k: np.asarray(v) for k, v in dxo.data.items()}
        new = self._process(dxo, fl_ctx)  # NVFlare's encryption (process_dxo would ask for a peer and weights)
        new.data = {k: rest[k] if k in rest else new.data[k].serialize() for k in dxo.data}
        return new


class Decryptor(_SiteKey, HEModelDecryptor):
    """Decrypts the server's encrypted model and restores its entries' shapes (see the module docstring)."""

    def __init__(self, tenseal_context_file: str = CLIENT_CONTEXT):
        super().__init__(tenseal_context_file=check_context_name(tenseal_context_file))

    def process_dxo(self, dxo: DXO, shareable: Shareable, fl_ctx: FLContext) -> DXO | None:
        self._key(fl_ctx)
        shapes = dxo.get_meta_prop(META_SHAPES)
        if not shapes:
            return None  # a plaintext model: the initial one
        flags = dxo.get_meta_prop(META_KEYS) or {}
        if (
            not isinstance(shapes, dict)
            or not isinstance(flags, dict)
            or dxo.get_meta_prop(META_ALGORITHM) != ALGORITHM
            or not all(isinstance(v, (list, tuple)) and len(v) == 2 for v in shapes.values())
            or {k for k, flag in flags.items() if flag} != set(shapes)
            or set(flags) != set(dxo.data)
            or not all(isinstance(dxo.data[k], bytes) for k in shapes)
        ):
            raise HEError(
                "homomorphic encryption: the server's task does not say consistently which entries are encrypted"
            )
        data = self.decryption(params=dxo.data, encrypted_layers=flags, fl_ctx=fl_ctx)  # NVFlare's: flat lists
        dxo.data = restore(data, shapes)
        dxo.remove_meta_props([META_KEYS, META_ALGORITHM, META_SHAPES])
        return dxo
