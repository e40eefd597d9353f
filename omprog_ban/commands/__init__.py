"""The sub-commands; each module has NAME, HELP, add_arguments(parser) and main(args)."""

from omprog_ban.commands import ban, check, listing, run, unban
from omprog_ban.commands import report
from omprog_ban.commands import status

COMMANDS = [run, check, listing, ban, unban]
COMMANDS.append(report)
COMMANDS.append(status)
