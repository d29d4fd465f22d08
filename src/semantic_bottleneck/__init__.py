"""Executable reproduction of arXiv 2602.21596: the semantic bottleneck in the conditional vector c."""

__version__ = "0.1.0"
