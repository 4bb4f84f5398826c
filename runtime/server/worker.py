"""One engine, one generation thread, fed by a bounded asyncio FIFO queue.

Request handlers `submit` a Job and read its events (Piece ... then Done or Failed); the
dispatcher hands jobs to the engine thread in arrival order. A job is cancelled (its
client left, the server is stopping) through a flag the engine thread reads after every
token, so an abandoned request costs the engine at most one more token. Closing the worker
cancels every job and waits for the engine thread to stop; only then may the engine be
closed (llama.cpp frees native memory in close(), which a running thread would still use).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import AsyncIterator, Iterator, NamedTuple

from ..engines import Engine
from .metrics import Metrics

log = logging.getLogger("babel_edge.server")


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


class Piece(NamedTuple):
    text: str


class Done(NamedTuple):
    finish: str                 # "stop", "length" or "cancelled"
    completion_tokens: int


class Failed(NamedTuple):
    error: BaseException


class QueueFull(Exception):
    pass


class ShuttingDown(Exception):
    pass


class Step(NamedTuple):
    text: str                   # text that became final with this token (may be "")
    tokens: int                 # completion tokens so far
    finish: str | None          # set on the last step


def _first_stop(text: str, stops: tuple[str, ...], since: int) -> int:
    """Index of the earliest stop string that ends after `since`, or -1."""
    hits = [i for s in stops if (i := text.find(s, max(0, since - len(s) + 1))) >= 0]
    return min(hits, default=-1)


def stream_text(engine: Engine, ids: list[int], s: Sampling) -> Iterator[Step]:
    """One Step per token the engine generates; the last one carries the finish reason.

    Text is decoded from all generated ids each step (a token can end inside a UTF-8
    character); a tail that could still become a stop string, or an incomplete
    character, is held back until it resolves. Closing the iterator stops the engine."""
    gen = engine.generate(ids, s.max_tokens, s.temperature, s.top_p, s.seed)
    out: list[int] = []
    text, sent = "", 0
    hold = max((len(x) for x in s.stop), default=1) - 1
    try:
        for tok in gen:
            if tok in engine.eos_ids:
                yield Step(text[sent:], len(out), "stop")
                return
            out.append(tok)
            text = engine.detokenize(out)
            cut = _first_stop(text, s.stop, sent)
            if cut >= 0:
                yield Step(text[sent:max(cut, sent)], len(out), "stop")
                return
            if len(out) >= s.max_tokens:
                yield Step(text[sent:], len(out), "length")
                return
            safe = len(text) - hold - (1 if text.endswith("\ufffd") else 0)
            piece = text[sent:safe] if safe > sent else ""
            sent = max(sent, safe)
            yield Step(piece, len(out), None)
        yield Step(text[sent:], len(out), "length")         # the engine stopped by itself
    finally:
        gen.close()


class Job:
    """One request's generation: its prompt, sampling, events and timings."""

    def __init__(self, ids: list[int], sampling: Sampling, loop: asyncio.AbstractEventLoop):
        self.ids, self.sampling, self._loop = ids, sampling, loop
        self.events: asyncio.Queue = asyncio.Queue()
        self._cancel = threading.Event()
        self.cancel_reason: str | None = None
        self.cancelled_at: int | None = None   # engine tokens generated when cancel came
        self.tokens = 0                        # engine tokens generated (written by the engine thread)
        self.finished = False
        self.arrived = time.perf_counter()
        self.first_token_at: float | None = None

    def cancel(self, reason: str) -> None:
        """Stop at the next token (or never start); a no-op once finished."""
        if self.finished or self._cancel.is_set():
            return
        self.cancel_reason, self.cancelled_at = reason, self.tokens
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def post(self, event) -> None:
        """From the engine thread: hand an event to the request's handler."""
        try:
            self._loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:          # the event loop is gone (forced exit): nobody listens
            self.cancel("shutdown")

    async def stream(self) -> AsyncIterator[Piece | Done | Failed]:
        while True:
            event = await self.events.get()
            yield event
            if not isinstance(event, Piece):
                return


class EngineWorker:
    """The queue, its dispatcher and the one engine thread."""

    def __init__(self, engine: Engine, max_queue: int, metrics: Metrics):
        self.engine, self.max_queue, self.metrics = engine, max_queue, metrics
        self._queue: asyncio.Queue[Job] | None = None
        self._dispatcher: asyncio.Task | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="babel-edge-engine")
        self._jobs: set[Job] = set()       # submitted and not finished
        # guards _jobs across the loop, the engine thread and signal handlers (which run on
        # the loop's thread, hence reentrant)
        self._jobs_lock = threading.RLock()
        self.running: Job | None = None
        self.accepting = False
        self._generations, self._generation_seconds = 0, 0.0
        metrics.queue_length.set_function(lambda: self.waiting)
        metrics.running.set_function(lambda: 1 if self.running else 0)

    @property
    def mean_generation_seconds(self) -> float:
        return self._generation_seconds / self._generations if self._generations else 0.0

    @property
    def waiting(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    def start(self) -> None:
        """Called in the server's event loop."""
        self._queue = asyncio.Queue(self.max_queue)
        self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())
        self.accepting = True

    def submit(self, ids: list[int], sampling: Sampling) -> Job:
        if not self.accepting:
            raise ShuttingDown()
        job = Job(ids, sampling, asyncio.get_running_loop())
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise QueueFull() from None
        with self._jobs_lock:
            self._jobs.add(job)
        return job

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = await self._queue.get()
            self.running = job
            try:
                await loop.run_in_executor(self._thread, self._run, job)
            finally:
                self.running = None

    def _run(self, job: Job) -> None:
        """On the engine thread: generate, posting text as it becomes final; the last event
        goes out after the bookkeeping, so a client that has its answer sees it counted."""
        started = time.perf_counter()
        self.metrics.queue_wait.observe(started - job.arrived)
        finish, n, error = "cancelled", 0, None
        try:
            if not job.cancelled:                # a job cancelled while queued never starts
                self.metrics.prompt_tokens.inc(len(job.ids))
                finish, n = self._generate(job)
        except Exception as e:  # noqa: BLE001 - an engine failure answers this request only
            log.exception("generation failed")
            finish, error = "error", e
        with self._jobs_lock:
            self._jobs.discard(job)
        if job.tokens:                           # it generated: its time tells what one costs
            self._generations += 1
            self._generation_seconds += time.perf_counter() - started
        self._record(job, finish, n)
        job.finished = True
        self.running = None
        job.post(Failed(error) if error is not None else Done(finish, n))

    def _generate(self, job: Job) -> tuple[str, int]:
        finish, n = "cancelled", 0
        steps = stream_text(self.engine, job.ids, job.sampling)
        try:
            for step in steps:
                job.tokens += 1
                if job.first_token_at is None:
                    job.first_token_at = time.perf_counter()
                    self.metrics.ttft.observe(job.first_token_at - job.arrived)
                if job.cancelled:          # at most this one token after the cancel
                    return "cancelled", n
                n = step.tokens
                if step.text:
                    job.post(Piece(step.text))
                finish = step.finish or finish
        finally:
            steps.close()                  # stops the engine's generator
        return finish, n

    def _record(self, job: Job, finish: str, n: int) -> None:
        m, now = self.metrics, time.perf_counter()
        m.completion_tokens.inc(n)
        m.latency.observe(now - job.arrived)
        if job.first_token_at is not None and n > 1:
            m.tokens_per_second.observe((n - 1) / max(now - job.first_token_at, 1e-9))
        if finish == "cancelled":
            m.cancelled.labels(job.cancel_reason or "unknown").inc()
            m.tokens_after_cancel.observe(job.tokens - (job.cancelled_at or 0))

    def cancel_all(self, reason: str) -> None:
        """Refuse new jobs and cancel every job there is."""
        self.accepting = False
        with self._jobs_lock:
            jobs = list(self._jobs)
        for job in jobs:
            job.cancel(reason)

    async def aclose(self) -> None:
        """Stop: cancel every job, wait for the engine thread to leave the engine."""
        self.cancel_all("shutdown")
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            try:
                await self._dispatcher
            except asyncio.CancelledError:
                pass
        await asyncio.get_running_loop().run_in_executor(None, self._thread.shutdown, True)
        self._drain()

    def close(self) -> None:
        """The same from outside the event loop (after a forced exit): idempotent."""
        self.cancel_all("shutdown")
        self._thread.shutdown(wait=True)
        self._drain()

    def _drain(self) -> None:
        # jobs still queued never run: their handlers (if any are left) hear why
        while self._queue is not None and not self._queue.empty():
            job = self._queue.get_nowait()
            with self._jobs_lock:
                self._jobs.discard(job)
            job.post(Failed(ShuttingDown()))
