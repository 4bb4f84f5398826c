"""The OpenAI-compatible server, driven by the official `openai` client as a real client."""
import json
import socket
import threading
import urllib.error
import urllib.request

import openai
import pytest

from babel_edge.runtime.engines import TorchEngine
from babel_edge.runtime.server import ApiServer


class CountingEngine:
    """Wraps an engine to count the tokens it really generated."""

    def __init__(self, engine):
        self._e = engine
        self.generated = 0

    def __getattr__(self, name):
        return getattr(self._e, name)

    def generate(self, *a, **kw):
        for tok in self._e.generate(*a, **kw):
            self.generated += 1
            yield tok


@pytest.fixture(scope="module")
def server(tiny_dirs):
    engine = CountingEngine(TorchEngine(tiny_dirs["llama"], n_ctx=256))
    srv = ApiServer(engine, "127.0.0.1", 0, model_id="tiny", max_queue=16)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=120)


def test_models_and_health(server, client):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    with urllib.request.urlopen(f"{server.url}/health") as r:
        assert json.load(r)["status"] == "ok"


def test_completion_and_stream_agree(client):
    r = client.completions.create(model="tiny", prompt="The capital of France is", max_tokens=12,
                                  temperature=0)
    assert r.usage.completion_tokens == 12 and r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens > 3
    pieces = [c.choices[0].text for c in client.completions.create(
        model="tiny", prompt="The capital of France is", max_tokens=12, temperature=0, stream=True)]
    assert "".join(pieces) == r.choices[0].text
    assert len(r.choices[0].text) > 0


def test_chat_and_chat_stream(client):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hallo!"}]
    r = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=8, temperature=0)
    assert r.choices[0].message.role == "assistant"
    chunks = list(client.chat.completions.create(model="tiny", messages=msgs, max_tokens=8,
                                                 temperature=0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == r.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")


def test_stop_strings_and_sampling_seed(client):
    base = client.completions.create(model="tiny", prompt="Hello", max_tokens=16, temperature=0)
    text = base.choices[0].text
    if len(text) > 4:
        stop = text[2:4]
        r = client.completions.create(model="tiny", prompt="Hello", max_tokens=16, temperature=0,
                                      stop=[stop])
        assert r.choices[0].finish_reason == "stop" and stop not in r.choices[0].text
        assert text.startswith(r.choices[0].text)
    a = client.completions.create(model="tiny", prompt="Hello", max_tokens=8, temperature=1.0, seed=7)
    b = client.completions.create(model="tiny", prompt="Hello", max_tokens=8, temperature=1.0, seed=7)
    assert a.choices[0].text == b.choices[0].text


def test_eight_concurrent_clients_all_answered(server):
    results, errors = [], []

    def one(i):
        try:
            c = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=300)
            r = c.completions.create(model="tiny", prompt=f"Number {i}:", max_tokens=6, temperature=0)
            results.append(r.usage.completion_tokens)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [6] * 8


def test_bad_requests_get_4xx(server, client):
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="other-model", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="context"):
        client.completions.create(model="tiny", prompt="word " * 400, max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.completions.create(model="tiny", prompt="x", max_tokens=2, temperature=5)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.completions.create(model="tiny", prompt="x", max_tokens=0)
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model="tiny", messages=[])
    req = urllib.request.Request(f"{server.url}/v1/completions", data=b"{not json",
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 400 and "malformed JSON" in json.load(e.value)["error"]["message"]
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{server.url}/v2/nothing")
    assert e.value.code == 404


def test_client_disconnect_mid_stream_stops_generation(server, client):
    body = json.dumps({"model": "tiny", "prompt": "Once upon a time", "max_tokens": 200,
                       "temperature": 0, "stream": True}).encode()
    before_tokens, before_disc = server.engine.generated, server.disconnects
    with socket.create_connection(server.server_address[:2]) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        got = b""
        while got.count(b"data:") < 3:
            got += s.recv(4096)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    # the server notices at its next write and stops; then it answers the next client
    r = client.completions.create(model="tiny", prompt="Still there?", max_tokens=3, temperature=0)
    assert r.usage.completion_tokens == 3
    assert server.disconnects == before_disc + 1
    assert server.engine.generated - before_tokens < 200     # the abandoned stream was cut short
