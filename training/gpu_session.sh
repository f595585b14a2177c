#!/usr/bin/env bash
# One GPU lease, used whole: the GPU benchmark (benchmarks/gpu_speed.py) on an idle card, then three training runs
# side by side on the same card (they load their photos while the benchmark runs, and start when it is done).
#
#   .gpu/photos    the Debian photos, as training/photos.py unpacks them (copied from /var/cache/retouch-photos)
#   .gpu/skimage   scikit-image's images the restorers train on (training/photos.py SKIMAGE_IMAGES)
#   .gpu/whl       wheels the GPU machine lacks (spandrel)
#
# Usage, from the repository root: OUT=results/ MINUTES=6.3 bash training/gpu_session.sh
# Weights land in $OUT as fp16 safetensors (rewritten every two minutes, so a stop keeps the last ones).
set -u
OUT=${OUT:-/tmp/retouch-gpu}
MINUTES=${MINUTES:-6.5}
ROOT=$(pwd)
mkdir -p "$OUT"
if [ -d .gpu/whl ] && ls .gpu/whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$ROOT/daemon${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
GO=$(mktemp -u /tmp/retouch-go.XXXX)
DATA=(--photos "$ROOT/.gpu/photos" --skimage-dir "$ROOT/.gpu/skimage" --start-after "$GO" --minutes "$MINUTES")

cd "$ROOT/training"
# denoise: our shipped DRUNet (32-256 channels), trained on from its weights at a lower rate
python3 train_restorer.py --task denoise --init-weights ../daemon/retouch/models/retouch-denoise.safetensors \
  --lr 1e-4 --batch 32 --size 128 --run-dir /tmp/runs/denoise-ft --out "$OUT/denoise-ft.safetensors" "${DATA[@]}" \
  >"$OUT/denoise-ft.log" 2>&1 &
# denoise: a DRUNet with its capacity at full resolution (64-160 channels), from scratch
python3 train_restorer.py --task denoise --channels 64,96,128,160 --lr 3e-4 --batch 32 --size 128 \
  --run-dir /tmp/runs/denoise-wide --out "$OUT/denoise-wide.safetensors" "${DATA[@]}" >"$OUT/denoise-wide.log" 2>&1 &
# sharpen: the same U-Net (its receptive field spans camera shake), from scratch
python3 train_restorer.py --task sharpen --arch drunet --channels 64,96,128,160 --lr 3e-4 --batch 48 --size 128 \
  --run-dir /tmp/runs/sharpen-unet --out "$OUT/sharpen-unet.safetensors" "${DATA[@]}" >"$OUT/sharpen-unet.log" 2>&1 &
cd "$ROOT"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$OUT/gpu_speed.txt"
timeout "${BENCH_SECONDS:-170}" python3 benchmarks/gpu_speed.py ${BENCH_ARGS:-} >>"$OUT/gpu_speed.txt" 2>&1
echo "benchmark exit $?" >>"$OUT/gpu_speed.txt"
touch "$GO"
wait
nvidia-smi --query-gpu=memory.used --format=csv,noheader >>"$OUT/gpu_speed.txt" 2>&1
ls -la "$OUT"
