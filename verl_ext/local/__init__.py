"""The `local` backend's engine: TRL GRPO training, HF sampling and the format warm-up, in-process on CPU (or one GPU).

It reuses the core (parsing, voting, rewards, clustering) and the packaged prompts, so a tiny CPU run computes the same
rewards and writes the same artifacts as a verl run. Entry point: `verl_ext.evolve.local_backend.LocalBackend`.
"""
