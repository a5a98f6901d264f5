#!/usr/bin/env bash
# VisPlay reasoner stage on verl: GRPO on S_t over the band-filtered pseudo-labels,
# reward 0.9 * [answer == pseudo-label] + 0.1 * [format].
set -xeuo pipefail

NNODES=${NNODES:-1}
NUM_GPUS=${NUM_GPUS:-8}
MODEL_PATH=${MODEL_PATH:-"$HOME/models/Qwen2.5-VL-7B-Instruct"}
TRAIN_FILE=${TRAIN_FILE:-"$HOME/data/visplay/pseudo_labels.parquet"}
VAL_FILE=${VAL_FILE:-$TRAIN_FILE}
CKPT_DIR=${CKPT_DIR:-"$HOME/checkpoints/visplay/reasoner"}
EXPERIMENT=${EXPERIMENT:-reasoner_iter1}

n_resp_per_prompt=8
format_weight=0.1
train_batch_size=512
ppo_mini_batch_size=128
max_response_length=4096
total_steps=20

python3 -m verl_ext.plugins.main_visplay --config-name reasoner \
    data.train_files="$TRAIN_FILE" \
    data.val_files="$VAL_FILE" \
    data.train_batch_size=${train_batch_size} \
    data.max_response_length=${max_response_length} \
    actor_rollout_ref.model.path="$MODEL_PATH" \
    actor_rollout_ref.actor.ppo_mini_batch_size=${ppo_mini_batch_size} \
    actor_rollout_ref.rollout.n=${n_resp_per_prompt} \
    reward.custom_reward_function.reward_kwargs.format_weight=${format_weight} \
    trainer.nnodes="$NNODES" \
    trainer.n_gpus_per_node="$NUM_GPUS" \
    trainer.total_training_steps=${total_steps} \
    trainer.experiment_name="$EXPERIMENT" \
    trainer.default_local_dir="$CKPT_DIR" \
    "$@"
