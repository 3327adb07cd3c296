#!/usr/bin/env bash
# The end-to-end demo behind `make demo`: generate the synthetic dataset, train train_msc.py
# from scratch on it, evaluate with and without CRF, and segment validation images.
# Usage: bash dataset/run_demo.sh PYTHON OUT_DIR [--images-only]
set -euo pipefail
PY=${1:-python3}
OUT=${2:-demo_run}
DATA=$OUT/data
SNAP=$OUT/snapshots
# Chosen to finish within ~15 minutes on 2 CPU cores (see README, "The demo"). From scratch
# in a few hundred steps: Adam, batch-norm gamma/beta trained, residual branches starting at
# zero, one learning rate for the whole network (the paper's recipe is for ImageNet weights).
STEPS=${DEMO_STEPS:-400}
CROP=${DEMO_CROP:-81,81}
BATCH=${DEMO_BATCH:-1}
LR=${DEMO_LR:-1e-3}
ASPP_MULT=${DEMO_ASPP_MULT:-1,1}
OPTIMIZER=${DEMO_OPTIMIZER:-adam}
WEIGHT_DECAY=${DEMO_WD:-0.0005}
# Validation while training: single scale on the 40 validation images every VAL_EVERY steps
# (confusion matrix, three fixed images and the curves in TensorBoard).
VAL_EVERY=${DEMO_VAL_EVERY:-100}
COMMON=(--data-dir "$DATA" --num-classes 5 --threads "${DEMO_THREADS:-2}")

start=$(date +%s)
echo "== 1/5 demo data -> $DATA"
"$PY" -m dataset.demo_data --out "$DATA" --num-train 200 --num-val 40 --seed 0

if [ "${3:-}" != "--images-only" ]; then
echo "== 2/5 train (DeepLab-v2 ResNet-101, 3 scales, from scratch, $STEPS steps) -> $SNAP"
"$PY" train_msc.py "${COMMON[@]}" --data-list "$DATA/train.txt" --input-size "$CROP" \
    --batch-size "$BATCH" --grad-update-every 1 --num-steps "$STEPS" --is-training \
    --random-mirror --learning-rate "$LR" --aspp-lr-mult "$ASPP_MULT" \
    --optimizer "$OPTIMIZER" --train-bn-params --zero-init-residual --weight-decay "$WEIGHT_DECAY" \
    --restore-from none --class-names "$DATA/class_names.txt" \
    --save-pred-every 100 --keep-snapshots 1 --save-num-images 2 --log-every 10 \
    --val-list "$DATA/val.txt" --val-every "$VAL_EVERY" --val-scales 1.0 --val-images 3 \
    --snapshot-dir "$SNAP"

echo "== 3/5 evaluate (3 scales)"
"$PY" evaluate_msc.py "${COMMON[@]}" --data-list "$DATA/val.txt" --restore-from "$SNAP" \
    --scales 1.0,0.75,0.5 --class-names "$DATA/class_names.txt" \
    --save-dir "$OUT/eval" --output-json "$OUT/eval.json" --plot-dir "$OUT/plots"

echo "== 4/5 evaluate with dense CRF"
"$PY" evaluate_msc_with_CRF.py "${COMMON[@]}" --data-list "$DATA/val.txt" \
    --restore-from "$SNAP" --scales 1.0,0.75,0.5 --class-names "$DATA/class_names.txt" \
    --output-json "$OUT/eval_crf.json" --plot-dir "$OUT/plots_crf"
fi

echo "== 5/5 inference on validation images -> $OUT/inference"
"$PY" inference.py "$DATA"/JPEGImages/val_0000[0-5].jpg "$SNAP" --num-classes 5 \
    --scales 1.0,0.75,0.5 --save-dir "$OUT/inference" --overlay --save-labels

"$PY" -m dataset.readme_images --demo-dir "$OUT" --out images

echo
echo "demo finished in $(( $(date +%s) - start )) s"
echo "  metrics:      $OUT/eval.json, $OUT/eval_crf.json (predictions in $OUT/eval/)"
echo "  pictures:     $OUT/plots/, $OUT/plots_crf/ (confusion.png, iou.png, per_class.csv)"
echo "  masks:        $OUT/inference/"
echo "  TensorBoard:  $PY -m tensorboard.main --logdir $SNAP --samples_per_plugin images=100"
