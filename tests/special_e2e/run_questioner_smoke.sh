#!/usr/bin/env bash
# GPU smoke test of the questioner stage: one GPU, a few GRPO steps on synthetic images, the frozen reasoner
# colocated on the same GPU through verl's reward-model pool (sleep/wake), the repetition penalty applied by the
# visplay_sync trainer. Any small Qwen2.5-VL works:  MODEL_PATH=/path/to/Qwen2.5-VL-3B-Instruct bash $0
set -xeuo pipefail

NUM_GPUS=${NUM_GPUS:-1}
MODEL_PATH=${MODEL_PATH:?set MODEL_PATH to a local Qwen2.5-VL checkpoint}
REASONER_PATH=${REASONER_PATH:-$MODEL_PATH}
WORK_DIR=${WORK_DIR:-$(mktemp -d -t visplay_questioner_smoke.XXXXXX)}
TOTAL_STEPS=${TOTAL_STEPS:-2}

python3 -c "from verl_ext.tiny.images import write_image_parquet; write_image_parquet('$WORK_DIR/images.parquet', n=32, seed=0, size=(224, 224))"

python3 -m verl_ext.plugins.main_visplay --config-name questioner \
    data.train_files="$WORK_DIR/images.parquet" \
    data.train_batch_size=8 \
    data.max_prompt_length=1024 \
    data.max_response_length=256 \
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
    actor_rollout_ref.rollout.gpu_memory_utilization=0.3 \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2 \
    reward.num_workers=2 \
    reward.reward_model.enable=True \
    reward.reward_model.enable_resource_pool=False \
    reward.reward_model.model_path="$REASONER_PATH" \
    reward.reward_model.rollout.free_cache_engine=True \
    reward.reward_model.rollout.gpu_memory_utilization=0.3 \
    reward.reward_model.rollout.tensor_model_parallel_size=1 \
    reward.reward_model.rollout.prompt_length=1024 \
    visplay.reasoner.num_samples=4 \
    visplay.reasoner.max_tokens=256 \
    trainer.n_gpus_per_node="$NUM_GPUS" \
    trainer.total_training_steps="$TOTAL_STEPS" \
    trainer.save_freq=-1 \
    trainer.default_local_dir="$WORK_DIR/checkpoints" \
    trainer.experiment_name=questioner_smoke \
    "$@"
