"""The package's version (one place; `superlearner.__version__` and checkpoints read it)."""

__version__ = "0.1.0"
