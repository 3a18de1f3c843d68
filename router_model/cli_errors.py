"""How a command ends on bad input: one line naming the command and the problem, exit 1.

A traceback is for a bug, not for a missing folder, an out-of-range setting or a file held
by another process; set HYDRA_FULL_ERROR=1 to see it anyway. Every console script wraps its
work in `user_errors`; exit codes: 0 done, 1 a user error (this line), 2 a refusal the
command documents (router-promote), anything else a bug.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class UserError(Exception):
    """A problem the user fixes (a busy file, a missing model), not a bug: base for errors
    that are neither a ValueError nor an OSError."""


# settings, data, files, connections, and the project's own user errors
USER_ERRORS = (ValueError, KeyError, OSError, UserError)


@contextmanager
def user_errors(command: str) -> Iterator[None]:
    try:
        yield
    except USER_ERRORS as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        sys.exit(f"{command}: {str(exc)[:2000]}")
