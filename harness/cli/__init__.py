"""The ``bench`` command line: one thin module per command group over library calls.

* :mod:`harness.cli.app`: the ``bench`` app and its top-level commands (sweep, measure-networks, devices,
  plans, fake-device, parse), with the ``lut`` and ``energy`` groups added to it.
* :mod:`harness.cli.common`: what every command line shares (``--json`` output, the one-line error
  contract, SIGTERM as Ctrl-C); the optimizer's CLI uses it too.

May import anything of the harness; nothing imports a CLI module except another CLI module.
This package stays light so that ``from harness.cli.common import ...`` loads no command.
"""


def main() -> None:
    """The ``bench`` entry point."""
    from harness.cli.app import main as run

    run()
