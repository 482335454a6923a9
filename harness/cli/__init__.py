"""The ``bench`` command line: one thin module per command group over library calls.

* :mod:`harness.cli.app`: the ``bench`` app, its ``--version`` callback and ``main``; it adds the commands below.
* :mod:`harness.cli.sweep`: ``sweep`` and ``measure-networks``, the commands that measure.
* :mod:`harness.cli.info`: ``devices``, ``plans``, ``parse`` and ``fake-device``.
* :mod:`harness.cli.lut`: the ``bench lut`` group (show, query, import, merge).
* :mod:`harness.cli.energy`: the ``bench energy`` group (measure, import, recompute, session).
* :mod:`harness.cli.options`: options several command modules share (``--json``).
* :mod:`harness.cli.common`: what every command line shares (``--json`` output, the one-line error
  contract, SIGTERM as Ctrl-C); the optimizer's CLI uses it too.

May import anything of the harness; nothing imports a CLI module except another CLI module.
This package stays light so that ``from harness.cli.common import ...`` loads no command.
"""


def main() -> None:
    """The ``bench`` entry point."""
    from harness.cli.app import main as run

    run()
