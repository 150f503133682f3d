#!/usr/bin/env bash
# The GPU check (issue "Speed", at most 8 minutes on one GPU): the five image datasets on synthetic data
# (tests/synthetic_images.py, preprocessed by flamby-flare), each a one-round simulator job on the GPU with
# bf16 and DataLoader workers; the sites' images per second against a plain PyTorch loop over the same
# cached tensors (benchmarks/site_throughput.py); the peak GPU memory. Writes $OUT (or ./gpu_check) /
# gpu_check.json and the logs.
#
# On the team's GPU machine (no network; python3 holds a CUDA torch): carry the wheels it lacks in .whl/
# (nvflare, monai, opacus, lifelines, nibabel, pydicom, tiffslide and their needs; docs/image_datasets.md),
# the mirror's metadata in shared/mirror/, and run: bash benchmarks/gpu_check.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$REPO/gpu_check}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
if [ -d "$REPO/.whl" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$REPO"/.whl/*.whl
  export PYTHONPATH="/tmp/site:$REPO${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
fi
MIRROR="${FLAMBY_FLARE_MIRROR:-$REPO/shared/mirror}"
[ -d "$MIRROR/fed_ixi" ] || MIRROR="$REPO/../shared/mirror"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
SCRATCH="$(mktemp -d)"
timeout 420 "$PY" - "$REPO" "$MIRROR" "$SCRATCH" "$OUT" <<'PYEOF'
import json, subprocess, sys, time
from pathlib import Path

repo, real_mirror, scratch, out = map(Path, sys.argv[1:])
sys.path.insert(0, str(repo))
import torch

from flamby_flare.cli import main
from flamby_flare.jobs import write_job
from flamby_flare.simulator import prepare_workspace
from tests import synthetic_images as synth

mirror, data = scratch / "mirror", scratch / "data"
synth.write_ixi_mirror(mirror, real_mirror, per_center=(16, 2))
synth.write_isic_mirror(mirror, real_mirror, per_center=(128, 2))
synth.write_kits_mirror(mirror, real_mirror)
synth.write_lidc_mirror(mirror, real_mirror)
synth.write_camelyon_mirror(mirror, real_mirror)
report = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "jobs": {}}
for name in ("fed_ixi", "fed_isic2019", "fed_kits19", "fed_lidc_idri", "fed_camelyon16"):
    start = time.perf_counter()
    assert main(["preprocess", name, "--mirror", str(mirror), "--data-root", str(data)]) == 0
    report.setdefault("preprocess_s", {})[name] = round(time.perf_counter() - start, 1)
args = {"fed_kits19": {"dataset_args": {"patch_size": [64, 128, 128]}}, "fed_lidc_idri": {"dataset_args": {"crop_size": 128, "patch_size": 64}},
        "fed_camelyon16": {"dataset_args": {"max_tiles": 64}}}
sites = {"fed_ixi": 3, "fed_isic2019": 6, "fed_kits19": 6, "fed_lidc_idri": 4, "fed_camelyon16": 2}
for name, n in sites.items():
    job = write_job(name, "fedavg", scratch / "jobs", num_rounds=1, num_updates=10, seed=5, precision="bf16", num_workers=4, **args.get(name, {}))
    ws = scratch / "ws" / name
    prepare_workspace(ws)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nvflare.cli", "simulator", str(job), "-w", str(ws), "-t", str(n)],
                          capture_output=True, text=True, timeout=240, env={**__import__("os").environ, "FLAMBY_FLARE_DATA": str(data)})
    summary_file = ws / "server" / "simulate_job" / "summary.json"
    row = {"rc": proc.returncode, "wall_s": round(time.perf_counter() - start, 1)}
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        row.update(mean=summary["mean"], round_s=summary["history"][0]["wall_s"], site_compute_s=summary["history"][0]["site_compute_s"])
    else:
        row["tail"] = (proc.stdout + proc.stderr)[-1500:]
    report["jobs"][name] = row
    print(name, row, flush=True)
(out / "gpu_check_jobs.json").write_text(json.dumps(report, indent=2) + "\n")
print(json.dumps(report, indent=2))
PYEOF
timeout 120 "$PY" "$REPO/benchmarks/site_throughput.py" --data-root "$SCRATCH/data" --device cuda --precision bf16 --workers 0 4 \
  --updates 10 --repeats 2 --out "$OUT/gpu_check_throughput.json" | tee "$OUT/gpu_check_throughput.md"
"$PY" -c "import torch; print('peak GPU memory of the throughput run is in its JSON; device total', torch.cuda.get_device_properties(0).total_memory // 2**20, 'MiB')"
