"""The commands around the loop: sft, compare/eval, export, serve, doctor, reward-model training."""
