"""``python -m superlearner.cli``: the same as the ``superlearner`` command."""

from superlearner.cli.main import main

raise SystemExit(main())
