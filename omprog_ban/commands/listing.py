"""List who is banned, read from the kernel: jail, address or prefix, time left."""

from __future__ import annotations

import json

from omprog_ban import cli
from omprog_ban.nft import Nft, NftError

NAME = "list"
HELP = "show the bans in the kernel"


def add_arguments(parser) -> None:
    """Add list's options."""
    parser.add_argument("--jail", help="only this jail")
    parser.add_argument("--json", action="store_true", help="a JSON list of {jail, address, expires, timeout}")


def main(args) -> int:
    """Print the kernel's elements of omprog-ban's sets."""
    config = cli.load_config(args)
    try:
        elements = Nft(config.table, jails=config.jails.values()).elements()
    except NftError as error:
        print(f"omprog-ban: cannot read table inet {config.table}: {error}")
        return cli.EX_UNAVAILABLE
    if args.jail:
        elements = [e for e in elements if e.jail == args.jail]
    elements.sort(key=lambda e: (e.jail, -(e.expires or 0)))
    if args.json:
        print(json.dumps([{"jail": e.jail, "address": e.address, "expires": e.expires, "timeout": e.timeout} for e in elements], indent=1))
        return 0
    print(f"{'JAIL':<16} {'ADDRESS':<40} {'LEFT':>8} {'BANTIME':>8}")
    for element in elements:
        left = "-" if element.expires is None else f"{element.expires}s"
        total = "-" if element.timeout is None else f"{element.timeout}s"
        print(f"{element.jail:<16} {element.address:<40} {left:>8} {total:>8}")
    print(f"{len(elements)} banned")
    return 0
