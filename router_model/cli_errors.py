"""How a command ends on bad input: one line naming the command and the problem, exit 1.

A traceback is for a bug, not for a missing folder or an out-of-range setting; set
HYDRA_FULL_ERROR=1 to see it anyway.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

USER_ERRORS = (ValueError, KeyError, OSError)  # settings, data, files, connections


@contextmanager
def user_errors(command: str) -> Iterator[None]:
    try:
        yield
    except USER_ERRORS as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        sys.exit(f"{command}: {str(exc)[:2000]}")
