"""The `promptdag` command: one module per command group, with the progress display and
terminal output they share."""

from promptdag.cli.main import main

__all__ = ["main"]
