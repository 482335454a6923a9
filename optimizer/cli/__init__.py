"""The ``optimize`` command line: one thin module per command group over library calls.

May import anything of the optimizer and :mod:`harness.cli.common`.  Nothing imports a CLI module
except another CLI module.
"""


def main() -> None:
    """The ``optimize`` entry point."""
    from optimizer.cli.app import main as run

    run()
