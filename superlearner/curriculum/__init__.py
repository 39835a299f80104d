"""Autonomous curricula: level buffers, samplers and scores, the learning-progress teacher
(`levels`), and the held-out probe measured during training (`probe`).
"""
