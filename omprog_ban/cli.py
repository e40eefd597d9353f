"""The ``omprog-ban`` command line: one sub-command per module in :mod:`omprog_ban.commands`.

Exit codes follow sysexits: 0 fine, 64 bad usage, 78 bad config, 69 nft unavailable.
"""

from __future__ import annotations

import argparse
import logging
import sys

from omprog_ban import __version__, config

EX_USAGE, EX_UNAVAILABLE, EX_CONFIG = 64, 69, 78


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own exit code 2 is not sysexits
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    """Return the argument parser with every command."""
    from omprog_ban.commands import COMMANDS  # here: the commands import this module

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=config.DEFAULT_PATH,
                        help=f"TOML config (default {config.DEFAULT_PATH}; 'default' for the embedded one)")
    common.add_argument("--state-dir", metavar="DIR", help="state directory (default: state_dir in the config, else /var/lib/omprog-ban)")
    common.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    top = _Parser(prog="omprog-ban", description="Ban abusive clients from rsyslog or journald in nftables.")
    top.add_argument("--version", action="version", version=f"omprog-ban {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in COMMANDS:
        command = sub.add_parser(module.NAME, parents=[common], help=module.HELP, description=module.__doc__)
        module.add_arguments(command)
        command.set_defaults(main=module.main)
    return top


def load_config(args: argparse.Namespace) -> config.Config:
    """Return the config the arguments name ('default': the embedded one)."""
    path = None if args.config == "default" else args.config
    return config.load(path, state_dir=args.state_dir)


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code."""
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
        format="omprog-ban[%(process)d]: %(levelname)s %(message)s",
    )
    try:
        return args.main(args)
    except config.ConfigError as error:
        print(f"omprog-ban: config error: {error}", file=sys.stderr)
        return EX_CONFIG
    except BrokenPipeError:
        return 0
