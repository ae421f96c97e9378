"""The host's command table: every operation across the host boundary, declared once."""

from py_code_mode._private.commands.base import Command, Input
from py_code_mode._private.commands.table import COMMANDS

__all__ = ["COMMANDS", "Command", "Input"]
