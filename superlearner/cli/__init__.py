"""The ``superlearner`` command line: `main` parses the command and runs it (`superlearner.cli.main`);
one module per command group: `evaluate` (``eval``), `ratings`, `play`, and their parts `players`
(players and matches), `levels` (held-out levels) and `svg` (game pictures)."""

from superlearner.cli.main import main

__all__ = ["main"]
