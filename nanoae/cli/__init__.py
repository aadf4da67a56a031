"""The ``nanoae`` command, on top of everything else.

    main.py       the entry point: parses the arguments, then calls the commands
    commands.py   what each command does, with the library
    checks.py     what ``nanoae gradcheck`` checks: every built-in, or a layer from your file
"""

from nanoae.cli.main import main

__all__ = ["main"]
