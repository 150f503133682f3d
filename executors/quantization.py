"""Message quantization, a job option (``job_files(..., quantization="float16" | "blockwise8")``): NVFlare's
``ModelQuantizer`` and ``ModelDequantizer`` filters on the train task, both ways (the server quantizes the
global model it sends and dequantizes the results, each site the reverse), for the model's float entries
only. NVFlare's filters refuse any other dtype (BatchNorm's int64 ``num_batches_tracked``), quantize the
sender's dictionary in place (the server's own global state would turn float16), and mark the task's meta,
which NVFlare's per-site copies of a task share, as quantized (the other sites' copies then went out
unquantized): ours hand them a new dictionary of the float entries and a meta of the site's own, and send
the other entries as they are. Needs the ``quantization`` extra (NVFlare's filters import bitsandbytes);
``blockwise8`` needs a CUDA GPU at every participant (NVFlare runs its bitsandbytes calls on CUDA),
``float16`` runs anywhere.

Both ends run these filters (the server imports them from here: they are the sites' classes, admitted by
every participant's class allow-list). The server aggregates the dequantized results against its own
full-precision model, so only what crosses the wire is rounded: float16 halves each float32 entry,
blockwise8 keeps one byte per value and a float32 scale per block of 4,096 values.
"""

from __future__ import annotations

from flamby_flare.datasets.lazy import check_installed

check_installed(__name__, ("bitsandbytes",))

import numpy as np  # noqa: E402
from nvflare.apis.dxo import DXO  # noqa: E402
from nvflare.apis.fl_context import FLContext  # noqa: E402
from nvflare.apis.shareable import Shareable  # noqa: E402
from nvflare.app_opt.pt.quantization.dequantizer import ModelDequantizer  # noqa: E402
from nvflare.app_opt.pt.quantization.quantizer import ModelQuantizer  # noqa: E402

from flamby_flare.jobs import QUANTIZATIONS  # noqa: E402


def _is_float(value) -> bool:
    return getattr(value, "dtype", None) is not None and str(value.dtype).split(".")[-1] in (
        "float32",
        "float16",
        "bfloat16",
    )


class Quantizer(ModelQuantizer):
    """NVFlare's quantizer on a new dictionary of the float entries; the others travel unchanged."""

    def __init__(self, quantization_type: str = "float16"):
        if quantization_type not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, got {quantization_type!r}")
        check_device(quantization_type)
        super().__init__(quantization_type=quantization_type)

    def process_dxo(self, dxo: DXO, shareable: Shareable, fl_ctx: FLContext) -> DXO:
        order = list(dxo.data)
        rest = {k: v for k, v in dxo.data.items() if not _is_float(v)}
        dxo.data = {k: v for k, v in dxo.data.items() if k not in rest}
        # NVFlare's per-client copies of a task share its DXO's meta: the flag the quantizer sets there for the
        # first site would make it skip the others (sent unquantized, labelled quantized)
        dxo.meta = dict(dxo.meta)
        new = super().process_dxo(dxo, shareable, fl_ctx) or dxo
        new.data = {k: rest[k] if k in rest else new.data[k] for k in order}
        return new


def check_device(quantization_type: str) -> None:
    """blockwise8 runs NVFlare's bitsandbytes calls, which move every entry to CUDA: refused without a GPU."""
    import torch

    if quantization_type == "blockwise8" and not torch.cuda.is_available():
        raise RuntimeError(
            "blockwise8 quantization needs a CUDA GPU at the server and every site (NVFlare's filters "
            "run bitsandbytes on CUDA); use float16 on this machine"
        )


class Dequantizer(ModelDequantizer):
    """NVFlare's dequantizer on the entries the quantizer quantized; the others pass unchanged. (A blockwise8
    message on a machine without CUDA fails here, as ``check_device`` says.)"""

    def process_dxo(self, dxo: DXO, shareable: Shareable, fl_ctx: FLContext) -> DXO:
        order = list(dxo.data)
        quantized = dxo.get_meta_prop("source_datatype") or {}
        rest = {k: v for k, v in dxo.data.items() if k not in quantized}
        dxo.data = {k: v for k, v in dxo.data.items() if k in quantized}
        new = super().process_dxo(dxo, shareable, fl_ctx) or dxo
        new.data = {k: rest[k] if k in rest else np.asarray(new.data[k]) for k in order}
        return new
