"""Meta-learning: population based training and the sliding-window bandit (`controllers`), and
online meta-gradients (`metagrad`).
"""
