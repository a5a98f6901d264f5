#!/usr/bin/env bash
# GPU smoke test of the reasoner stage: one GPU, a few GRPO steps on synthetic pseudo-labelled questions
# (counting questions whose labels come from the synthetic scenes), reward 0.9 * accuracy + 0.1 * format.
# Any small Qwen2.5-VL works:  MODEL_PATH=/path/to/Qwen2.5-VL-3B-Instruct bash $0
set -xeuo pipefail

NUM_GPUS=${NUM_GPUS:-1}
MODEL_PATH=${MODEL_PATH:?set MODEL_PATH to a local Qwen2.5-VL checkpoint}
WORK_DIR=${WORK_DIR:-$(mktemp -d -t visplay_reasoner_smoke.XXXXXX)}
TOTAL_STEPS=${TOTAL_STEPS:-2}

python3 - "$WORK_DIR/pseudo_labels.parquet" <<'PY'
import sys

import pandas as pd

from verl_ext.tiny.images import make_images, png_bytes

rows = []
for image, scene in make_images(32, seed=0, size=(224, 224)):
    if scene["kind"] == "count":
        question, label = f"How many {scene['color']} {scene['shape']}s are in the image?", str(scene["count"])
    elif scene["kind"] == "mixed":
        question, label = "How many shapes are in the image?", str(len(scene["objects"]))
    else:
        question, label = "How many bars does the chart have?", str(len(scene["values"]))
    rows.append(dict(id=f"{scene['id']}/1/0", source_image_id=scene["id"], image=png_bytes(image), question=question,
                     question_type="numerical", pseudo_label=label, confidence=0.5, num_samples=10, iteration=1,
                     questioner_checkpoint="smoke", filter_reason="kept"))
pd.DataFrame(rows).to_parquet(sys.argv[1])
PY

python3 -m verl_ext.plugins.main_visplay --config-name reasoner \
    data.train_files="$WORK_DIR/pseudo_labels.parquet" \
    data.train_batch_size=8 \
    data.max_prompt_length=1024 \
    data.max_response_length=512 \
    data.min_pixels=50176 \
    data.max_pixels=200704 \
    data.dataloader_num_workers=2 \
    actor_rollout_ref.model.path="$MODEL_PATH" \
    actor_rollout_ref.actor.ppo_mini_batch_size=8 \
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2 \
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu=8192 \
    actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=2 \
    actor_rollout_ref.rollout.n=4 \
    actor_rollout_ref.rollout.tensor_model_parallel_size=1 \
    actor_rollout_ref.rollout.gpu_memory_utilization=0.4 \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2 \
    reward.num_workers=2 \
    trainer.n_gpus_per_node="$NUM_GPUS" \
    trainer.total_training_steps="$TOTAL_STEPS" \
    trainer.save_freq=-1 \
    trainer.default_local_dir="$WORK_DIR/checkpoints" \
    trainer.experiment_name=reasoner_smoke \
    "$@"
