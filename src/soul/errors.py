"""Error types that decide how the CLI exits.

Bad input (a file the user named is missing, malformed or out of range) must be told apart from a
failure of ours, because the CLI answers the first with exit code 2 and a one-line fix, and the
second with exit code 1.
"""

from __future__ import annotations

from pathlib import Path


class SoulError(Exception):
    """Base class: a failure Soul can explain in one line."""

    exit_code = 1


class InputError(SoulError):
    """A user-supplied input is unusable; the message names the input and the fix."""

    exit_code = 2

    def __init__(self, subject: str | Path, problem: str, fix: str | None = None) -> None:
        self.subject = str(subject)
        self.problem = problem
        self.fix = fix
        text = f"{self.subject}: {problem}"
        if fix:
            text += f" ({fix})"
        super().__init__(text)


class RuntimeFailure(SoulError):
    """Soul itself could not finish (a model, a device, a disk); exit code 1."""

    exit_code = 1


class SoulWarning(UserWarning):
    """Output will be produced but is not what a user may think: the CLI prints it as one line."""
