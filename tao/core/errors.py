"""The errors a user sees as one line, never as a traceback: bad input (exit 2), too little memory (exit 1)."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input from the user (a file, a flag, a config key).

    The CLI prints it as one line, ``tao: FILE:LINE: FIELD: problem``, and exits with code 2,
    before anything is written.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ):
        self.problem = problem
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file or ""
        if self.line is not None:
            where += f":{self.line}"
        parts = [p for p in (where, self.field) if p]
        return ": ".join([*parts, self.problem])


class ResourceError(Exception):
    """The machine ran out of something (accelerator memory), or a service it relies on (the vLLM server of
    ``rollout.engine=vllm-server``) is not there or refuses: one line saying what to change; exit 1."""
