"""The project's YAML configuration files, and the one way to load and validate them.

Bundled files ship as package data under ``lara_g1.configs``: ``config_path("embodiment/g1.yaml")``
gives the path of one. Each kind of file has a schema, a :class:`ConfigModel` made a pydantic
dataclass by :func:`config_dataclass`, that lives next to the code using it (e.g.
:class:`lara_g1.robot.control.ControlConfig`); :func:`load_config` finds a file by bundled name or
by path (:func:`find_config`, the one path rule), reads it and validates it against the schema.

Every failure (no such file, bad YAML, a bad value) raises the schema's ``config_error``, a
:class:`~lara_g1.core.errors.ConfigError` (a module's own subclass, e.g. ``SafetyConfigError``, so
code that catches that keeps working) whose message names the file and the field::

    .../configs/control/default.yaml: safety.ramp_in_s: must be >= 1.0, got 0.2
"""
from __future__ import annotations

import dataclasses
import functools
import reprlib
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pydantic.dataclasses
import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError

from lara_g1.core.errors import ConfigError

M = TypeVar("M", bound="ConfigModel")

YAML_SUFFIXES = (".yaml", ".yml")


def config_path(relative: str) -> Path:
    """Path of a bundled config file, e.g. ``config_path("embodiment/g1.yaml")``."""
    path = Path(str(resources.files("lara_g1.configs").joinpath(relative)))
    if not path.is_file():
        raise FileNotFoundError(f"no bundled config {relative!r} (looked in {path.parent})")
    return path


def config_dataclass(cls: type | None = None, *, frozen: bool = True, extra: str = "forbid") -> Any:
    """Make ``cls`` (a :class:`ConfigModel`) a config schema: a pydantic dataclass, built by keyword
    only, that rejects unknown keys and non-finite numbers.

    Dataclasses rather than pydantic models because callers and tests use ``dataclasses.replace``,
    ``asdict`` and ``fields`` on configs; every construction, ``dataclasses.replace`` included,
    validates. ``frozen=False`` only for configs that code completes in place (a policy's backbone
    config, a LAM's encoder config); ``extra="allow"`` only where another component checks the
    rest of the keys (a camera's settings).
    """
    config = ConfigDict(extra=extra, allow_inf_nan=False)

    def wrap(c: type) -> type:
        return pydantic.dataclasses.dataclass(c, frozen=frozen, kw_only=True, config=config)

    return wrap if cls is None else wrap(cls)


class ConfigModel:
    """Base of every config schema (each also decorated with :func:`config_dataclass`).

    :meth:`from_dict`, :meth:`replace` and :func:`load_config` raise :attr:`config_error`;
    constructing a config directly raises pydantic's ``ValidationError`` (also a ``ValueError``).
    """

    #: The error a bad config of this kind raises.
    config_error: ClassVar[type[ConfigError]] = ConfigError

    @classmethod
    def from_dict(cls: type[M], raw: Any, source: str | None = None) -> M:
        """Validate parsed values; ``source`` (default: the class name) leads any error message."""
        return validate_config(cls, raw, source or cls.__name__)

    def replace(self: M, **changes: Any) -> M:
        """A validated copy with some fields changed."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return validate_config(type(self), {**values, **changes},
                               f"{type(self).__name__} with {sorted(changes)} changed")


def validate_config(schema: Any, raw: Any, source: str, *, at: tuple[str, ...] = (),
                    error: type[ConfigError] | None = None) -> Any:
    """``raw`` validated as ``schema`` (a config dataclass, or a type built of them such as
    ``dict[str, Task]``). A failure raises ``error`` (default: ``schema.config_error``) naming
    ``source`` and each bad field's path, under ``at`` where ``raw`` is a section of a file."""
    try:
        return _adapter(schema).validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(err, at) for err in exc.errors(include_url=False))
        raise (error or schema.config_error)(f"{source}: {problems}") from None


@functools.lru_cache(maxsize=None)
def _adapter(schema: Any) -> TypeAdapter:
    return TypeAdapter(schema)


def find_config(name_or_path: str | Path, *, bundled: str | None, kind: str,
                error: type[ConfigError] = ConfigError) -> Path:
    """The one path rule: a name ending in ``.yaml``/``.yml`` is a file path; anything else names
    a bundled file, ``bundled`` with ``{name}`` filled in (e.g. ``"control/{name}.yaml"``).

    Without a ``bundled`` pattern every name is a path. ``kind`` words the errors
    (``no control config named 'x'``), which raise ``error``.
    """
    path = Path(name_or_path)
    if bundled is None or path.suffix in YAML_SUFFIXES:
        if not path.is_file():
            raise error(f"{path}: no such {kind} file")
        return path
    relative = bundled.format(name=name_or_path)
    try:
        return config_path(relative)
    except FileNotFoundError:
        raise error(f"no {kind} named {str(name_or_path)!r} (configs/{relative}); bundled: "
                    f"{', '.join(_bundled_names(bundled)) or 'none'}; or give a .yaml path") from None


def load_config(schema: Any, name_or_path: str | Path, *, bundled: str | None = None, kind: str,
                section: str | None = None, error: type[ConfigError] | None = None) -> Any:
    """Load one YAML config file (see :func:`find_config`) and validate it as ``schema`` (see
    :func:`validate_config`); ``section``: validate only that top-level section of the file."""
    error = error or schema.config_error
    path = find_config(name_or_path, bundled=bundled, kind=kind, error=error)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise error(f"{path}: cannot read YAML: {exc}") from None
    if section is None:
        return validate_config(schema, raw, str(path), error=error)
    if not isinstance(raw, dict) or section not in raw:
        raise error(f"{path}: no {section!r} section")
    return validate_config(schema, raw[section], str(path), at=(section,), error=error)


def _bundled_names(bundled: str) -> list[str]:
    """The names that fill ``bundled``'s ``{name}`` with an existing bundled file."""
    folder, _, pattern = bundled.rpartition("/")
    prefix, suffix = pattern.split("{name}")
    files = resources.files("lara_g1.configs").joinpath(folder).iterdir()
    return sorted(f.name[len(prefix):len(f.name) - len(suffix)] for f in files
                  if f.name.startswith(prefix) and f.name.endswith(suffix))


# pydantic's error types, worded for a config file's reader; "got <value>" follows.
_BOUNDS = {"greater_than": "must be > {gt}", "greater_than_equal": "must be >= {ge}",
           "less_than": "must be < {lt}", "less_than_equal": "must be <= {le}"}


def _describe(err: dict[str, Any], at: tuple[str, ...]) -> str:
    """``field.path[3].name: what is wrong`` for one pydantic error."""
    where = ""
    for part in (*at, *err["loc"]):
        where += f"[{part}]" if isinstance(part, int) else f".{part}" if where else str(part)
    kind, ctx, got = err["type"], err.get("ctx", {}), reprlib.repr(err.get("input"))
    if kind in ("value_error", "assertion_error"):
        what = str(ctx["error"])
    elif kind == "missing":
        what = "missing"
    elif kind in ("extra_forbidden", "unexpected_keyword_argument"):
        what = "unknown key"
    elif kind in ("dataclass_type", "dataclass_args_type", "dict_type"):
        what = f"expected a mapping, got {type(err.get('input')).__name__}"
    elif kind in _BOUNDS:
        what = f"{_BOUNDS[kind].format(**ctx)}, got {got}"
    else:
        what = f"{err['msg'][0].lower()}{err['msg'][1:]}, got {got}"
    return f"{where}: {what}" if where else what
