"""The two rich consoles every Chameleon program writes to: results on stdout, progress and messages on stderr.

One pair for the whole process, so a library's progress bar (a training, a
sweep) and a command's messages share one live display.  Imports rich only.
"""

from __future__ import annotations

from rich.console import Console

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)
