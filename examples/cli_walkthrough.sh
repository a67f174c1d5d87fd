#!/usr/bin/env bash
# A walk through the lightning-unlearn command line, from training the original model to a scored
# deletion request. Run from the repository root:
#
#     bash examples/cli_walkthrough.sh [WORKDIR]
#
# Environment knobs (the test suite shortens the run with them):
#     EPOCHS   epochs of the original training and of the retrained reference (default 12)
#     DATASET  mnist5k (default) or digits
#     METHOD   the config under examples/configs/ to run (default ps)
#     EXTRA    extra unlearn flags (e.g. EXTRA="--method.recording runs/walkthrough/original.ckpt" for naiveps)
set -euo pipefail
WORK=${1:-runs/walkthrough}
EPOCHS=${EPOCHS:-12}
DATASET=${DATASET:-mnist5k}
METHOD=${METHOD:-ps}
CONFIGS=$(cd "$(dirname "$0")/configs" && pwd)
CLI=${CLI:-lightning-unlearn}
mkdir -p "$WORK"

echo "== 1. train the original classifier (PrototypeRecorder attached; final checkpoint to --output)"
$CLI fit --config "$CONFIGS/fit.yaml" --data.dataset "$DATASET" --trainer.max_epochs "$EPOCHS" \
    --trainer.default_root_dir "$WORK" --output "$WORK/original.ckpt"

echo "== 2. see the full configuration of a method before running it"
$CLI unlearn --config "$CONFIGS/$METHOD.yaml" --method.checkpoint "$WORK/original.ckpt" --print_config > "$WORK/$METHOD.config.yaml"
head -n 12 "$WORK/$METHOD.config.yaml"

echo "== 3. serve the deletion request of data.yaml (forget class 3) with $METHOD"
$CLI unlearn --config "$CONFIGS/$METHOD.yaml" --method.checkpoint "$WORK/original.ckpt" \
    --data.dataset "$DATASET" --output "$WORK/$METHOD" --overwrite true ${EXTRA:-}

echo "== 4. the gold standard: retrain from scratch on the retain set (a registered method like any other)"
# Its full budget, no request: re-initialised weights already "forget" the class, so a target would stop it at once.
$CLI unlearn --method Retrain --method.checkpoint "$WORK/original.ckpt" --method.max_epochs "$EPOCHS" --method.lr 0.001 \
    --method.target null --method.guard null --data "$CONFIGS/data.yaml" --data.dataset "$DATASET" --output "$WORK/retrain" --overwrite true

echo "== 5. score the unlearned model against the original and the retrained reference"
$CLI evaluate --data "$CONFIGS/data.yaml" --data.dataset "$DATASET" --unlearned "$WORK/$METHOD" \
    --original "$WORK/original.ckpt" --reference "$WORK/retrain" --output "$WORK/$METHOD/evaluation.json"

echo "== done: $WORK/$METHOD/{model.pt,config.yaml,manifest.json,metrics.json,audit.json,evaluation.json}"
