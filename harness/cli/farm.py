"""`bench farm head|join|status` and the farm side of `bench sweep --farm`: the device farm on Ray.

``head`` and ``join`` run Ray's own ``ray start`` with the host's devices
announced as resources (:mod:`harness.farm.cluster`); ``status`` lists hosts
and devices; :func:`sweep_on_farm` runs a farm sweep with one progress bar per
unit.  Registered on the ``bench`` app by :mod:`harness.cli.app`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from harness.cli.common import emit_json, stderr, stdout
from harness.cli.options import JsonOption
from harness.farm.cluster import DEFAULT_PORT, AttachedDevice, FarmError, ray_start_command

app = typer.Typer(help="The device farm: hosts with phones, joined through Ray (see docs/farm.md).", no_args_is_help=True)

AttachOption = typer.Option(None, "--attach", metavar="PROFILE=UNIT",
                            help="A device plugged into this host: its profile and USB serial or HOST:PORT; repeatable.")
TrainOption = typer.Option(0, "--train-slots", min=0, max=1024, help="Trainings this host takes at once (0: it only measures).")
CpusOption = typer.Option(None, "--num-cpus", min=0, max=4096, help="CPUs this host gives Ray (default: all).")
BlockOption = typer.Option(False, "--block", help="Stay in the foreground until stopped (Ctrl-C stops the host's Ray).")


def _ray_start(argv: list[str]) -> None:
    ray = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    if not Path(ray).exists():
        raise FarmError("Ray's `ray` command is not installed here (pip install -e . installs it)")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    completed = subprocess.run([ray, *argv[1:]], env=env)
    if completed.returncode != 0:
        raise FarmError(f"`{' '.join(argv)}` exited {completed.returncode} (its output is above)")


@app.command("head")
def head(
    port: int = typer.Option(DEFAULT_PORT, "--port", min=1, max=65535, help="The port hosts join on."),
    attach: Optional[list[str]] = AttachOption,
    train_slots: int = TrainOption,
    num_cpus: Optional[int] = CpusOption,
    node_ip: Optional[str] = typer.Option(None, "--node-ip", help="This host's address as the other hosts reach it."),
    block: bool = BlockOption,
) -> None:
    """Start the farm's head on this host (Ray's `ray start --head`), announcing its devices."""
    devices = [AttachedDevice.parse(text) for text in attach or []]
    _ray_start(ray_start_command(devices, port=port, num_cpus=num_cpus, trainer_slots=train_slots, node_ip=node_ip, block=block))
    if not block:
        stderr.print(f"farm head on port {port}; another host joins with: bench farm join THIS_HOST:{port} "
                     f"--attach PROFILE=SERIAL", soft_wrap=True, highlight=False)


@app.command("join")
def join(
    address: str = typer.Argument(..., help="The head's HOST:PORT."),
    attach: Optional[list[str]] = AttachOption,
    train_slots: int = TrainOption,
    num_cpus: Optional[int] = CpusOption,
    node_ip: Optional[str] = typer.Option(None, "--node-ip", help="This host's address as the head reaches it."),
    block: bool = BlockOption,
) -> None:
    """Join this host to the farm at ADDRESS (Ray's `ray start --address`), announcing its devices."""
    devices = [AttachedDevice.parse(text) for text in attach or []]
    if not devices and not train_slots:
        raise FarmError("a host joins with devices (--attach PROFILE=UNIT) or training slots (--train-slots N)")
    _ray_start(ray_start_command(devices, address=address, num_cpus=num_cpus, trainer_slots=train_slots, node_ip=node_ip,
                                 block=block))


@app.command("status")
def status(
    address: str = typer.Argument("auto", help="The head's HOST:PORT (default: the farm this host belongs to)."),
    as_json: bool = JsonOption,
) -> None:
    """The farm's hosts and devices: busy, idle, failed, or gone with their host."""
    import ray

    from harness.farm.cluster import connect
    from harness.farm.status import farm_status

    started = connect(address)
    try:
        hosts = farm_status()
    finally:
        if started:
            ray.shutdown()
    if as_json:
        emit_json({"hosts": [h.to_json() for h in hosts]})
        return
    from rich.table import Table

    table = Table(title="farm", show_lines=False)
    for column in ("host", "state", "CPUs", "train slots", "device", "device state"):
        table.add_column(column)
    for host in hosts:
        rows = host.devices or [None]
        for i, device in enumerate(rows):
            table.add_row(host.address if i == 0 else "", ("up" if host.alive else "left") if i == 0 else "",
                          f"{host.cpus:g}" if i == 0 else "", f"{host.trainer_slots:g}" if i == 0 else "",
                          str(device.device) if device else "-",
                          (device.state + (f": {device.problem}" if device.problem else "")) if device else "")
    stdout.print(table)


def sweep_on_farm(address: str, devices: list[str], plan_name: str, out_dir: Path, *, shard: bool, attach: list[str],
                  as_json: bool) -> None:
    """`bench sweep --farm`: one plan on every unit of the named devices, one progress bar per unit."""
    import ray
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from harness.farm.cluster import connect, devices_in
    from harness.farm.sweep import farm_sweep, farm_targets
    from harness.plans import load_plan
    from harness.profiles import load_profile

    profiles = [load_profile(name) for name in dict.fromkeys(devices)]
    plan = load_plan(plan_name)
    attached = [AttachedDevice.parse(text) for text in attach]
    started = connect(address, attached)
    try:
        farm_devices = sorted({d for node in ray.nodes() if node["Alive"] for d in devices_in(node.get("Resources", {}))})
        targets = farm_targets(farm_devices, profiles, out_dir, shard=shard)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[state]}"),
                   TimeElapsedColumn())
        with Progress(*columns, console=stderr) as progress:
            bars: dict[str, Any] = {}

            def on_event(event: Any) -> None:
                name = str(event.unit)
                if event.kind == "start":
                    bars[name] = progress.add_task(f"{event.unit.profile} · {event.unit.unit}", total=event.total or None,
                                                   state="")
                    return
                state = {"rows": "", "retry": f"retrying: {event.message}", "left": "host left, waiting",
                         "back": "host back", "failed": f"failed: {event.message}", "done": "done"}.get(event.kind, "")
                progress.update(bars[name], completed=event.rows, state=state[:60])
                if event.kind in ("retry", "left", "failed"):
                    stderr.print(f"{event.unit}: {state}", markup=False, soft_wrap=True)

            result = farm_sweep(targets, plan, on_event=on_event)
    finally:
        if started:
            ray.shutdown()
    if as_json:
        emit_json({"farm_sweep": result.to_json()})
    else:
        for target in result.targets:
            stdout.print(f"[bold]{target.out}[/]: measured {target.measured} new, {target.already_measured} already there, "
                         f"{target.remaining} remaining of {target.planned} ({', '.join(target.units)})")
        efficiency = result.efficiency()
        stdout.print(f"{result.wall_s:.1f} s wall" + (f", devices busy {100 * efficiency:.0f}% of it" if efficiency else ""))
    for target in result.targets:
        for line in ([target.problem] if target.problem else []) + target.failures:
            stderr.print(f"{target.out}: {line}", markup=False, soft_wrap=True)
    for unit in result.units:
        if unit.state == "failed":
            stderr.print(f"{unit.device}: failed: {unit.problem}", markup=False, soft_wrap=True)
    if result.interrupted:
        stderr.print("interrupted: every LUT keeps what was measured; run the same command again to resume")
        raise typer.Exit(130)
    if not result.complete:
        raise typer.Exit(1)
