#!/usr/bin/env bash
# VisPlay questioner stage on verl: GRPO on Q_t with the frozen reasoner S_{t-1} scoring each question.
# Default layout (reference run): 4 GPUs train the questioner, 4 GPUs serve the frozen reasoner (verl's
# reward-model pool). REASONER_HOSTING=colocated shares the training GPUs (sleep/wake per step);
# REASONER_HOSTING=external uses REASONER_URL, any OpenAI-compatible endpoint you run yourself; its API key, if it
# needs one, goes in the environment variable VISPLAY_REASONER_API_KEY (never on the command line: verl prints its config).
set -xeuo pipefail

NNODES=${NNODES:-1}
NUM_GPUS=${NUM_GPUS:-4}
REASONER_GPUS=${REASONER_GPUS:-4}
REASONER_HOSTING=${REASONER_HOSTING:-own_pool}
MODEL_PATH=${MODEL_PATH:-"$HOME/models/Qwen2.5-VL-7B-Instruct"}
REASONER_PATH=${REASONER_PATH:-$MODEL_PATH}
REASONER_URL=${REASONER_URL:-}
TRAIN_FILE=${TRAIN_FILE:-"$HOME/data/visplay/images.parquet"}
CKPT_DIR=${CKPT_DIR:-"$HOME/checkpoints/visplay/questioner"}
EXPERIMENT=${EXPERIMENT:-questioner_iter1}

n_resp_per_prompt=8
num_reasoner_samples=10   # m
reward_mode=paper         # paper | reference
lam=1.0                   # lambda
train_batch_size=512
ppo_mini_batch_size=128
total_steps=20

case "$REASONER_HOSTING" in
    own_pool)
        reasoner_args=(reward.reward_model.enable=True reward.reward_model.enable_resource_pool=True
            reward.reward_model.n_gpus_per_node="$REASONER_GPUS" reward.reward_model.nnodes="$NNODES"
            reward.reward_model.rollout.free_cache_engine=False reward.reward_model.model_path="$REASONER_PATH") ;;
    colocated)
        reasoner_args=(reward.reward_model.enable=True reward.reward_model.enable_resource_pool=False
            reward.reward_model.rollout.free_cache_engine=True reward.reward_model.rollout.gpu_memory_utilization=0.4
            reward.reward_model.model_path="$REASONER_PATH") ;;
    external)
        reasoner_args=(reward.reward_model.enable=False visplay.reasoner.base_url="$REASONER_URL") ;;
    *) echo "REASONER_HOSTING must be own_pool, colocated or external" >&2; exit 2 ;;
esac

python3 -m verl_ext.plugins.main_visplay --config-name questioner \
    data.train_files="$TRAIN_FILE" \
    data.train_batch_size=${train_batch_size} \
    actor_rollout_ref.model.path="$MODEL_PATH" \
    actor_rollout_ref.actor.ppo_mini_batch_size=${ppo_mini_batch_size} \
    actor_rollout_ref.rollout.n=${n_resp_per_prompt} \
    visplay.reasoner.num_samples=${num_reasoner_samples} \
    visplay.reward.mode=${reward_mode} \
    visplay.reward.lam=${lam} \
    "${reasoner_args[@]}" \
    trainer.nnodes="$NNODES" \
    trainer.n_gpus_per_node="$NUM_GPUS" \
    trainer.total_training_steps=${total_steps} \
    trainer.experiment_name="$EXPERIMENT" \
    trainer.default_local_dir="$CKPT_DIR" \
    "$@"
