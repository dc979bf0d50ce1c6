"""The status dashboard over real HTTP (uvicorn on a free port) and rendered in headless Chromium.

A real torch engine on a tiny random bundle serves requests first, so every number checked is a
number the server measured.
"""
from __future__ import annotations

import html
import io
import re
import shutil
import subprocess

import httpx
import numpy as np
import pytest
from PIL import Image

from lara_g1.runtime.client import PolicyClient, ServerError
from lara_g1.runtime.dashboard.app import DashboardServer
from lara_g1.runtime.server import PolicyServer

pytestmark = pytest.mark.timeout(120)
N_OK = 4


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A server and its dashboard after N_OK good infer requests and one bad one."""
    from lara_g1.lara.bundle import create_random_bundle
    from lara_g1.runtime.engines import load_engine

    path = tmp_path_factory.getbasetemp() / "serving-tiny-bundle"
    if not (path / "model.safetensors").exists():  # shared by the serving test modules
        create_random_bundle(path, preset="tiny", seed=0)
    engine = load_engine(path, "torch")
    server = PolicyServer(engine, "tcp://127.0.0.1:*").start()
    dashboard = DashboardServer(server, "127.0.0.1", 0).start()
    camera = next(iter(engine.metadata["cameras"]))
    client = PolicyClient(server.address, timeout_s=30)
    rng = np.random.default_rng(0)
    last = {}
    for i in range(N_OK):
        img = np.zeros((120, 160, 3), np.uint8)
        img[:, :, i % 3] = 60 * (i + 1)
        img[40:80, 60:100] = 255
        st = rng.uniform(-0.2, 0.2, 28).astype(np.float32)
        last = {"image": img, "reply": client.infer(st, {camera: img}, noise_seed=i)}
    bad = st.copy()
    bad[0] = np.nan
    with pytest.raises(ServerError):
        client.infer(bad, {camera: img})
    yield {"server": server, "url": dashboard.url, "engine": engine, "client": client, **last}
    client.close()
    dashboard.stop()
    server.stop()
    engine.close()


def test_http_endpoints_report_served_requests(served):
    url, server = served["url"], served["server"]
    with httpx.Client(base_url=url, timeout=10) as http:
        health = http.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"

        status = http.get("/api/status").json()
        assert status["model"] == server.model_id and status["engine"] == "torch"
        assert status["requests"]["infer"] == N_OK + 1
        assert status["errors"] == {"bad_request": 1}
        assert status["connected_clients"] >= 1 and status["request_rate"] > 0 and status["uptime_s"] > 0
        lat = status["latency_ms"]
        for stage in ("decode", "queue", "engine", "server"):
            assert lat[stage]["count"] == N_OK
            assert 0 <= lat[stage]["p50"] <= lat[stage]["p95"] <= lat[stage]["p99"]
        assert lat["server"]["p50"] >= lat["engine"]["p50"] > 0
        assert sum(p["n"] for p in status["latency_history"]) == N_OK
        me = [c for c in status["clients"] if c["requests"] == N_OK + 1]
        assert len(me) == 1 and me[0]["errors"] == 1 and me[0]["last_infer_s_ago"] >= 0

        metrics = http.get("/metrics").text
        assert 'lara_serve_latency_seconds_bucket{le="0.001",stage="server"}' in metrics
        assert 'lara_serve_latency_seconds_bucket{le="0.1",stage="server"}' in metrics
        assert f'lara_serve_latency_seconds_count{{stage="server"}} {float(N_OK)}' in metrics
        assert 'lara_serve_errors_total{code="bad_request"} 1.0' in metrics
        assert f'lara_serve_requests_total{{endpoint="infer"}} {float(N_OK + 1)}' in metrics

        frame = http.get("/api/last_frame.jpg")
        assert frame.headers["content-type"] == "image/jpeg"
        got = np.asarray(Image.open(io.BytesIO(frame.content)).convert("RGB"), dtype=np.int16)
        assert got.shape == served["image"].shape
        assert np.abs(got - served["image"]).mean() < 4  # the last frame, up to JPEG

        chunk = http.get("/api/last_actions").json()
        actions = served["reply"].actions
        assert chunk["horizon"] == actions.shape[0]
        emb = served["engine"].metadata["embodiment"]
        assert list(chunk["groups"]) == list(emb["groups"])
        for g, (s, e, _unit) in emb["groups"].items():
            np.testing.assert_allclose(np.array(chunk["groups"][g]["values"]), actions[:, s:e].T, atol=1e-6)

        assert "<canvas id=\"chart\"" in http.get("/").text


def test_page_renders_live_numbers_in_headless_chromium(served, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); the HTTP test above still ran")
    with httpx.Client(base_url=served["url"], timeout=10) as http:
        status = http.get("/api/status").json()
    out = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000", "--dump-dom", served["url"] + "/"],
        capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-2000:]
    dom = out.stdout

    def text_of(element_id):
        m = re.search(rf'id="{element_id}">([^<]*)<', dom)
        assert m, f"#{element_id} not in the rendered page"
        return html.unescape(m.group(1))

    assert text_of("model") == served["server"].model_id
    assert text_of("engine") == "torch"
    assert text_of("requests") == str(status["requests_total"])  # the page fetched and rendered it
    assert text_of("errors") == "1"
    row = re.search(r'<tr data-stage="server"><td>server</td><td>([0-9.]+)</td><td>([0-9.]+)</td>'
                    r'<td>([0-9.]+)</td><td>(\d+)</td></tr>', dom)
    assert row, "latency table has no server row"
    p50 = status["latency_ms"]["server"]["p50"]
    assert float(row.group(1)) == pytest.approx(p50, abs=0.006) and int(row.group(4)) == N_OK
    assert re.search(r'<canvas id="chart"[^>]*data-points="[1-9]', dom), "latency chart drew nothing"
    emb = served["engine"].metadata["embodiment"]
    for g, (s, e, _unit) in emb["groups"].items():
        points = re.search(rf'data-group="{g}" data-points="(\d+)"', dom) or \
            re.search(rf'data-points="(\d+)"[^>]*data-group="{g}"', dom)
        assert points and int(points.group(1)) == (e - s) * served["reply"].actions.shape[0], g
    assert 'src="/api/last_frame.jpg' in dom
    assert '<tr class="err"><td>bad_request</td><td>1</td></tr>' in dom
    client = next(c for c in status["clients"] if c["requests"] == N_OK + 1)
    assert f'<td>{client["client"]}</td><td>{N_OK + 1}</td><td>1</td>' in dom
