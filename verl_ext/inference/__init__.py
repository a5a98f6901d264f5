"""Inference below both the loop and evaluation: batched engines (`engines`: HF generate, vLLM) and the offline
generation / pseudo-labelling jobs the loop runs as subprocesses (`python -m verl_ext.inference`, `offline`), cut into
resumable fragments (`fragments`) and run in-process or by a Ray Data pipeline of engine actors (`ray_pipeline`).
"""
