"""The project's one error type for bad input.

Anything a user can get wrong (a setting, a combination of settings, a missing, corrupted or mismatched file)
raises :class:`WarmRouteError` with a one-line message that names the setting or file and the fix; ``warmroute``
prints exactly that line and exits with status 2. Every other exception is a bug and keeps its traceback.

The library names settings by their config field, not by a CLI flag: the message spells the field as ``{flag}``
(the error's ``field``) or ``{flag:other_field}``. ``str(error)`` shows the field names (``qps must be > 0``), which is
what a caller of the Python API typed; the CLI renders the same error with its flags (``--qps must be > 0``) through
:meth:`WarmRouteError.render`. It lives in ``envs`` (the bottom layer) and imports nothing heavy, so that every
layer can raise it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_FIELD = re.compile(r"\{flag:(\w+)\}")


class WarmRouteError(ValueError):
    """Bad input: the message is one line naming the setting or file and how to fix it (a ``ValueError`` too)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        # The message with every setting spelt {flag:field}: embed it, not str(), in a wrapping error.
        self.template = message.replace("{flag}", f"{{flag:{field}}}") if field else message
        first = _FIELD.search(self.template)
        self.field = field or (first.group(1) if first else None)  # the (first) setting it is about, if any
        super().__init__(self.render())

    def render(self, spell: Callable[[str], str] = str) -> str:
        """The message with each ``{flag:field}`` spelt by ``spell`` (default: the field name; the CLI: its flag)."""
        return _FIELD.sub(lambda match: spell(match.group(1)), self.template)

    def __reduce__(self) -> tuple[type, tuple[str]]:
        """Pickled with its template (Ray sends errors between processes), so the CLI can still spell the flags."""
        return type(self), (self.template,)
