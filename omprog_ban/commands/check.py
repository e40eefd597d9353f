"""Check the config: every error names the key path and the fix; exit 78 on any."""

from __future__ import annotations

from omprog_ban import cli

NAME = "check"
HELP = "validate the config and exit (78 on errors)"


def add_arguments(parser) -> None:
    """No options beyond the common ones."""


def main(args) -> int:
    """Print a summary of a good config."""
    config = cli.load_config(args)
    print(f"config OK: {config.source}, table inet {config.table}, state {config.state_dir}")
    for jail in config.jails.values():
        ports = ",".join(map(str, jail.ports)) or "all ports"
        print(f"  jail {jail.name}: grammar {jail.grammar} rules {sorted(jail.rules)}: "
              f"{jail.maxretry} in {jail.findtime:g}s -> {jail.bantime:g}s on {'/'.join(jail.protocols)} {ports}")
    return 0
