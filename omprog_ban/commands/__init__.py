"""The sub-commands; each module has NAME, HELP, add_arguments(parser) and main(args)."""

from omprog_ban.commands import ban, check, listing, run, unban

COMMANDS = [run, check, listing, ban, unban]
