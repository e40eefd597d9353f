"""The sub-commands; each module has NAME, HELP, add_arguments(parser) and main(args)."""

from omprog_ban.commands import ban, check, listing, replay, run, test, unban
from omprog_ban.commands import report
from omprog_ban.commands import status
from omprog_ban.commands import journal

COMMANDS = [run, check, listing, ban, unban, test, replay]
COMMANDS.append(report)
COMMANDS.append(status)
COMMANDS.append(journal)
