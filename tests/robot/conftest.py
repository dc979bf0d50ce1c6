"""Fixtures of the control-loop tests: a tiny random bundle's torch engine and a PolicyServer on it."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from lara_g1.lara.bundle import create_random_bundle
    from lara_g1.runtime.engines import load_engine

    path = create_random_bundle(tmp_path_factory.mktemp("bundle") / "tiny", preset="tiny", seed=0)
    eng = load_engine(path, "torch")
    yield eng
    eng.close()


@pytest.fixture
def server(engine):
    from lara_g1.runtime.server import PolicyServer

    srv = PolicyServer(engine, bind="tcp://127.0.0.1:*", seed=0).start()
    yield srv
    srv.stop()
