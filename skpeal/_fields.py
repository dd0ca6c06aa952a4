"""Typed configs as command lines: dataclass fields that carry their option's help and check.

A config (``ExperimentConfig`` of ``skpeal run``, ``LabelConfig`` of ``skpeal label``) is a
dataclass whose fields are made with :func:`option`: the default lives in the field, the
help text and the argparse keywords in its metadata, and so does the check of its value.
:func:`add_options` builds the argparse options of a sub-command from the fields, and
:func:`from_args` builds the config back from the parsed arguments, so an option is one
field and no default is written twice.
"""

from __future__ import annotations

import argparse
import dataclasses

__all__ = ["LiveNames", "add_options", "check_fields", "from_args", "option"]


def option(help, default=dataclasses.MISSING, *, default_factory=dataclasses.MISSING,
           check=None, fallback=None, positional=False, **cli):
    """A dataclass field that is also a command-line option.

    Parameters
    ----------
    help : str or callable
        The option's help text (a callable: called when the option is added to a parser,
        e.g. to list what a registry holds then).
    default : object, optional
        The field's default (shown in the help).
    default_factory : callable, optional
        For a mutable default.
    check : callable or None, default=None
        ``check(name, value) -> value`` run by :func:`check_fields` when the value is not
        None (``name`` is the option's flag on the command line, else the field's name).
    fallback : str or None, default=None
        For a field whose None means "decided elsewhere": what then applies, shown in the
        help as ``(default: <fallback>)``.
    positional : bool, default=False
        A positional argument (required) instead of a ``--flag``.
    **cli
        argparse keywords (``type``, ``choices``, ``nargs``, ``metavar``, ``required``).

    Returns
    -------
    field : dataclasses.Field
        With the help, the check and the argparse keywords in its metadata.
    """
    meta = {"help": help, "cli": cli, "check": check, "fallback": fallback,
            "positional": positional}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class LiveNames:
    """The names of a registry, read when an option is parsed or its help is shown.

    Given as argparse ``choices`` (with ``%(choices)s`` in the help), it lists what is
    registered when the command line is read, not when the module was imported, so a
    name registered later (a plug-in, user code) is offered; and the registry's module
    is imported only then (the strategies import torch).

    Parameters
    ----------
    names : callable
        ``names() -> iterable of str``, the registry's current names.
    """

    def __init__(self, names):
        self._names = names

    def __contains__(self, name):
        return name in set(self._names())

    def __iter__(self):
        return iter(sorted(self._names()))

    def __repr__(self):
        return f"LiveNames({sorted(self._names())})"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _options(cls):
    return [f for f in dataclasses.fields(cls) if "cli" in f.metadata]


def add_options(parser: argparse.ArgumentParser, cls) -> None:
    """Add one argparse option per :func:`option` field of the dataclass ``cls``.

    The option's default is the field's (a list default is shown joined by spaces; a
    bool field is a ``store_true`` flag); a required or positional field has none.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The (sub-)command's parser.
    cls : type
        A dataclass whose fields were made with :func:`option`.
    """
    for f in _options(cls):
        meta = f.metadata
        cli = dict(meta["cli"])
        text = meta["help"]() if callable(meta["help"]) else meta["help"]
        default = (f.default_factory() if f.default is dataclasses.MISSING
                   and f.default_factory is not dataclasses.MISSING else f.default)
        if meta.get("positional"):
            parser.add_argument(f.name, help=text, **cli)
            continue
        if isinstance(default, bool):
            parser.add_argument(_flag(f.name), action="store_true", help=text)
            continue
        required = cli.pop("required", False)
        if meta.get("fallback") is not None:
            shown = meta["fallback"]
        else:
            shown = " ".join(map(str, default)) if isinstance(default, list) else default
        help = text + ("" if required else f" (default: {shown})")
        parser.add_argument(_flag(f.name), default=None if required else default,
                            required=required, help=help, **cli)


def from_args(cls, args, **extra):
    """The config ``cls`` from parsed arguments (its option fields) and ``extra`` fields.

    Parameters
    ----------
    cls : type
        The dataclass given to :func:`add_options`.
    args : argparse.Namespace
        The parsed arguments.
    **extra
        Values of other fields (or overrides).

    Returns
    -------
    config : cls
        Built from the arguments; not yet checked (see :func:`check_fields`).
    """
    values = {f.name: getattr(args, f.name) for f in _options(cls)}
    return cls(**{**values, **extra})


def check_fields(config, *, flags=False):
    """Run each field's check on its value (None is left to the field's fallback).

    Parameters
    ----------
    config : dataclass instance
        A config whose fields were made with :func:`option`.
    flags : bool, default=False
        Name a bad value by its command-line flag (``--batch-size``) instead of its
        field's name (``batch_size``).

    Returns
    -------
    values : dict
        ``{field: checked value}`` (normalised by the checks).

    Raises
    ------
    ValueError
        From the first check that fails, naming the option.
    """
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        check = f.metadata.get("check")
        if check is not None and value is not None:
            positional = f.metadata.get("positional")
            value = check(_flag(f.name) if flags and not positional else f.name, value)
        out[f.name] = value
    return out
