"""A site's (and the server's) NVFlare class allow-list admitting this project's classes.

Jobs carry no code of their own (no ``app/custom/``), so NVFlare checks every class a job names against the
allow-list of the participant's ``local/resources.json`` (``nvflare/app_common/widgets/component_path_authorizer.py``):
a job naming anything else (``subprocess.Popen``, say) is refused before it is built. This writes that
policy: the participant's own resources (``resources.json``, else its kit's ``resources.json.default``) with
NVFlare's default classes and this project's packages (``PROJECT_PREFIXES``) in its ``class_allow_list``.
The simulator's workspace, the POC kits and production kits all get it this way (``flamby-flare simulator``,
``flamby-flare poc up``, ``flamby-flare site-policy KIT``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from flamby_flare.packages import PROJECT_PACKAGES

PROJECT_PREFIXES = tuple(f"{name}." for name in PROJECT_PACKAGES)
RESOURCES = "resources.json"


def admit_project_classes(local_dir: str | os.PathLike) -> Path:
    """Write ``<local_dir>/resources.json`` admitting this project's classes; returns its path."""
    from nvflare.app_common.default_component_policy import DEFAULT_CLASS_ALLOW_LIST

    local = Path(local_dir)
    local.mkdir(parents=True, exist_ok=True)
    current = local / RESOURCES
    base = current if current.is_file() else local / (RESOURCES + ".default")
    resources = json.loads(base.read_text()) if base.is_file() else {"format_version": 2}
    allowed = list(resources.get("class_allow_list") or DEFAULT_CLASS_ALLOW_LIST)
    resources["class_allow_list"] = allowed + [p for p in PROJECT_PREFIXES if p not in allowed]
    resources["class_list_enforcement_mode"] = "enforce"
    tmp = current.with_name(RESOURCES + ".tmp")
    tmp.write_text(json.dumps(resources, indent=2) + "\n")
    os.replace(tmp, current)
    return current
