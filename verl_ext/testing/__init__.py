"""Test support, imported only by tests and test tools, never by the product: an OpenAI-compatible chat server over a
local HF model (the frozen reasoner of plugin tests), and execution targets for running verl's trainer without GPUs.
"""
