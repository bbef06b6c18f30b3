#!/bin/bash
# The prepared GPU run (see README.md): "stage" copies the data part carried in this call; "run" copies the rest,
# unpacks, trains the three jobs of jobs.json side by side and measures GPU latency. Results land in $OUT.
set -u
export PYTHONUNBUFFERED=1
t0=$(date +%s)
mkdir -p /tmp/parts
cp -r .carry/d/* /tmp/parts/ && ls /tmp/parts && du -sh /tmp/parts
if [ "$1" = stage ]; then
  nvidia-smi -L; python3 -c "import torch, torchvision, cv2; print(torch.__version__, torchvision.__version__, torch.cuda.is_available())"
  exit 0
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .carry/whl/*.whl || exit 1
export PYTHONPATH=.:/tmp/site
python3 -m inference.ml.dataset.pack unpack /tmp/parts/part* --out /tmp/data || exit 1
echo "unpacked at $(( $(date +%s) - t0 )) s"
timeout 530 python3 scripts/gpu_sweep.py /tmp/data --jobs scripts/gpu_plan/jobs.json --runs /tmp/runs --result $OUT \
    --keep-jobs 0,1 --calibrate-limit 300
echo "sweep done at $(( $(date +%s) - t0 )) s"
ls -la $OUT
for j in 0 1; do tail -4 /tmp/runs/job$j/stdout.log; done
echo "all done at $(( $(date +%s) - t0 )) s"
