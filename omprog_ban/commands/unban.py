"""Unban an address from one jail or all; an already expired ban is not an error."""

from __future__ import annotations

import ipaddress

from omprog_ban import cli
from omprog_ban.nft import Nft, NftError

NAME = "unban"
HELP = "remove an address from the kernel's sets"


def add_arguments(parser) -> None:
    """Add unban's arguments."""
    parser.add_argument("address", help="the address (or CIDR) to unban")
    parser.add_argument("--jail", help="only this jail (default: every jail)")


def main(args) -> int:
    """Delete the element from each jail's set, one transaction each."""
    config = cli.load_config(args)
    if args.jail and args.jail not in config.jails:
        print(f"omprog-ban: no jail {args.jail!r}; jails: {', '.join(config.jails)}")
        return cli.EX_USAGE
    try:
        address = ipaddress.ip_network(args.address, strict=False)
        address = address.network_address if address.num_addresses == 1 else address
    except ValueError as error:
        print(f"omprog-ban: {error}")
        return cli.EX_USAGE
    try:
        removed = Nft(config.table, jails=config.jails.values()).unban(address, args.jail)
    except NftError as error:
        print(f"omprog-ban: nft: {error}")
        return cli.EX_UNAVAILABLE
    print(f"unbanned {address} from {', '.join(removed)}" if removed else f"{address} was not banned")
    return 0
