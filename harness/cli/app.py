"""`bench`: the harness's command line, a thin layer over the library.

This module builds the ``bench`` app from the command modules, one per group:

* :mod:`harness.cli.sweep`: ``sweep`` and ``measure-networks`` (the commands that measure);
* :mod:`harness.cli.info`: ``parse``, ``fake-device``, ``devices`` and ``plans``;
* :mod:`harness.cli.lut`: the ``bench lut`` group;
* :mod:`harness.cli.energy`: the ``bench energy`` group;
* :mod:`harness.cli.farm`: the ``bench farm`` group and ``bench sweep --farm``.

Every command that reports figures takes ``--json`` and then prints exactly one
JSON document on stdout (progress and messages go to stderr).  A problem the
user can fix is one line on stderr and exit code 2.
"""

from __future__ import annotations

import typer

from harness import __version__
from harness.cli import energy, farm, info, lut, op_profiles, sweep
from harness.cli.common import run_app, stdout

app = typer.Typer(
    help="Measure single-operator latency on a device and keep it in a per-device LUT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# The top-level commands, in the order `bench --help` lists them; the groups come after them.
app.command("sweep")(sweep.sweep)
app.command("measure-networks")(sweep.measure_networks_command)
app.command("parse")(info.parse)
app.command("fake-device")(info.fake_device)
app.command("devices")(info.devices)
app.command("plans")(info.plans)
app.command("op-profiles")(op_profiles.op_profiles)
app.add_typer(lut.app, name="lut")
app.add_typer(energy.app, name="energy")
app.add_typer(farm.app, name="farm")


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print the harness version.")) -> None:
    if version:
        stdout.print(f"chameleon harness {__version__}")
        raise typer.Exit()


def main() -> None:
    run_app(app, "bench")
