"""tao: improve a language model from unlabeled prompts (TAO-style)."""
