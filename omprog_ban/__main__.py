"""Run the command line: ``python -m omprog_ban``."""

from omprog_ban.cli import main

raise SystemExit(main())
