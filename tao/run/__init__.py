"""The run directory: its paths, prompt pool, round plans, version registry, budget and report."""
