"""`vkharp serve` at its limits: a full queue answers 503 with Retry-After, SIGTERM drains the stream
in flight, /health says 503 while the model loads, and bad command lines exit 2."""
import json
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from served import ROOT, Served, free_port


@pytest.fixture(scope="module")
def server():
    s = Served("-c", "256", "--queue", "1")
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


def body(max_tokens, stream=False, prompt="Once upon a time"):
    return {"prompt": prompt, "max_tokens": max_tokens, "stream": stream, "temperature": 0}


def wait_metric(server, name, value):
    for _ in range(1200):
        if server.metrics()[name] == value:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} never reached {value}: {server.metrics()}")


def test_a_full_queue_answers_503_with_retry_after(server):
    url = server.url + "/v1/completions"
    with httpx.stream("POST", url, json=body(200, stream=True), timeout=600) as running:
        lines = running.iter_lines()
        assert next(lines).startswith("data: ")        # the worker is busy with this one
        waiting = {}
        t = threading.Thread(target=lambda: waiting.update(r=httpx.post(url, json=body(3), timeout=600)))
        t.start()
        wait_metric(server, "requests_deferred", 1)     # the queue (bound 1) is full
        refused = httpx.post(url, json=body(3), timeout=600)
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"]["type"] == "unavailable_error"
    t.join(600)                                          # the stream left: the queued request runs
    assert waiting["r"].status_code == 200 and waiting["r"].json()["usage"]["completion_tokens"] == 3


def test_sigterm_drains_the_stream_in_flight(server):
    with httpx.stream("POST", server.url + "/v1/completions", json=body(12, stream=True), timeout=600) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
        server.proc.send_signal(signal.SIGTERM)
        rest = [line for line in lines if line]
    assert rest[-1] == "data: [DONE]"
    assert json.loads(rest[-2][len("data: "):])["choices"][0]["finish_reason"] in ("stop", "length")
    assert server.proc.wait(120) == 143                 # the CLI's status for SIGTERM
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/health", timeout=5)


def test_health_is_503_while_the_model_loads():
    """In process, with the loader held at a gate, so that 'loading' is a state the test can see."""
    from starlette.testclient import TestClient

    import engine
    from engine.serve.app import ServeOptions, build_app
    from engine.serve.worker import Worker
    from engine.settings import GenerationSettings
    gate = threading.Event()
    worker = Worker(lambda: gate.wait(60) and engine.load(None, ctx=64), queue_size=2, on_fatal=lambda exc: None)
    app = build_app(worker, ServeOptions(model_id="m", defaults=GenerationSettings(), max_body=4096))
    with TestClient(app) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["error"]["message"] == "Loading model"
        r = c.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 1})
        assert r.status_code == 503 and r.json()["error"]["code"] == 503
        gate.set()
        for _ in range(1200):
            if c.get("/health").status_code == 200:
                break
            time.sleep(0.05)
        r = c.post("/v1/completions", json={"prompt": "The capital of France is", "max_tokens": 2, "temperature": 0})
        assert r.status_code == 200 and r.json()["choices"][0]["text"].startswith(" Paris")


def vkharp(*args):
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("args, word", [
    (["serve", "/no/such/model"], "does not exist"),
    (["serve", "--port", "70000"], "--port"),
    (["serve", "--queue", "0"], "--queue"),
    (["serve", "--temp", "-1"], "temperature"),
])
def test_bad_command_lines_exit_2(args, word):
    r = vkharp(*args)
    assert r.returncode == 2 and word in r.stderr, r.stderr


def test_a_port_in_use_is_an_error_line():
    import socket
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen(1)
        r = vkharp("serve", "--port", str(port))
    assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in r.stderr, r.stderr
