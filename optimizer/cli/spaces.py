"""`optimize space-plan`: a search space's operators as a sweep plan, so `bench sweep` can measure them on any device.

ChamNet's LUT holds every operator a space's architectures can contain (§3.3).  The main job sweeps
them on this CPU itself; for another device (a phone over ADB), this writes the same operators as
a plan file of explicit signatures for ``bench sweep --plan``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli.common import emit_json, stdout


def space_plan(
    space_name: str = typer.Option("chamnet-mobile-mini", "--space", help="The search space whose operators to list."),
    out: Path = typer.Option(..., "--out", "-o", help="The plan file to write (.yaml)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Write every operator of a search space as a sweep plan (explicit signatures) for `bench sweep --plan`."""
    from harness.atomic import write_text_atomically
    from harness.errors import OutputNotWritable
    from harness.signature import IDENTITY
    from optimizer.spaces import get_space

    space = get_space(space_name)
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise OutputNotWritable(f"--out {out}: a plan is a .yaml file")
    if out.is_dir():
        raise OutputNotWritable(f"--out {out}: is a folder; give a file name such as {out / (space.name + '.yaml')}")
    signatures = [s for s in space.all_signatures() if s.kind != IDENTITY]  # every sweep measures identity itself
    lines = [f"# Every operator of the {space.name} search space, written by", f"#   optimize space-plan --space {space.name} --out {out.name}",
             "# (the LUT a search over this space needs on any device: bench sweep --plan THIS_FILE --device ...).",
             f"name: {out.stem}", f"description: every operator of the {space.name} search space ({len(signatures)} signatures)",
             "signatures:"] + [f'  - "{s.key}"' for s in signatures]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as problem:
        raise OutputNotWritable(f"--out {out}: cannot create its folder ({problem.strerror or problem})") from None
    write_text_atomically(out, "\n".join(lines) + "\n")
    if as_json:
        emit_json({"space": space.name, "plan": str(out), "signatures": len(signatures)})
    else:
        stdout.print(f"{out}: {len(signatures)} operators of {space.name}; measure them with bench sweep --plan {out} --device DEVICE")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``optimize`` app."""
    app.command("space-plan")(space_plan)
