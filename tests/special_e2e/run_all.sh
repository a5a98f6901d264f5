#!/usr/bin/env bash
# GPU acceptance test of the whole chain, in one command, on ONE GPU with a local Qwen2.5-VL-3B:
#   MODEL_PATH=/path/to/Qwen2.5-VL-3B-Instruct bash tests/special_e2e/run_all.sh
# It runs `visplay preflight`, a dry run, then one full VisPlay iteration through the verl backend (questioner GRPO
# with the frozen reasoner colocated, FSDP->HF merge, vLLM generation, vLLM pseudo-labelling, band filter, reasoner
# GRPO, merge) at 2 GRPO steps per stage on 16 synthetic images and N = 32 questions, checks every artifact, and prints
# a pass/fail table. Budget: TIME_LIMIT seconds (default 600) for the whole chain.
# DRY_RUN=1 checks the script and the recipe it builds without a GPU (preflight is reported, not enforced).
set -xeuo pipefail

MODEL_PATH=${MODEL_PATH:-}
RECIPE=${RECIPE:-recipes/qwen2.5-vl-3b.yaml}
PYTHON=${PYTHON:-python3}
RUN_DIR=${RUN_DIR:-$(mktemp -d -t visplay_e2e.XXXXXX)/run}
DRY_RUN=${DRY_RUN:-0}
TIME_LIMIT=${TIME_LIMIT:-600}
NUM_QUESTIONS=${NUM_QUESTIONS:-32}
STEPS=${STEPS:-2}

if [[ -z "${MODEL_PATH}" && "${DRY_RUN}" != "1" ]]; then
    echo "set MODEL_PATH to a local Qwen2.5-VL-3B-Instruct directory (or DRY_RUN=1)" >&2
    exit 2
fi
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-VL-3B-Instruct}

# One GPU, small everything; every key is a recipe key, so the loop builds the stage commands as in a real run.
settings=(
    iterations=1
    "model.base=${MODEL_PATH}"
    images.source=testkit images.path=synthetic images.max_images=16
    images.min_pixels=50176 images.max_pixels=200704
    "questioner.steps=${STEPS}" "reasoner.steps=${STEPS}"
    questioner.m=4 questioner.reasoner_max_tokens=256 questioner.reasoner_service=colocated
    questioner.reasoner_max_failed_fraction=0.05
    questioner.checkpoint_every=null reasoner.checkpoint_every=null
    "generation.num_questions=${NUM_QUESTIONS}" generation.shards=1 generation.max_new_tokens=256
    pseudo_label.m=4 pseudo_label.max_new_tokens=256 pseudo_label.shards=1
    filter.low=0.0 filter.high=1.0
    resources.nnodes=1 resources.gpus_per_node=1 resources.questioner_train_gpus=1
    resources.questioner_reasoner_gpus=0 resources.reasoner_train_gpus=1 resources.inference_gpus=1
    resources.rollout_tensor_parallel_size=1 resources.inference_tensor_parallel_size=1
    resources.gpu_memory_utilization=0.3
    "logging.loggers=[console]"
)
for role in questioner reasoner; do
    settings+=(
        "${role}.grpo.n=4" "${role}.grpo.rollout_batch_size=8" "${role}.grpo.global_batch_size=8"
        "${role}.grpo.max_prompt_length=1024" "${role}.grpo.max_response_length=256"
        "${role}.grpo.max_token_len_per_gpu=8192"
    )
done
set_args=()
for kv in "${settings[@]}"; do set_args+=(--set "${kv}"); done

names=()
results=()
seconds=()
record() {  # record NAME RESULT SECONDS
    names+=("$1"); results+=("$2"); seconds+=("$3")
}
step() {  # step NAME COMMAND...: run it, record PASS/FAIL and its time, never abort the script
    local name=$1; shift
    local start=${SECONDS}
    if "$@"; then record "${name}" PASS $((SECONDS - start)); else record "${name}" FAIL $((SECONDS - start)); fi
}

chain_start=${SECONDS}
if [[ "${DRY_RUN}" == "1" ]]; then
    # Without a GPU the preflight fails (no GPU, maybe no vLLM): report it, do not enforce it.
    if "${PYTHON}" -m verl_ext preflight --recipe "${RECIPE}" --run-dir "${RUN_DIR}" "${set_args[@]}"; then
        record preflight PASS 0
    else
        record preflight "FAIL (reported only: DRY_RUN)" 0
    fi
else
    step preflight "${PYTHON}" -m verl_ext preflight --recipe "${RECIPE}" --run-dir "${RUN_DIR}" "${set_args[@]}"
fi
step dry-run "${PYTHON}" -m verl_ext evolve --recipe "${RECIPE}" --run-dir "${RUN_DIR}" --dry-run "${set_args[@]}"

if [[ "${DRY_RUN}" != "1" ]]; then
    step evolve "${PYTHON}" -m verl_ext evolve --recipe "${RECIPE}" --run-dir "${RUN_DIR}" "${set_args[@]}"
    # Every stage done, with non-empty outputs: a row per stage.
    stage_rows=$("${PYTHON}" - "${RUN_DIR}" <<'EOF' || true
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

run = Path(sys.argv[1])
stages = json.loads((run / "manifest.json").read_text()).get("stages", {}) if (run / "manifest.json").is_file() else {}
expected = ["images", "1:questioner", "1:questioner_merge", "1:generate", "1:pseudo_label", "1:filter", "1:reasoner",
            "1:reasoner_merge"]
for key in expected:
    rec = next((v for k, v in stages.items() if k == key or k.endswith(key)), None)
    ok = rec is not None and rec.get("state") == "done"
    detail = ""
    for path in (rec or {}).get("outputs", {}).values():
        p = Path(path)
        if p.suffix == ".parquet":
            rows = pq.ParquetFile(p).metadata.num_rows if p.is_file() else 0
            ok = ok and rows > 0
            detail += f" {p.name}={rows}"
        elif p.name == "model":
            has_config = (p / "config.json").is_file()
            ok = ok and has_config
            detail += f" model/config.json={'yes' if has_config else 'no'}"
    print(f"{key}|{'PASS' if ok else 'FAIL'}|{int((rec or {}).get('seconds') or 0)}|{detail.strip()}")
EOF
)
    while IFS='|' read -r key result secs detail; do
        [[ -n "${key}" ]] && record "stage ${key} ${detail}" "${result}" "${secs}"
    done <<< "${stage_rows}"
    total=$((SECONDS - chain_start))
    if ((total <= TIME_LIMIT)); then record "within ${TIME_LIMIT}s" PASS "${total}"; else
        record "within ${TIME_LIMIT}s" FAIL "${total}"; fi
fi

set +x
echo
echo "| check | result | seconds |"
echo "| --- | --- | --- |"
failed=0
for i in "${!names[@]}"; do
    echo "| ${names[$i]} | ${results[$i]} | ${seconds[$i]} |"
    [[ "${results[$i]}" == FAIL ]] && failed=$((failed + 1))
done
echo
echo "run dir: ${RUN_DIR}"
if ((failed)); then echo "${failed} check(s) FAILED"; exit 1; fi
echo "all checks passed"
