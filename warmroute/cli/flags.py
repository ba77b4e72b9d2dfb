"""One way to define a ``warmroute`` flag, so every subcommand follows the same rules.

Rules (also in docs/cli.md):

* A flag is ``--kebab-case``; a multi-word flag also accepts its ``--snake_case`` spelling (the seed's), so
  ``--num-requests`` and ``--num_requests`` are the same flag on every subcommand.
* A flag that sets a config field is named after the field (``lambda_`` -> ``--lambda``) unless a ``name`` is
  given, stores into the field's name, takes its type from the field's annotation and its help from the field's
  docstring. Its default is *shown* in ``--help`` but never filled in: the parser leaves untyped flags out of the
  namespace (``argparse.SUPPRESS``), the config dataclass supplies its own default, and :func:`given` returns only
  what the user typed. Defaults are therefore defined once, in the dataclasses.
* Every flag has help text; a flag with a fixed set of values has ``choices``.
* A parse error is one line (``warmroute <command>: error: ...``) and exit status 2, like every other bad input.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import textwrap
from collections.abc import Callable, Iterable
from typing import Any, NoReturn


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line naming the flag (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


class HelpFormatter(argparse.HelpFormatter):
    """``--num-requests, --num_requests N``: both spellings once, then the metavar."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        return f"{', '.join(action.option_strings)} {self._format_args(action, self._get_default_metavar_for_optional(action))}"


def comma_list(text: str) -> tuple[str, ...]:
    """argparse type for ``a,b,c``."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def widths(text: str) -> tuple[int, ...]:
    """argparse type for ``--hidden 64,64`` (argparse turns the error into a one-line usage error)."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 64,64 (got '{text}')") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"widths must be positive (got '{text}')")
    return values


# Field annotation (a string under ``from __future__ import annotations``) -> argparse type; bools are switches.
_TYPES: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "str": str,
    "int | None": int,
    "float | None": float,
    "str | None": str,
    "tuple[int, ...]": widths,
    "tuple[str, ...]": comma_list,
}


def flag_name(field: str) -> str:
    """``num_env_runners`` -> ``--num-env-runners``; a trailing underscore (``lambda_``) is dropped."""
    return "--" + field.rstrip("_").replace("_", "-")


def _spellings(name: str) -> list[str]:
    return [name, "--" + name[2:].replace("-", "_")] if "-" in name[2:] else [name]


_FLAG_OF: dict[str, str] = {}  # namespace attribute -> the flag that sets it, for error messages


def add_flag(
    parser: argparse._ActionsContainer, name: str, help: str, *, shown_default: Any = None, **kwargs: Any
) -> argparse.Action:
    """Add ``name`` (``--kebab-case``) with its ``--snake_case`` alias; the namespace gets it only when typed.

    ``shown_default`` is appended to the help (it is never filled in); other keywords go to ``add_argument``.
    """
    if not help:
        raise TypeError(f"{name}: every flag needs help text")
    if "choices" in kwargs:  # listed in the help, not in the usage line
        kwargs.setdefault("metavar", name[2:].replace("-", "_").upper())
        help = f"{help} (choices: {', '.join(map(str, kwargs['choices']))})"
    if shown_default is not None and shown_default != () and kwargs.get("action") != "store_true":
        shown = ",".join(map(str, shown_default)) if isinstance(shown_default, tuple) else shown_default
        help = f"{help} (default: {shown})"
    action = parser.add_argument(*_spellings(name), help=help.replace("%", "%%"), default=argparse.SUPPRESS, **kwargs)
    _FLAG_OF[action.dest] = name
    return action


def flag_of(dest: str) -> str:
    """The flag that sets namespace attribute ``dest``."""
    return _FLAG_OF.get(dest, flag_name(dest))


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Each dataclass field's docstring (the string literal under it), whitespace-collapsed, without RST markup."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.replace("``", "").split())
    return docs


def default_of(cls: type, name: str) -> Any:
    """The default of field ``name`` of dataclass ``cls`` (None if it has none)."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def add_config_flags(
    parser: argparse._ActionsContainer,
    config: type | object,
    names: Iterable[str],
    *,
    flags: dict[str, str] | None = None,
    choices: dict[str, Iterable[str]] | None = None,
    help: dict[str, str] | None = None,
    required: Iterable[str] = (),
) -> None:
    """One flag per field in ``names`` of the dataclass ``config`` (a class, or an instance whose values are the
    defaults shown). ``flags`` renames, ``choices`` restricts, ``help`` replaces a field's docstring."""
    cls = config if isinstance(config, type) else type(config)
    base = None if isinstance(config, type) else config
    fields = {f.name: f for f in dataclasses.fields(cls)}
    flags, choices, help, required = flags or {}, choices or {}, help or {}, set(required)
    for name in names:
        field = fields[name]
        text = help.get(name) or field_docs(cls).get(name, "")
        kwargs: dict[str, Any] = {"dest": name}
        if field.type == "bool":
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = _TYPES[str(field.type)]
            kwargs["metavar"] = name.rstrip("_").upper()
        if name in choices:
            kwargs["choices"] = tuple(choices[name])
        if name in required:
            kwargs["required"] = True
        add_flag(
            parser,
            flags.get(name, flag_name(name)),
            text,
            shown_default=None if name in required else getattr(base, name) if base else default_of(cls, name),
            **kwargs,
        )


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of dataclass ``cls`` the user typed (keyword arguments for ``cls``)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
