"""Losses built on the relaxations: ranking, shortest paths, sampled losses.

One import line per loss module.
"""
