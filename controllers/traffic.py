"""What each site's train task and result weigh on the wire. ``MessageSize`` is a server filter placed last
among the train task's data filters and first among its result filters, so after a quantizer and before
the dequantizer (``executors.quantization``): it measures what NVFlare serializes for the site (FOBS,
the decomposers the job's processes register), records the task data's size per (job, task, site), and
puts both sizes into the result's DXO meta, where the controller reads them
(``controllers.base.StrategyController._train``). Sizes are of the serialized message, without the
transport's framing; a site that gets no task data filter (a job written before) reports none.
"""

from __future__ import annotations

import threading

from nvflare.apis.dxo import from_shareable
from nvflare.apis.filter import Filter
from nvflare.apis.fl_constant import FLContextKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable

META_RECEIVED, META_SENT = "flamby_flare.bytes_received", "flamby_flare.bytes_sent"
DIRECTIONS = ("task_data", "task_result")
_task_bytes: dict[tuple, int] = {}  # (job id, task id, site) -> bytes of the task data sent to the site
_lock = threading.Lock()


def serialized_bytes(shareable: Shareable) -> int:
    """The size of ``shareable`` as NVFlare serializes it."""
    from nvflare.app_common.decomposers import common_decomposers
    from nvflare.fuel.utils import fobs

    common_decomposers.register()
    return len(fobs.dumps(shareable))


class MessageSize(Filter):
    """Measures the train task's data (``direction="task_data"``) or a site's result (``"task_result"``)."""

    def __init__(self, direction: str):
        super().__init__()
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        self.direction = direction

    def process(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        peer = fl_ctx.get_peer_context()
        key = (fl_ctx.get_job_id(), fl_ctx.get_prop(FLContextKey.TASK_ID), peer.get_identity_name() if peer else None)
        size = serialized_bytes(shareable)
        if self.direction == "task_data":
            with _lock:
                _task_bytes[key] = size
            return shareable
        with _lock:
            received = _task_bytes.pop(key, None)
        try:
            dxo = from_shareable(shareable)
        except ValueError:  # an error reply carries no DXO: nothing to annotate
            return shareable
        dxo.set_meta_prop(META_SENT, size)
        if received is not None:
            dxo.set_meta_prop(META_RECEIVED, received)
        return dxo.update_shareable(shareable)
