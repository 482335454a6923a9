"""What every Chameleon command line shares: JSON output and the one-line error contract."""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer

from harness.console import stderr, stdout
from harness.errors import ChameleonError
from harness.json_documents import strict_json

__all__ = ["emit_json", "run_app", "run_command_line", "sigterm_as_ctrl_c", "stderr", "stdout"]

#: Exit code of a bug (an exception nobody expected); 2 is the user's problem, 130 an interrupt.
BUG_EXIT_CODE = 1
#: Set to 1 to see the traceback of a bug instead of its one-line summary.
DEBUG_VARIABLE = "CHAMELEON_DEBUG"


_json_documents_emitted = 0


def _flags_without_a_type() -> None:
    """Typer 0.29 prints ``<bool>`` after every flag in help (``--json <bool>``, its own ``--help <bool>``),
    which reads as if the flag took a value; a flag's help shows no type here."""
    from typer import core

    if getattr(core.TyperOption, "_chameleon_flags_untyped", False):
        return
    shown = core.TyperOption.display_type_rich

    def display_type_rich(self, ctx):
        return None if self.is_flag else shown(self, ctx)

    core.TyperOption.display_type_rich = display_type_rich
    core.TyperOption._chameleon_flags_untyped = True


_flags_without_a_type()


def emit_json(document: Any) -> None:
    """Print exactly one strict JSON document on stdout (for --json): a NaN or infinity becomes null."""
    global _json_documents_emitted
    sys.stdout.write(json.dumps(strict_json(document), indent=2, default=str, allow_nan=False) + "\n")
    sys.stdout.flush()
    _json_documents_emitted += 1


def run_app(app: typer.Typer, prog_name: str) -> None:
    """Run a Typer app as the program ``prog_name``: :func:`run_command_line` on ``sys.argv``, then exit with its code."""
    sys.exit(run_command_line(app, sys.argv[1:], prog_name))


# Options whose value may be left out, and what they then mean: `bench sweep --farm` (a Ray instance on this
# machine) as `--farm ADDRESS`; `optimize ... --cluster` alike.  The CLI library wants a value after an option
# that takes one, so a bare one is given its default here.
OPTIONAL_VALUES = {"--farm": "local", "--cluster": "local"}


def with_optional_values(args: Sequence[str]) -> list[str]:
    """``args`` with the value of a bare optional-value option (at the end, or before another option) filled in."""
    filled: list[str] = []
    for i, arg in enumerate(args):
        filled.append(arg)
        if arg in OPTIONAL_VALUES and (i + 1 == len(args) or args[i + 1].startswith("-")):
            filled.append(OPTIONAL_VALUES[arg])
    return filled


def run_command_line(app: typer.Typer, args: Sequence[str], prog_name: str) -> int:
    """Run one command line of ``app`` and return its exit code; every failure is one line on stderr.

    * a :class:`ChameleonError` (the user's input or environment): ``error: ...``, exit 2;
    * a usage error of the command line (unknown option, a value out of range): ``error: ...``,
      exit 2, instead of the CLI library's usage box;
    * an operating-system refusal (permission denied, no space left, a folder where a file was
      expected): ``error: PATH: cannot ... (reason)``, exit 2;
    * Ctrl-C or SIGTERM: exit 130;
    * anything else is a bug: one line saying so, exit 1 (``CHAMELEON_DEBUG=1`` re-raises it
      with its traceback).

    With ``--json`` on the line, a failure that printed no document prints one, ``{"error": ...,
    "exit_code": ...}``, so that a script reading stdout always reads JSON.
    """
    emitted_before = _json_documents_emitted
    args = with_optional_values(args)
    wants_json = "--json" in args and "--help" not in args
    try:
        result = app(args=list(args), prog_name=prog_name, standalone_mode=False)
        code = result if isinstance(result, int) else 0
        message = None
    except ChameleonError as problem:
        code, message = problem.exit_code, str(problem)
    except typer.TyperException as problem:
        code, message = _usage_problem(problem)
    except (KeyboardInterrupt, typer.Abort):
        code, message = 130, None
    except OSError as problem:
        if problem.errno == errno.EPIPE:  # stdout closed early (`| head`): not worth a word
            return 1
        code, message = 2, _os_problem(problem)
    except Exception as bug:  # noqa: BLE001 -- the last net, so that no user ever reads a traceback
        if os.environ.get(DEBUG_VARIABLE) == "1":
            raise
        code, message = BUG_EXIT_CODE, (f"internal error: {type(bug).__name__}: {bug} (a bug in Chameleon; "
                                        f"{DEBUG_VARIABLE}=1 shows its traceback)")
    if message is not None:
        message = " ".join(str(message).split())
        stderr.print(f"error: {message}", markup=False, soft_wrap=True, highlight=False)
    if wants_json and code != 0 and _json_documents_emitted == emitted_before:
        emit_json({"error": message or ("interrupted" if code == 130 else "failed"), "exit_code": code})
    return code


def _usage_problem(problem: typer.TyperException) -> tuple[int, str | None]:
    """A usage error of the CLI library as (exit code, one line): the command, what is wrong, where help is."""
    ctx = getattr(problem, "ctx", None)
    if type(problem).__name__ == "NoArgsIsHelpError" and ctx is not None:
        stdout.print(ctx.get_help(), markup=False, highlight=False)  # a bare `bench`: its help, as before
        return 2, None
    message = problem.format_message() if hasattr(problem, "format_message") else str(problem)
    if ctx is not None:
        message = f"{ctx.command_path}: {message} (see '{ctx.command_path} --help')"
    return getattr(problem, "exit_code", 2) or 2, message


def _os_problem(problem: OSError) -> str:
    """``PATH: cannot use it (Permission denied)``: the path and the system's reason, no traceback."""
    reason = problem.strerror or str(problem)
    if problem.filename is None:
        return f"operating system refused: {reason}"
    target = problem.filename if problem.filename2 is None else f"{problem.filename} -> {problem.filename2}"
    return f"{target}: {reason}"


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextmanager
def sigterm_as_ctrl_c(interrupted: str | None = None) -> Iterator[None]:
    """SIGTERM stops the block the way Ctrl-C does (a KeyboardInterrupt), so what finished is kept either way.

    With ``interrupted``, an interrupt prints that line on stderr and exits
    130; without, the KeyboardInterrupt goes on to the caller (a sweep
    catches it itself and reports what it kept).
    """
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        yield
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        stderr.print(interrupted, soft_wrap=True)
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
