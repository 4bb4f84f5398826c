"""Load test of `babel-edge serve`: many clients, random disconnects, loopback only.

    flock /tmp/babel-heavy.lock .venv/bin/python bench/bench_load.py \
        [--model embedded|tiny|PATH] [--clients 32] [--requests 20] [--rounds 3]
    .venv/bin/python bench/bench_load.py --markdown-from bench/results/load_test.json

Starts the server the way users do (the CLI, in a subprocess, on 127.0.0.1, with
`--chat-template gemma` so both endpoints can be driven), warms it up, then runs `rounds`
rounds; in each, `clients` threads with their own official `openai` client send
`requests` requests each: completions and chat, streamed and not, a few malformed ones
(which must get 400), and about one in five abandoned on purpose (a stream closed after its
first chunk, or a client timeout shorter than the answer). Every other failure — a 5xx, a
dropped connection — is an error. Reported per round: requests served, p50/p99 latency,
errors, and the server's RSS; the whole run is bounded by --deadline. Writes
bench/results/load_test.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import openai
import psutil

RESULTS = Path(__file__).resolve().parent / "results"
PROMPTS = ["The capital of France is", "Die Hauptstadt von Deutschland ist", "Once upon a time",
           "La capitale de l'Italie est", "Water boils at", "1, 2, 3, 4,"]


def model_path(spec: str, tmp: Path) -> Path:
    if spec == "embedded":
        from babel_edge.models import gguf_for
        return Path(gguf_for(None))
    if spec == "tiny":
        from babel_edge.models.tiny import build_tiny_model
        build_tiny_model("llama", tmp / "tiny-llama", seed=0)
        return tmp / "tiny-llama"
    return Path(spec)


def start_server(model: Path, threads: int, max_queue: int) -> tuple[subprocess.Popen, str]:
    p = subprocess.Popen([sys.executable, "-m", "babel_edge.cli", "serve", str(model), "--port", "0",
                          "--model-id", "m", "--threads", str(threads), "--n-ctx", "512",
                          "--max-queue", str(max_queue), "--chat-template", "gemma"],
                         stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        if m := re.search(r"at (http://127\.0\.0\.1:\d+)/v1", line):
            threading.Thread(target=p.stderr.read, daemon=True).start()   # keep the pipe drained
            return p, m.group(1)
    raise SystemExit(f"the server did not start (exit {p.wait()})")


def one_request(c: openai.OpenAI, rng: random.Random, max_tokens: int) -> dict:
    """Send one request of a random kind; {"kind", "outcome", "latency"[, "ttft"]}."""
    prompt = rng.choice(PROMPTS)
    chat = rng.random() < 0.4
    stream = rng.random() < 0.5
    r = rng.random()
    kind = "bad" if r < 0.05 else ("abandon" if r < 0.25 else "normal")
    args = dict(model="m", max_tokens=rng.randint(1, max_tokens), temperature=rng.choice([0, 0.7]),
                seed=rng.randint(0, 2**31), stream=stream)
    if kind == "bad":
        args["temperature"] = 5            # out of range: must be a 400
    create = c.chat.completions.create if chat else c.completions.create
    body = {"messages": [{"role": "user", "content": prompt}]} if chat else {"prompt": prompt}
    t0 = time.perf_counter()
    out = {"kind": f"{'chat' if chat else 'completion'}{'-stream' if stream else ''}-{kind}"}
    try:
        if kind == "abandon" and not stream:
            c = c.with_options(timeout=rng.uniform(0.01, 0.3))    # gives up before the answer
        res = create(**body, **args)
        if stream:
            first = None
            for _ in res:
                first = first or time.perf_counter()
                if kind == "abandon":
                    res.close()            # drop the connection mid-stream
                    break
            out["ttft"] = (first or time.perf_counter()) - t0
        # a non-streamed request answered within its short timeout was served all the same
        out["outcome"] = "abandoned" if kind == "abandon" and stream else "ok"
    except openai.APITimeoutError:
        out["outcome"] = "abandoned" if kind == "abandon" else "error: timeout"
    except openai.APIStatusError as e:
        out["outcome"] = (f"{e.status_code}" if 400 <= e.status_code < 500 and kind == "bad"
                          else f"error: {e.status_code} {e.message}")
    except openai.APIError as e:           # connection dropped, error event in a stream
        out["outcome"] = f"error: {type(e).__name__} {e}"
    out["latency"] = time.perf_counter() - t0
    return out


def run_round(url: str, clients: int, requests: int, max_tokens: int, seed: int,
              deadline: float) -> list[dict]:
    results: list[dict] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=300)
        for _ in range(requests):
            if time.monotonic() > deadline:
                return
            r = one_request(c, rng, max_tokens)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def server_metrics(url: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics") as r:
        fams = text_string_to_metric_families(r.read().decode())
    out = {}
    for fam in fams:
        for s in fam.samples:
            if s.name == "babel_edge_requests_total":
                out[f"{s.labels['endpoint']} {s.labels['status']}"] = s.value
            elif s.name in ("babel_edge_cancelled_requests_total",):
                out[f"cancelled {s.labels['reason']}"] = s.value
            elif s.name == "babel_edge_tokens_after_cancel_bucket" and s.labels["le"] == "1.0":
                out["cancelled with <= 1 token after"] = s.value
            elif s.name == "babel_edge_tokens_after_cancel_count":
                out["cancelled, all"] = s.value
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def summarize(results: list[dict]) -> dict:
    served = [r for r in results if r["outcome"] == "ok"]
    lat = [r["latency"] for r in served]
    ttft = [r["ttft"] for r in served if "ttft" in r]
    errors = [r for r in results if r["outcome"].startswith("error")]
    return {"sent": len(results), "served": len(served),
            "rejected_4xx": sum(r["outcome"].startswith("4") for r in results),
            "abandoned": sum(r["outcome"] == "abandoned" for r in results),
            "errors": len(errors), "error_samples": sorted({r["outcome"] for r in errors})[:5],
            "latency_p50_s": pct(lat, 0.5), "latency_p99_s": pct(lat, 0.99),
            "latency_max_s": max(lat, default=float("nan")),
            "stream_ttft_p50_s": pct(ttft, 0.5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded", help="embedded (the GGUF, default), tiny, or a path")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=20, help="per client and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=8, help="upper bound of max_tokens per request")
    ap.add_argument("--threads", type=int, default=2, help="engine threads")
    ap.add_argument("--deadline", type=float, default=900, help="seconds for the whole load")
    ap.add_argument("--markdown-from", metavar="JSON",
                    help="only write load_test.md again from a load_test.json this script wrote")
    a = ap.parse_args()
    if a.markdown_from:
        (RESULTS / "load_test.md").write_text(markdown(json.loads(Path(a.markdown_from).read_text())))
        return
    with tempfile.TemporaryDirectory() as tmp:
        model = model_path(a.model, Path(tmp))
        proc, url = start_server(model, a.threads, max_queue=2 * a.clients)
        try:
            server = psutil.Process(proc.pid)
            deadline = time.monotonic() + a.deadline
            # a short round first, not counted: the server's first concurrent requests start
            # its thread pool and allocator arenas, which is growth, but not a leak
            warm = summarize(run_round(url, a.clients, 2, a.max_tokens, 999, deadline))
            rss = [server.memory_info().rss]
            rounds = []
            for i in range(a.rounds):
                t0, cpu0 = time.perf_counter(), sum(server.cpu_times()[:2])
                s = summarize(run_round(url, a.clients, a.requests, a.max_tokens, i, deadline))
                s["wall_s"] = time.perf_counter() - t0
                # the server's own CPU time tells a slow server from a machine busy elsewhere
                s["server_cpu_s"] = sum(server.cpu_times()[:2]) - cpu0
                s["load_avg_1min"] = os.getloadavg()[0]
                rss.append(server.memory_info().rss)
                s["rss_after_mb"] = rss[-1] / 2**20
                rounds.append(s)
                print(f"round {i + 1}: {s}", flush=True)
            t0 = time.perf_counter()
            while True:                    # the last abandoned requests stop at their next token
                with urllib.request.urlopen(f"{url}/health") as r:
                    health = json.load(r)
                if (not health["running"] and not health["queued"]) or time.perf_counter() - t0 > 60:
                    break
                time.sleep(0.05)
            idle_after = time.perf_counter() - t0
            metrics = server_metrics(url)
        finally:
            proc.terminate()               # SIGTERM: the graceful stop
            exit_code = proc.wait(120)
    report = {"model": str(model) if a.model not in ("embedded", "tiny") else a.model,
              "model_file": model.name, "clients": a.clients, "requests_per_client": a.requests,
              "warm_up": warm, "rounds": rounds, "max_tokens": a.max_tokens, "engine_threads": a.threads,
              "rss_before_mb": rss[0] / 2**20, "rss_after_mb": rss[-1] / 2**20,
              "health_after": health, "idle_after_s": idle_after, "server_metrics": metrics, "server_exit_code": exit_code,
              "command": "flock /tmp/babel-heavy.lock .venv/bin/python bench/bench_load.py "
                         + " ".join(sys.argv[1:])}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "load_test.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / "load_test.md").write_text(markdown(report))
    print(markdown(report))


def markdown(r: dict) -> str:
    rounds = r["rounds"]

    def spread(key: str, fmt: str) -> str:
        xs = [x[key] for x in rounds]
        return f"{format(statistics.median(xs), fmt)} ({format(min(xs), fmt)}–{format(max(xs), fmt)})"

    rows = ["| round | sent | served | 4xx (asked for) | abandoned | errors | p50 latency | "
            "p99 latency | stream TTFT p50 | wall | server CPU | load avg | server RSS after |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for i, x in enumerate(rounds, 1):
        rows.append(f"| {i} | {x['sent']} | {x['served']} | {x['rejected_4xx']} | {x['abandoned']} | "
                    f"{x['errors']} | {x['latency_p50_s']:.2f} s | {x['latency_p99_s']:.2f} s | "
                    f"{x['stream_ttft_p50_s']:.2f} s | {x['wall_s']:.0f} s | {x['server_cpu_s']:.0f} s | "
                    f"{x['load_avg_1min']:.1f} | {x['rss_after_mb']:.1f} MB |")
    m = r["server_metrics"]
    statuses = ", ".join(f"{k}: {v:g}" for k, v in sorted(m.items()) if k.startswith("/v1"))
    return (f"# Load test of `babel-edge serve`\n\n"
            f"Made by `{r['command']}` (`bench/bench_load.py`): model {r['model']} "
            f"(`{r['model_file']}`), {r['engine_threads']} engine threads, on 127.0.0.1 of a 2-core "
            f"machine shared with the clients. {r['clients']} clients × {r['requests_per_client']} "
            f"requests per round, {len(rounds)} rounds; completions and chat, streamed and not, "
            f"max_tokens 1–{r['max_tokens']}; ~5% malformed on purpose (must get 400), ~20% "
            f"abandoned on purpose (stream closed after its first chunk, or a client timeout of "
            f"10–300 ms). Latency: send to last byte, requests served whole (queue wait "
            f"included: one engine serves {r['clients']} clients in turn).\n\n"
            + "\n".join(rows) + "\n\n"
            f"Median (min–max) over rounds: p50 latency {spread('latency_p50_s', '.2f')} s, p99 "
            f"latency {spread('latency_p99_s', '.2f')} s, errors {spread('errors', 'd')}.\n\n"
            f"Server RSS {r['rss_before_mb']:.1f} MB after a warm-up round ({r['clients']} clients × 2 "
            f"requests, not counted) → {r['rss_after_mb']:.1f} MB after all rounds "
            f"({r['rss_after_mb'] - r['rss_before_mb']:+.1f} MB); from the end of round 1 to the end "
            f"of round {len(rounds)}: {rounds[-1]['rss_after_mb'] - rounds[0]['rss_after_mb']:+.1f} MB. "
            f"Server CPU: the server process's user+system seconds in the round (up to "
            f"{r['engine_threads']}× the wall time with {r['engine_threads']} engine threads); far "
            f"below that, the machine was busy with other work (see the load average).\n\n"
            f"The server's own count (`/metrics`): {statuses}; generations cancelled by a "
            f"disconnect: {m.get('cancelled client_disconnected', 0):g}, of which "
            f"{m.get('cancelled with <= 1 token after', 0):g} of {m.get('cancelled, all', 0):g} "
            f"cancellations stopped within one token. Health {r['idle_after_s']:.2f} s after the "
            f"last client finished: `{json.dumps(r['health_after'])}`; exit code after SIGTERM: {r['server_exit_code']}.\n")


if __name__ == "__main__":
    main()
