"""``lara-serve --engine ort`` as a real subprocess: a client written only from docs/PROTOCOL.md
(raw zmq + msgpack + numpy; nothing imported from runtime), the dashboard, and SIGTERM.

The tests share one server process and run in file order; the last one stops it.
"""
from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading

import httpx
import msgpack
import numpy as np
import pytest
import zmq

pytestmark = pytest.mark.timeout(180)


def _lara_serve() -> list[str]:
    script = shutil.which("lara-serve")
    return [script] if script else [sys.executable, "-m", "lara_g1.runtime.cli"]


@pytest.fixture(scope="module")
def ort_bundle(tmp_path_factory):
    from lara_g1.lara.bundle import create_random_bundle
    from lara_g1.policy_export.cli import main as lara_export

    path = tmp_path_factory.mktemp("serve-cli") / "bundle"
    create_random_bundle(path, preset="tiny", seed=1)
    assert lara_export([str(path), "--onnx", "--seed", "0"]) == 0
    return path


@pytest.fixture(scope="module")
def lara_serve(ort_bundle):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(_lara_serve() + ["--policy", str(ort_bundle), "--engine", "ort",
                                             "--bind", "tcp://127.0.0.1:*", "--dashboard", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue = queue.Queue()

    def pump():
        for ln in proc.stdout:
            lines.put(ln)
        lines.put(None)  # end of output

    threading.Thread(target=pump, daemon=True).start()
    seen, zmq_addr, dash_url = [], None, None
    while zmq_addr is None or dash_url is None:
        try:
            line = lines.get(timeout=90)
        except queue.Empty:
            proc.kill()
            pytest.fail("lara-serve did not start:\n" + "".join(seen))
        seen.append(line)
        if " on tcp://" in line:
            zmq_addr = line.rsplit(" on ", 1)[1].strip()
        elif "dashboard on " in line:
            dash_url = line.rsplit(" on ", 1)[1].strip()
        assert proc.poll() is None, "lara-serve exited:\n" + "".join(seen)
    yield {"proc": proc, "zmq": zmq_addr, "dashboard": dash_url, "lines": lines}
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


class DocsClient:
    """Section 8 of docs/PROTOCOL.md, as a client author would write it."""

    def __init__(self, address):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.REQ)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(address)
        self.rid = 0

    @staticmethod
    def nd(a):
        a = np.ascontiguousarray(a)
        return {"__nd__": True, "dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}

    @staticmethod
    def from_nd(m):
        return np.frombuffer(m["data"], dtype=m["dtype"]).reshape(m["shape"])

    def call(self, endpoint, data=None):
        self.rid += 1
        self.sock.send(msgpack.packb({"v": 1, "id": self.rid, "endpoint": endpoint, "data": data or {}},
                                     use_bin_type=True))
        assert self.sock.poll(30000), f"no reply to {endpoint}"
        reply = msgpack.unpackb(self.sock.recv(), raw=False)
        assert reply["v"] == 1 and reply["id"] == self.rid
        return reply

    def close(self):
        self.sock.close(0)
        self.ctx.term()


def test_client_written_from_the_docs_gets_a_chunk(lara_serve):
    c = DocsClient(lara_serve["zmq"])
    try:
        meta = c.call("metadata")
        assert meta["ok"], meta
        meta = meta["result"]
        assert meta["engine"] == "ort" and meta["protocol_version"] == 1 and meta["state_dim"] == 28
        cam = next(iter(meta["cameras"]))
        state = np.zeros(meta["state_dim"], dtype="<f4")
        frame = np.zeros((480, 640, 3), dtype=np.uint8)
        frame[100:300, 200:400] = (200, 40, 40)
        data = {"state": c.nd(state), "images": {cam: c.nd(frame)}, "instruction": "pick up the cup",
                "noise_seed": 7, "deadline_ms": 20000}
        reply = c.call("infer", data)
        assert reply["ok"], reply
        actions = c.from_nd(reply["result"]["actions"])
        assert actions.dtype == np.float32 and actions.shape == (meta["action_horizon"], meta["action_dim"])
        assert np.all(np.isfinite(actions))
        again = c.from_nd(c.call("infer", data)["result"]["actions"])
        np.testing.assert_array_equal(actions, again)  # same seed, same chunk

        state[4] = np.nan
        err = c.call("infer", dict(data, state=c.nd(state)))
        assert err["ok"] is False and err["error"]["code"] == "bad_request" and "[4]" in err["error"]["message"]
        assert c.call("ping")["ok"]
    finally:
        c.close()


def test_dashboard_of_the_subprocess_shows_the_requests(lara_serve):
    with httpx.Client(base_url=lara_serve["dashboard"], timeout=10) as http:
        assert http.get("/healthz").json()["status"] == "ok"
        status = http.get("/api/status").json()
    assert status["engine"] == "ort"
    assert status["requests"]["infer"] == 3 and status["errors"] == {"bad_request": 1}
    assert status["latency_ms"]["server"]["count"] == 2


def test_non_loopback_bind_without_token_is_refused(ort_bundle):
    out = subprocess.run(_lara_serve() + ["--policy", str(ort_bundle), "--bind", "tcp://0.0.0.0:5555",
                                          "--dashboard", "off"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "without a token" in out.stderr


def test_sigterm_shuts_down_cleanly(lara_serve):
    proc = lara_serve["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    rest = []
    while (line := lara_serve["lines"].get(timeout=30)) is not None:
        rest.append(line)
    assert any("lara-serve: stopped" in ln for ln in rest), rest


def test_sigint_shuts_down_cleanly_with_the_torch_engine(ort_bundle, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    proc = subprocess.Popen(_lara_serve() + ["--policy", str(ort_bundle), "--engine", "torch", "--bind",
                                             "tcp://127.0.0.1:*", "--dashboard", "off", "--token-file", str(token)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1"))
    try:
        line = proc.stdout.readline()
        assert " on tcp://127.0.0.1:" in line and "(torch)" in line, line
        c = DocsClient(line.rsplit(" on ", 1)[1].strip())
        denied = c.call("ping")
        assert denied["ok"] is False and denied["error"]["code"] == "unauthorized"
        c.rid += 1
        c.sock.send(msgpack.packb({"v": 1, "id": c.rid, "endpoint": "ping", "token": "s3cret"}, use_bin_type=True))
        assert c.sock.poll(30000) and msgpack.unpackb(c.sock.recv(), raw=False)["ok"]
        c.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert "lara-serve: stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_token_file_problems_are_reported_before_anything_loads(tmp_path):
    from lara_g1.runtime.cli import main

    empty = tmp_path / "token"
    empty.write_text("\n")
    with pytest.raises(SystemExit, match="is empty"):
        main(["--policy", str(tmp_path), "--token-file", str(empty)])
    with pytest.raises(SystemExit, match="cannot read"):
        main(["--policy", str(tmp_path), "--token-file", str(tmp_path / "missing")])


def test_dashboard_address_parsing():
    from lara_g1.runtime.dashboard.http import parse_hostport

    assert parse_hostport("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_hostport("9000") == ("127.0.0.1", 9000)
    assert parse_hostport("[::1]:81") == ("::1", 81)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_hostport("localhost:http")


def test_engine_options_reach_the_engine_and_foreign_ones_are_refused(tmp_path, capsys, monkeypatch):
    from lara_g1.runtime import cli

    assert cli.main(["--policy", str(tmp_path), "--engine", "ort", "--compile"]) == 2
    assert "--compile does not apply to --engine ort" in capsys.readouterr().err

    seen = {}

    def fake_load(path, kind, **options):  # records the call, then stops start-up like a bad bundle
        seen.update(kind=kind, options=options)
        raise RuntimeError("stop here")

    monkeypatch.setattr("lara_g1.runtime.engines.load_engine", fake_load)
    monkeypatch.setattr("signal.signal", lambda *args: None)  # keep pytest's own handlers
    assert cli.main(["--policy", str(tmp_path), "--engine", "ort", "--provider", "cpu", "--threads", "1",
                     "--dashboard", "off"]) == 1
    assert seen == {"kind": "ort", "options": {"provider": "cpu", "threads": 1}}
