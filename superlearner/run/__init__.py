"""The host side of a run: the trainer, checkpoints, logs, loading agents, plots, memory estimates
and the offline discovery of update rules.
"""
