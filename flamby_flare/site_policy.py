"""A participant's NVFlare policies for this project's jobs: the class allow-list, and forbidding custom code.

The committed jobs carry NVFlare's mark of a job with its own code (``flamby_flare.jobs.CUSTOM_README``), which
NVFlare admits without checking its classes, and which a site may forbid by its authorization policy (the
``byoc`` right): ``forbid_custom_code`` writes that. A job without the mark (``flamby-flare jobs
--no-custom-code``) has every class it names checked against the allow-list of the participant's
``local/resources.json`` (``nvflare/app_common/widgets/component_path_authorizer.py``): a job naming anything
else (``subprocess.Popen``, say) is refused before it is built. ``admit_project_classes`` writes that policy:
exactly this project's component classes (``flamby_flare.jobs.component_classes``; not its packages: a
module's functions are not components), beside the classes the participant's own ``resources.json`` lists
already (its site's choice), and the two classes NVFlare itself adds to jobs where a site streams its logs
(``NVFLARE_ADDED``). NVFlare's built-in default list is not carried over: several of its classes write to a
path or a URI a job names (its ``MLflowReceiver``'s ``tracking_uri``, its persistors' and writers' folders),
and no job of ours needs one. The simulator's workspace, the POC kits and production kits all get
it this way (``flamby-flare simulator``, ``flamby-flare poc up``, ``flamby-flare site-policy KIT``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from flamby_flare.packages import PROJECT_PACKAGES

RESOURCES = "resources.json"
AUTHORIZATION = "authorization.json"
# NVFlare's own classes that NVFlare adds to every job where the site allows log streaming (production kits'
# ``allow_log_streaming``): the job's log streamer at the sites, the receiver at the server. Their one argument,
# a log file's base name, NVFlare confines to the job's log folder.
NVFLARE_ADDED = (
    "nvflare.app_common.logging.job_log_streamer.JobLogStreamer",
    "nvflare.app_common.logging.job_log_receiver.JobLogReceiver",
)


def admitted_classes() -> list[str]:
    """What ``admit_project_classes`` lists: this project's component classes and ``NVFLARE_ADDED``."""
    from flamby_flare.jobs import component_classes

    return component_classes() + list(NVFLARE_ADDED)


def admit_project_classes(local_dir: str | os.PathLike) -> Path:
    """Write ``<local_dir>/resources.json`` admitting this project's component classes; returns its path."""
    local = Path(local_dir)
    local.mkdir(parents=True, exist_ok=True)
    current = local / RESOURCES
    base = current if current.is_file() else local / (RESOURCES + ".default")
    resources = json.loads(base.read_text()) if base.is_file() else {"format_version": 2}
    # the site's own entries stay (not NVFlare's default list, nor entries naming our packages: ours are exact)
    own = list(resources.get("class_allow_list") or []) if base == current else []
    kept = [entry for entry in own if entry.split(".")[0] not in PROJECT_PACKAGES]
    resources["class_allow_list"] = kept + [path for path in admitted_classes() if path not in kept]
    resources["class_list_enforcement_mode"] = "enforce"
    return _write(current, resources)


def forbid_custom_code(local_dir: str | os.PathLike) -> Path:
    """Write ``<local_dir>/authorization.json``: the participant's policy (``authorization.json``, else its
    kit's ``.default``) with NVFlare's ``byoc`` right ``none`` for every role, the other rights unchanged; this
    site then refuses jobs that bring code (``BYOC not permitted``). Returns its path."""
    local = Path(local_dir)
    current = local / AUTHORIZATION
    base = current if current.is_file() else local / (AUTHORIZATION + ".default")
    if not base.is_file():
        raise FileNotFoundError(
            f"{local} has no {AUTHORIZATION}(.default): not a provisioned participant's local/ folder"
        )
    policy = json.loads(base.read_text())
    permissions = policy.get("permissions") or {}
    rights = sorted({right for value in permissions.values() if isinstance(value, dict) for right in value} | {"byoc"})
    for role, value in permissions.items():
        permissions[role] = {**({r: value for r in rights} if isinstance(value, str) else value), "byoc": "none"}
    return _write(current, policy)


def _write(path: Path, content: dict) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content, indent=2) + "\n")
    os.replace(tmp, path)
    return path
