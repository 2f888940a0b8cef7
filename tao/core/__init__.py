"""The foundation: shared types, config, errors, prompts files, storage and the base model.

Imports nothing of tao above it, nor rollouts or reward (tests/test_layers.py)."""
