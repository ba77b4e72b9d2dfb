"""The project's one error type for bad input.

Anything a user can get wrong (a flag value, a combination of flags, a missing, corrupted or mismatched file)
raises :class:`WarmRouteError` with a one-line message that names the flag or file and the fix; ``warmroute``
prints exactly that line and exits with status 2. Every other exception is a bug and keeps its traceback.
It lives in ``envs`` (the bottom layer, no Ray or torch) so that every layer can raise it.
"""

from __future__ import annotations


class WarmRouteError(ValueError):
    """Bad input: the message is one line naming the flag or file and how to fix it (a ``ValueError`` too)."""
