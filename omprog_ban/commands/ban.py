"""Ban an address (or CIDR) in a jail by hand, for the jail's bantime or --time."""

from __future__ import annotations

import ipaddress
import sqlite3
import time

from omprog_ban import cli, history, validate
from omprog_ban.model import Ban
from omprog_ban.nft import Nft, NftError

NAME = "ban"
HELP = "ban an address in a jail by hand"


def add_arguments(parser) -> None:
    """Add ban's arguments."""
    parser.add_argument("address", help="an IPv4 or IPv6 address (or CIDR for jails with subnet bans)")
    parser.add_argument("--jail", required=True, help="the jail whose sets get the element")
    parser.add_argument("--time", help="ban duration (default: the jail's bantime)")


def main(args) -> int:
    """Add the element; exit 64 on a bad address or jail."""
    config = cli.load_config(args)
    jail = config.jails.get(args.jail)
    if jail is None:
        print(f"omprog-ban: no jail {args.jail!r}; jails: {', '.join(config.jails)}")
        return cli.EX_USAGE
    try:
        address = ipaddress.ip_network(args.address, strict=False)
        address = address.network_address if address.num_addresses == 1 else address
        bantime = validate.duration(args.time, "--time") if args.time else jail.bantime
    except (ValueError, validate.ConfigError) as error:
        print(f"omprog-ban: {error}")
        return cli.EX_USAGE
    if not isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)) and jail.subnet is None:
        print(f"omprog-ban: jail {jail.name} has no subnet sets; give a single address")
        return cli.EX_USAGE
    backend = Nft(config.table)
    ban = Ban(jail.name, address, bantime, time.time(), 0, "manual")
    try:
        backend.ensure(config.jails.values(), config.max_set_size, config.blocklist)
        backend.ban([ban])
    except NftError as error:
        print(f"omprog-ban: nft: {error}")
        return cli.EX_UNAVAILABLE
    try:  # the kernel has the ban; the history row is only a record of it
        record = history.History(config.state_dir / history.FILE, config.history_retention)
        record.record(ban)
        record.close(ban.time)
    except (sqlite3.Error, OSError) as error:
        print(f"omprog-ban: warning: ban not recorded in the history: {error}")
    print(f"banned {address} in {jail.name} for {bantime:g}s")
    return 0
