"""The update stage: GRPO on the explored candidates, the RFT baseline, the optimizer state carried between rounds."""
