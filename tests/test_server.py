"""The OpenAI-compatible server, driven by the official `openai` client over real sockets,
on real engines (tiny random models): every endpoint, streaming and not, the API key,
validation, the bounded FIFO queue, cancellation on disconnect, errors, graceful stop."""
import asyncio
import json
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from babel_edge.runtime.engines import TorchEngine
from babel_edge.runtime.engines.base import load_chat_template, own_chat_template
from babel_edge.runtime.server import BackgroundServer, ServerOptions, create_app

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KEY = "test-key-7f3a"
# With the tiny llama (seed 0) greedy decoding of this prompt runs to max_tokens without EOS,
# so a generation is as long as asked: long enough to disconnect from in the middle.
LONG_PROMPT = "Once upon a time"


# ------------------------------------------------------------------ helpers

def client_for(url: str, key=KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url) as r:
        return json.load(r)


def metrics(srv) -> dict:
    """{(sample name, sorted labels): value} from the server's /metrics."""
    with urllib.request.urlopen(f"{srv.url}/metrics") as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def metric(snapshot: dict, name: str, **labels) -> float:
    return snapshot.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_until(condition, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def raw_post(srv, path: str, body: dict, key=KEY) -> socket.socket:
    """A request sent by hand, so that the test can drop the connection when it likes."""
    host, port = srv.sock.getsockname()[:2]
    data = json.dumps(body).encode()
    s = socket.create_connection((host, port))
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              f"Authorization: Bearer {key}\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    return s


def reset(s: socket.socket) -> None:
    """Close with a TCP reset, as a killed client does."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def long_request(stream: bool, max_tokens: int = 480) -> dict:
    return {"model": "tiny", "prompt": LONG_PROMPT, "max_tokens": max_tokens, "temperature": 0,
            "stream": stream}


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def engine(tiny_dirs):
    return TorchEngine(tiny_dirs["llama"], n_ctx=512)


@pytest.fixture(scope="module")
def server(engine):
    app = create_app(engine, ServerOptions(model_id="tiny", api_key=KEY, max_queue=16,
                                           close_engine=False))
    with BackgroundServer(app) as srv:
        yield srv


@pytest.fixture
def client(server):
    return client_for(server.url)


@pytest.fixture(scope="module")
def base_model_dir(tiny_dirs, tmp_path_factory):
    """The tiny llama without a chat template: a base model."""
    d = tmp_path_factory.mktemp("base") / "llama-base"
    shutil.copytree(tiny_dirs["llama"], d)
    (d / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    return d


@pytest.fixture(scope="module")
def tiny_gguf(tiny_dirs, tmp_path_factory):
    """The tiny llama as a GGUF file, whose tokenizer carries babel-edge's Gemma template
    (as every export of a converted template-less Gemma GGUF does)."""
    from transformers import AutoTokenizer

    from babel_edge.exporters.gguf import export_gguf
    from babel_edge.models.gguf_tokenizer import GEMMA_CHAT_TEMPLATE

    root = tmp_path_factory.mktemp("gguf")
    d = root / "llama"
    shutil.copytree(tiny_dirs["llama"], d)
    tk = AutoTokenizer.from_pretrained(str(d))
    tk.chat_template = GEMMA_CHAT_TEMPLATE
    tk.save_pretrained(str(d))
    export_gguf(d, root / "tiny.gguf", "f32", verbose=False)
    return root / "tiny.gguf", d


# ------------------------------------------------------------------ endpoints

def test_models_health_docs_and_metrics(server, client):
    models = client.models.list().data
    assert [m.id for m in models] == ["tiny"]
    card = client.models.retrieve("tiny")
    assert card.chat is True and card.chat_template == "model" and card.context_length == 512
    # operations routes need no key
    assert get_json(f"{server.url}/health")["status"] == "ok"
    spec = get_json(f"{server.url}/openapi.json")
    assert {"/v1/completions", "/v1/chat/completions", "/v1/models"} <= set(spec["paths"])
    with urllib.request.urlopen(f"{server.url}/docs") as r:
        assert b"swagger" in r.read().lower()
    assert metric(metrics(server), "babel_edge_requests_total", endpoint="/v1/models",
                  status="200") >= 1


def test_completion_and_stream_agree(server, client):
    before = metrics(server)
    r = client.completions.create(model="tiny", prompt="The capital of France is", max_tokens=12,
                                  temperature=0)
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    assert r.usage.completion_tokens == 12 and r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens > 3 and len(r.choices[0].text) > 0
    chunks = list(client.completions.create(
        model="tiny", prompt="The capital of France is", max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == r.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage == r.usage
    after = metrics(server)
    assert metric(after, "babel_edge_completion_tokens_total") - \
        metric(before, "babel_edge_completion_tokens_total") == 24
    assert metric(after, "babel_edge_time_to_first_token_seconds_count") - \
        metric(before, "babel_edge_time_to_first_token_seconds_count") == 2


def test_chat_and_chat_stream(client):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hallo!"}]
    r = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=8, temperature=0)
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    chunks = list(client.chat.completions.create(model="tiny", messages=msgs, max_tokens=8,
                                                 temperature=0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == r.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")
    # developer is OpenAI's newer name for system; text parts join into one message
    r2 = client.chat.completions.create(model="tiny", max_tokens=8, temperature=0, messages=[
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hal"}, {"type": "text", "text": "lo!"}]}])
    assert r2.choices[0].message.content == r.choices[0].message.content


def test_stop_strings_and_sampling_seed(client):
    text = client.completions.create(model="tiny", prompt="Hello", max_tokens=16,
                                     temperature=0).choices[0].text
    assert len(text) > 4
    stop = text[2:4]
    r = client.completions.create(model="tiny", prompt="Hello", max_tokens=16, temperature=0,
                                  stop=[stop])
    assert r.choices[0].finish_reason == "stop" and stop not in r.choices[0].text
    assert text.startswith(r.choices[0].text)
    a, b, c = (client.completions.create(model="tiny", prompt="Hello", max_tokens=8,
                                         temperature=1.0, seed=s).choices[0].text for s in (7, 7, 8))
    assert a == b and a != c


def test_unknown_fields_are_ignored_like_openai_does(client):
    r = client.completions.create(model="tiny", prompt="Hello", max_tokens=2,
                                  extra_body={"some_future_field": {"x": 1}})
    assert r.usage.completion_tokens == 2


def test_eight_concurrent_clients_all_answered(server):
    results, errors = [], []

    def one(i):
        try:
            r = client_for(server.url).completions.create(model="tiny", prompt=f"Number {i}:",
                                                      max_tokens=6, temperature=0)
            results.append(r.usage.completion_tokens)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [6] * 8


# ------------------------------------------------------------------ bad input, auth

def test_bad_requests_get_a_precise_400(server, client):
    with pytest.raises(openai.NotFoundError, match="other-model"):
        client.completions.create(model="other-model", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="context") as e:
        client.completions.create(model="tiny", prompt="word " * 400, max_tokens=200)
    assert e.value.body["code"] == "context_length_exceeded"
    for kwargs, field in [({"temperature": 5}, "temperature"), ({"max_tokens": 0}, "max_tokens"),
                          ({"top_p": 1.5}, "top_p"), ({"n": 2}, "n"),
                          ({"presence_penalty": 0.5}, "presence_penalty"),
                          ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
                          ({"logprobs": 2}, "logprobs")]:
        with pytest.raises(openai.BadRequestError) as e:
            client.completions.create(**{"model": "tiny", "prompt": "x", **kwargs})
        assert e.value.body["param"] == field and field in e.value.body["message"], kwargs
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model="tiny", messages=[])
    with pytest.raises(openai.BadRequestError, match="role"):
        client.chat.completions.create(model="tiny", messages=[{"role": "robot", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="only text content"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}])
    with pytest.raises(openai.BadRequestError, match="tools"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}],
                                       tools=[{"type": "function", "function": {"name": "f"}}])

    def post(body: bytes, content_type="application/json"):
        req = urllib.request.Request(f"{server.url}/v1/completions", data=body, headers={
            "Content-Type": content_type, "Authorization": f"Bearer {KEY}"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req)
        return e.value.code, json.load(e.value)["error"]["message"]

    code, msg = post(b"{not json")
    assert code == 400 and msg.startswith("malformed JSON")
    code, msg = post(b'{"prompt": "x", "temperature": "0.5"}')    # strict types, like OpenAI
    assert code == 400 and "temperature" in msg
    assert post(b'["x"]')[0] == 400
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{server.url}/v2/nothing")
    assert e.value.code == 404


def test_request_body_over_the_limit_gets_413(server):
    host, port = server.sock.getsockname()[:2]
    with socket.create_connection((host, port)) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 99999999\r\n\r\n")
        head = s.recv(65536)
    assert head.startswith(b"HTTP/1.1 413")


def test_api_key_is_required_on_v1(server):
    req = urllib.request.Request(f"{server.url}/v1/models")          # no Authorization at all
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 401 and json.load(e.value)["error"]["code"] == "invalid_api_key"
    for key in ("wrong-key", KEY[:-1], KEY + "x"):
        c = client_for(server.url, key=key)
        with pytest.raises(openai.AuthenticationError) as e:
            c.completions.create(model="tiny", prompt="x", max_tokens=2)
        assert e.value.response.headers["www-authenticate"] == "Bearer"
        with pytest.raises(openai.AuthenticationError):
            c.models.list()
        with pytest.raises(openai.AuthenticationError):
            c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}])
    # operations routes stay open: probes and scrapers carry no key
    assert get_json(f"{server.url}/health")["status"] == "ok"
    assert metrics(server)


# ------------------------------------------------------------------ queue, cancellation, errors

def test_worker_is_a_bounded_fifo(engine):
    """Jobs run one at a time in arrival order; beyond max_queue waiting, submit refuses."""
    from babel_edge.runtime.server.metrics import Metrics
    from babel_edge.runtime.server.worker import Done, EngineWorker, QueueFull, Sampling

    async def main():
        w = EngineWorker(engine, max_queue=4, metrics=Metrics("tiny", "torch", "cpu"))
        w.start()
        ids = engine.tokenize("Hello")
        # submitted without yielding to the loop: all four wait, a fifth does not fit
        jobs = [w.submit(ids, Sampling(max_tokens=3, temperature=0.0)) for _ in range(4)]
        with pytest.raises(QueueFull):
            w.submit(ids, Sampling(max_tokens=3, temperature=0.0))
        ends = [[e async for e in j.stream()][-1] for j in jobs]
        await w.aclose()
        return jobs, ends

    jobs, ends = asyncio.run(main())
    assert all(isinstance(e, Done) and e.completion_tokens == 3 for e in ends)
    started = [j.first_token_at for j in jobs]
    assert started == sorted(started)


def test_full_queue_answers_503_with_retry_after(engine):
    app = create_app(engine, ServerOptions(model_id="tiny", max_queue=1, close_engine=False))
    with BackgroundServer(app) as srv:
        busy = raw_post(srv, "/v1/completions", long_request(stream=True))
        got = b""
        while b"data:" not in got:           # the engine is generating for it
            got += busy.recv(4096)
        queued = {}
        t = threading.Thread(target=lambda: queued.update(r=client_for(srv.url).completions.create(
            model="tiny", prompt="Queued", max_tokens=4, temperature=0)))
        t.start()
        wait_until(lambda: get_json(f"{srv.url}/health")["queued"] == 1, "a queued request")
        with pytest.raises(openai.InternalServerError) as e:
            client_for(srv.url).completions.create(model="tiny", prompt="One too many", max_tokens=4)
        assert e.value.status_code == 503 and e.value.body["code"] == "queue_full"
        assert int(e.value.response.headers["retry-after"]) >= 1
        reset(busy)                          # the engine is free again: the queued one runs
        t.join(120)
        assert queued["r"].usage.completion_tokens == 4


def _cancellation_counts(srv) -> tuple[float, float, float]:
    m = metrics(srv)
    return (metric(m, "babel_edge_cancelled_requests_total", reason="client_disconnected"),
            metric(m, "babel_edge_tokens_after_cancel_count"),
            metric(m, "babel_edge_tokens_after_cancel_bucket", le="1.0"))


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "not-streamed"])
def test_client_disconnect_cancels_within_one_token(server, client, stream):
    before = metrics(server)
    cancelled0, count0, within_one0 = _cancellation_counts(server)
    s = raw_post(server, "/v1/completions", long_request(stream))
    if stream:
        got = b""
        while got.count(b"data:") < 3:
            got += s.recv(4096)
    else:
        wait_until(lambda: get_json(f"{server.url}/health")["running"], "the generation to start")
    reset(s)
    wait_until(lambda: _cancellation_counts(server)[0] == cancelled0 + 1, "the cancellation")
    cancelled, count, within_one = _cancellation_counts(server)
    # the engine generated at most one token after it heard of the disconnect
    assert (count, within_one) == (count0 + 1, within_one0 + 1)
    after = metrics(server)
    generated = metric(after, "babel_edge_completion_tokens_total") - \
        metric(before, "babel_edge_completion_tokens_total")
    assert generated < 480
    if not stream:
        assert metric(after, "babel_edge_requests_total", endpoint="/v1/completions", status="499") \
            == metric(before, "babel_edge_requests_total", endpoint="/v1/completions", status="499") + 1
    # and it serves the next client
    assert client.completions.create(model="tiny", prompt="Still there?", max_tokens=3,
                                     temperature=0).usage.completion_tokens == 3
    wait_until(lambda: not get_json(f"{server.url}/health")["running"], "an idle engine")


def test_unexpected_error_is_a_json_500_and_the_server_goes_on(engine, tmp_path):
    broken = tmp_path / "broken.jinja"      # valid Jinja that fails when rendered
    broken.write_text("{{ (messages | length) / 0 }}")
    app = create_app(engine, ServerOptions(model_id="tiny", chat_template=load_chat_template(
        str(broken)), chat_template_name=str(broken), close_engine=False))
    with BackgroundServer(app) as srv:
        c = client_for(srv.url)
        with pytest.raises(openai.InternalServerError) as e:
            c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}])
        assert e.value.status_code == 500 and e.value.body["type"] == "server_error"
        assert "ZeroDivisionError" in e.value.body["message"]
        assert c.completions.create(model="tiny", prompt="Hi", max_tokens=2).usage.completion_tokens == 2
        assert metric(metrics(srv), "babel_edge_requests_total", endpoint="/v1/chat/completions",
                      status="500") == 1


# ------------------------------------------------------------------ chat templates

def test_base_model_chats_only_with_a_chat_template(base_model_dir):
    engine = TorchEngine(base_model_dir, n_ctx=256)
    assert engine.chat_template is None
    msgs = [{"role": "user", "content": "Hallo!"}]
    with BackgroundServer(create_app(engine, ServerOptions(model_id="base", close_engine=False))) as srv:
        c = client_for(srv.url, key="none")
        card = c.models.list().data[0]
        assert card.chat is False and card.chat_template is None
        with pytest.raises(openai.BadRequestError, match="base model.*--chat-template") as e:
            c.chat.completions.create(model="base", messages=msgs, max_tokens=4)
        assert e.value.body["code"] == "chat_not_supported"
        assert c.completions.create(model="base", prompt="Hallo", max_tokens=3).usage.completion_tokens == 3
    options = ServerOptions(model_id="base", chat_template=load_chat_template("chatml"),
                            chat_template_name="chatml")
    with BackgroundServer(create_app(engine, options)) as srv:
        c = client_for(srv.url, key="none")
        card = c.models.list().data[0]
        assert card.chat is True and card.chat_template == "chatml"
        r = c.chat.completions.create(model="base", messages=msgs, max_tokens=4, temperature=0)
        # the prompt is chatml's rendering of the messages
        expected = engine.render_chat(msgs, load_chat_template("chatml"))
        assert r.usage.prompt_tokens == len(expected)


def test_both_engines_agree_a_template_babel_edge_supplied_is_not_the_models_own(tiny_gguf, tiny_dirs):
    from babel_edge.runtime.engines import LlamaCppEngine

    gguf, hf_dir = tiny_gguf
    torch_engine = TorchEngine(hf_dir, n_ctx=256)
    llama = LlamaCppEngine(gguf, n_ctx=256, n_threads=1)
    try:
        assert torch_engine.chat_template is None and llama.chat_template is None
    finally:
        llama.close()
    # a template the model came with is its own
    assert TorchEngine(tiny_dirs["llama"], n_ctx=256).chat_template is not None
    assert own_chat_template(None) is None and own_chat_template("  ") is None


def test_chat_template_names_and_files(tmp_path):
    from babel_edge.errors import UserError

    assert "<|im_start|>" in load_chat_template("chatml")
    assert "<|start_header_id|>" in load_chat_template("llama3")
    assert "<start_of_turn>" in load_chat_template("gemma")
    f = tmp_path / "t.jinja"
    f.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    assert load_chat_template(str(f)) == f.read_text()
    f.write_text("{% for m in messages %}")
    with pytest.raises(UserError, match="not valid Jinja"):
        load_chat_template(str(f))
    with pytest.raises(UserError, match="gemma, chatml, llama3"):
        load_chat_template("vicuna")


# ------------------------------------------------------------------ the command line

def cli(*args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "babel_edge.cli", "serve", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kw)


@pytest.mark.parametrize("args, env, expect", [
    (["--chat-template", "vicuna"], {}, "neither a file nor one of gemma, chatml, llama3"),
    (["--max-queue", "0"], {}, "--max-queue"),
    (["--port", "70000"], {}, "--port"),
    (["--shutdown-timeout", "-1"], {}, "--shutdown-timeout"),
    ([], {"BABEL_EDGE_API_KEY": " "}, "BABEL_EDGE_API_KEY"),
])
def test_cli_bad_input_is_one_line_exit_2(args, env, expect):
    import os

    p = cli(*args, env={**os.environ, **env})
    _, err = p.communicate(timeout=120)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and expect in lines[0], err


def test_cli_port_in_use_is_one_line_exit_2():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        p = cli("--port", str(taken.getsockname()[1]))
        _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "cannot listen" in err and "Traceback" not in err


def start_cli(model, *args):
    """`babel-edge serve MODEL ... --port 0`; (process, base URL, its stderr lines) once it
    answers requests."""
    p = cli(str(model), "--port", "0", "--model-id", "tiny", *args)
    lines = []
    for line in p.stderr:
        lines.append(line)
        m = re.search(r"at http://[^:]+:(\d+)/v1", line)
        if m:
            return p, f"http://127.0.0.1:{m.group(1)}", lines
    p.wait(60)
    raise AssertionError(f"the server did not start (exit {p.returncode}): {lines}")


def assert_clean_exit(p) -> str:
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    for bad in ("Traceback", "terminate called", "Segmentation fault", "Fatal Python error",
                "Exception in ASGI application"):
        assert bad not in err, err
    return err


@pytest.mark.parametrize("backend", ["torch", "llama.cpp"])
def test_ctrl_c_during_a_stream_cancels_it_and_exits_cleanly(backend, tiny_dirs, tiny_gguf):
    # llama.cpp is fast on the tiny model: a longer context keeps it generating long enough
    model, n_ctx, max_tokens = ((tiny_dirs["llama"], "1024", 1000) if backend == "torch"
                                else (tiny_gguf[0], "4096", 4000))
    p, url, _ = start_cli(model, "--n-ctx", n_ctx, "--threads", "1", "--shutdown-timeout", "0")
    try:
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=120)
        chunks = iter(c.completions.create(model="tiny", prompt=LONG_PROMPT, max_tokens=max_tokens,
                                           temperature=0, stream=True))
        next(chunks), next(chunks)
        p.send_signal(signal.SIGINT)
        with pytest.raises(openai.APIError, match="shutting down"):
            for _ in chunks:
                pass
    except BaseException:
        p.kill()
        raise
    err = assert_clean_exit(p)
    assert "stopping" in err


def test_sigterm_lets_a_running_stream_finish_first(tiny_dirs):
    p, url, _ = start_cli(tiny_dirs["llama"], "--shutdown-timeout", "120")
    try:
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=120)
        chunks = iter(c.completions.create(model="tiny", prompt=LONG_PROMPT, max_tokens=200,
                                           temperature=0, stream=True))
        next(chunks)
        p.send_signal(signal.SIGTERM)
        rest = list(chunks)
        assert rest[-1].choices[0].finish_reason == "length"
    except BaseException:
        p.kill()
        raise
    assert_clean_exit(p)


def test_cli_serves_with_a_key_and_warns_when_exposed_without_one(tiny_dirs, monkeypatch):
    monkeypatch.delenv("BABEL_EDGE_API_KEY", raising=False)
    p, url, lines = start_cli(tiny_dirs["llama"], "--host", "0.0.0.0")
    p.send_signal(signal.SIGINT)
    assert_clean_exit(p)
    assert any(ln.startswith("warning: listening on 0.0.0.0 without an API key") for ln in lines), lines

    monkeypatch.setenv("BABEL_EDGE_API_KEY", KEY)
    p, url, lines = start_cli(tiny_dirs["llama"])
    try:
        assert "API key: required" in lines[-1] and not any("warning" in ln for ln in lines)
        with pytest.raises(openai.AuthenticationError):
            client_for(url, key="wrong").models.list()
        assert client_for(url).models.list().data[0].id == "tiny"
    finally:
        p.send_signal(signal.SIGINT)
    assert_clean_exit(p)
