"""One exception base: every error class lara-g1 defines derives from LaraError, and keeps the
builtin base its callers catch (ValueError for config and input, RuntimeError for states)."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from lara_g1.core.errors import ConfigError, LaraError

LAYERS = ("core", "lara", "policy_export", "runtime", "robot", "teleop", "apps")


def project_modules():
    """Every importable module of the package (those needing an absent optional extra, such as
    TensorRT, are skipped: they cannot be imported here, so neither can their errors be raised)."""
    mods = []
    for layer in LAYERS:
        pkg = importlib.import_module(f"lara_g1.{layer}")
        mods.append(pkg)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"lara_g1.{layer}."):
            try:
                mods.append(importlib.import_module(info.name))
            except ImportError:
                continue
    return mods


def project_exceptions():
    found = {}
    for mod in project_modules():
        for _, obj in inspect.getmembers(mod, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.startswith("lara_g1."):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_every_project_exception_derives_from_lara_error():
    errors = project_exceptions()
    assert len(errors) >= 40, sorted(errors)          # the walk really found the project's errors
    outside = sorted(name for name, cls in errors.items() if not issubclass(cls, LaraError))
    assert not outside, f"not under LaraError: {outside}"


@pytest.mark.parametrize("module, name, builtin", [
    ("lara_g1.core.embodiment", "EmbodimentError", ValueError),
    ("lara_g1.core.extras", "MissingExtraError", ImportError),
    ("lara_g1.lara.manifest", "ManifestError", ValueError),
    ("lara_g1.runtime.protocol", "ProtocolError", LaraError),
    ("lara_g1.runtime.client", "ServerError", RuntimeError),
    ("lara_g1.runtime.client", "ServerTimeout", TimeoutError),
    ("lara_g1.runtime.engines.base", "EngineError", RuntimeError),
    ("lara_g1.robot.control", "ControlError", RuntimeError),
    ("lara_g1.robot.safety", "SafetyConfigError", ValueError),
    ("lara_g1.robot.safety", "SafetyStateError", RuntimeError),
    ("lara_g1.teleop.session", "SessionError", RuntimeError),
])
def test_errors_keep_their_builtin_base(module, name, builtin):
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, LaraError) and issubclass(cls, builtin)


def test_config_errors_are_one_class():
    from lara_g1.lara.model.config import ConfigError as PolicyConfigError
    from lara_g1.robot.g1 import G1ConfigError
    from lara_g1.robot.safety import SafetyConfigError

    assert PolicyConfigError is ConfigError
    for cls in (G1ConfigError, SafetyConfigError):
        assert issubclass(cls, ConfigError)


def test_a_runtime_safety_state_is_no_config_error():
    from lara_g1.robot.safety import SafetyError, SafetyStateError

    assert issubclass(SafetyStateError, SafetyError)
    assert not issubclass(SafetyStateError, ValueError)


def test_lara_error_catches_a_raised_project_error():
    from lara_g1.runtime import protocol as P

    with pytest.raises(LaraError):
        P.unpack(b"\xc1", max_bytes=1024)          # 0xc1 is never valid msgpack
