"""Scorers: rules, reward models and user functions, combined with weights."""
