#!/usr/bin/env bash
# Everything that needs a GPU, in under 5 minutes: the `cuda` tests, both benchmarks, and the quickstart for 50
# steps in bf16 and in fp16 (dynamic loss scaler). Run from anywhere:  bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU here'; print(torch.cuda.get_device_name())"
export OUT_DIR="${OUT_DIR:-$(mktemp -d)}"
echo "== cuda tests"
timeout 150 python -m pytest -q -m cuda -p no:cacheprovider -s tests
echo "== train step: full vs network-only (HRNet-32, ResNet-50; fp32 / bf16 / fp16; channels_last off / on)"
timeout 150 python benchmarks/train_step.py --device cuda --iters 5 --warmup 3
echo "== data pipeline (512 px; synthetic and 640x480 JPEG sources)"
timeout 120 python benchmarks/data_pipeline.py --samples 64
for precision in bf16 fp16; do
  echo "== quickstart, 50 steps on CUDA, ${precision}"
  timeout 150 python -m romp_hydra.train experiment=quickstart trainer.device=cuda trainer.precision="${precision}" \
    trainer.max_steps=50 trainer.val_at_start=false trainer.log_every_steps=10 logger=none \
    hydra.run.dir="${OUT_DIR}/quickstart_${precision}" paths.log_dir="${OUT_DIR}/logs"
  grep -h "step 50 " "${OUT_DIR}/quickstart_${precision}"/*.log | tail -1
done
echo "gpu_check: all passed (outputs in ${OUT_DIR})"
