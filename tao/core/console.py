"""What the user sees while a command runs: messages and progress bars on stderr, results on stdout."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


class Console:
    """``quiet`` silences messages and progress bars; results (``result``) are always printed."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    def say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        """Printed even when quiet: something the user must look at."""
        print(f"tao: warning: {message}", file=sys.stderr, flush=True)

    def result(self, message: str) -> None:
        print(message, flush=True)

    def bar(self, total: int, desc: str, unit: str = "it") -> Any:
        return tqdm(total=total, desc=desc, unit=unit, disable=self.quiet, leave=False, file=sys.stderr)
