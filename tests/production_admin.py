"""The project admin's side of the production test, run in the admin's own namespace (tests/netns.py):

    python -m tests.production_admin USER KIT clients N TIMEOUT    # wait until N sites are registered
    python -m tests.production_admin USER KIT run JOB OUT TIMEOUT   # submit (signed by USER's key), wait, download
    python -m tests.production_admin USER KIT jobs                  # how many jobs the server holds

Prints one JSON object; exits 1 (with ``{"error": ...}``) when the server refuses the admin or times out.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    from nvflare.fuel.flare_api.flare_api import new_secure_session

    user, kit, command, *args = argv
    try:
        session = new_secure_session(user, kit, timeout=20)
    except Exception as exc:  # noqa: BLE001 - the refusal is the result
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    try:
        if command == "clients":
            deadline = time.monotonic() + float(args[1])
            while time.monotonic() < deadline:
                names = sorted(c.name for c in session.get_system_info().client_info)
                if len(names) >= int(args[0]):
                    print(json.dumps({"clients": names}))
                    return 0
                time.sleep(0.5)
            print(json.dumps({"error": f"only {names} registered"}))
            return 1
        if command == "jobs":
            print(json.dumps({"jobs": len(session.list_jobs())}))
            return 0
        job, out, timeout = Path(args[0]), Path(args[1]), float(args[2])
        start = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp:  # NVFlare signs the folder it submits: sign a copy
            job_id = session.submit_job(str(shutil.copytree(job, Path(tmp) / job.name)))
        status = "SUBMITTED"
        while not (status.startswith("FINISHED") or status in ("FAILED_TO_RUN", "ABANDONED")):
            if time.monotonic() - start > timeout:
                session.abort_job(job_id)
                print(json.dumps({"job_id": job_id, "error": f"not finished within {timeout:.0f} s"}))
                return 1
            time.sleep(0.5)
            status = session.get_job_meta(job_id).get("status", "?")
        seconds = time.monotonic() - start
        out.mkdir(parents=True, exist_ok=True)
        result = session.download_job_result(job_id, str(out))
        print(json.dumps({"job_id": job_id, "status": status, "result": result, "seconds": round(seconds, 1)}))
        return 0
    finally:
        session.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
