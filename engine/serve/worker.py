"""The model's one thread: it loads the model, then runs queued jobs one at a time.

kp objects must not be used from several threads at once, so everything that touches the model
(loading it, generating, embedding) happens on this thread. The HTTP side submits a Job and reads
its events from an asyncio queue that the worker fills with loop.call_soon_threadsafe: that queue
is the thread-safe channel between the two.

  - the wait queue is bounded (--queue): a submission past the bound is refused at once (503 with
    Retry-After), so a burst never piles up unbounded work;
  - a job whose client went away is cancelled: the worker checks after every token and stops there
    (and skips a cancelled job still waiting);
  - each generation keeps the KV-cache prefix it shares with the previous one (Model.reuse_prefix,
    the chat's own rule), so a conversation or a common system prompt is not prefilled again;
  - with --memory STORE a chat job carries its conversation instead of ids: the window of
    engine/embed/memory.py fits it to the context here (evicting the oldest exchanges into the store,
    recalling the most similar ones in front of the new message), since that embeds on the model.
"""
from __future__ import annotations

import asyncio
import json
import logging
import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import VkharpError
from .errors import ApiError, busy, loading, server_error

log = logging.getLogger("vkharp.serve")
POLL_S = 0.25            # how often a waiting handler checks that its client is still connected


@dataclass
class Event:
    kind: str            # "start" (payload: prompt tokens reused from the cache), "step" (a Step),
    payload: Any = None  # "done" (payload: a call's result), "error" (an ApiError)


class Job:
    """One request's work: a generation (ids, settings) or a call fn(model) (embeddings)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, ids: list[int] | None = None, settings=None,
                 call: Callable | None = None, conversation=None, reserve: int = 0):
        self.loop, self.ids, self.settings, self.call = loop, ids, settings, call
        self.conversation, self.reserve = conversation, reserve   # --memory: (system, pairs, text), answer room
        self.queue: asyncio.Queue = asyncio.Queue()
        self.cancelled = threading.Event()

    def emit(self, kind: str, payload=None) -> None:
        """Called on the worker thread: hand an event to the request's event loop."""
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, Event(kind, payload))
        except RuntimeError:          # the loop is closed: nobody listens any more
            self.cancelled.set()

    def cancel(self) -> None:
        self.cancelled.set()

    async def events(self, request=None):
        """The job's events until "done" or "error"; cancels the job when the client disconnects
        (checked every POLL_S while nothing arrives) or when the reader stops early."""
        try:
            while True:
                try:
                    ev = await asyncio.wait_for(self.queue.get(), POLL_S)
                except asyncio.TimeoutError:
                    if request is not None and await request.is_disconnected():
                        return
                    continue
                yield ev
                if ev.kind in ("done", "error"):
                    return
        finally:
            self.cancel()             # a no-op once the job is done


class Worker:
    def __init__(self, load: Callable[[], Any], *, queue_size: int, on_fatal: Callable[[BaseException], None],
                 memory: str | None = None, prompt_log: str | None = None):
        self._load, self._on_fatal = load, on_fatal
        self._memory_path, self.window = memory, None
        self.prompt_log = prompt_log                # each fitted conversation's prompt, as JSON lines
        self.queue_size = queue_size
        self._jobs: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self.model = None
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.running: Job | None = None
        self._seconds = 2.0           # running mean of a job's duration (for Retry-After)
        self.counts = {"jobs": 0, "cancelled": 0, "tokens": 0, "prompt_tokens": 0, "cached_tokens": 0}
        self._thread = threading.Thread(target=self._main, name="vkharp-model", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def waiting(self) -> int:
        return self._jobs.qsize()

    def submit(self, job: Job) -> None:
        """Queue a job, or refuse it now: 503 while loading, 503 + Retry-After when the queue is full."""
        if not self.ready.is_set():
            raise loading()
        with self._lock:
            n = self._jobs.qsize()
            if n >= self.queue_size:
                retry = int(min(60, max(1, round(self._seconds * (n + 1)))))
                raise busy(retry, n)
            self._jobs.put(job)

    def stop(self, timeout: float | None = None) -> None:
        """Finish the jobs already queued, then end the thread (the server's shutdown, after it drained)."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout)

    # -- the thread ----------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self.model = self._load()
            if self._memory_path is not None:
                from ..embed.memory import ContextWindow, Memory
                self.window = ContextWindow(self.model, Memory(self.model, self._memory_path))
        except BaseException as exc:          # noqa: BLE001 (reported to the server, which exits with it)
            self.error = exc
            self._on_fatal(exc)
            return
        self.ready.set()
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if job.cancelled.is_set():
                self.counts["cancelled"] += 1
                continue
            self.running, t0 = job, time.perf_counter()
            self.counts["jobs"] += 1
            try:
                if job.call is not None:
                    job.emit("done", job.call(self.model))
                else:
                    self._generate(job)
            except ApiError as exc:
                job.emit("error", exc)
            except VkharpError as exc:
                self.model.reset()            # the cache's state after a failed pass is not trusted
                job.emit("error", server_error(str(exc)))
            except Exception as exc:          # noqa: BLE001 (a bug: logged; the server goes on)
                log.exception("generation failed")
                self.model.reset()
                job.emit("error", server_error(f"internal error: {type(exc).__name__}: {exc}"))
            finally:
                self.running = None
                self._seconds = 0.8 * self._seconds + 0.2 * (time.perf_counter() - t0)

    def _fit(self, job: Job) -> list[int]:
        """A --memory chat's prompt: the conversation fitted to the context (VkharpError: a 400)."""
        from .errors import bad_request
        try:
            turn = self.window.fit(*job.conversation, reserve=job.reserve)
        except VkharpError as exc:
            raise bad_request(str(exc), param="messages") from None
        status = turn.status(stored=True)
        if status:   # the chat's status line, on the server's stderr
            print(f"vkharp serve: memory: {status}", file=sys.stderr, flush=True)
        if self.prompt_log:
            with open(self.prompt_log, "a", encoding="utf-8") as f:
                f.write(json.dumps({"prompt": self.model.tokenizer.decode(turn.ids), "evicted": len(turn.evicted),
                                    "recalled": len(turn.recalled)}, ensure_ascii=False) + "\n")
        job.emit("prompt", len(turn.ids))
        return turn.ids

    def _generate(self, job: Job) -> None:
        m = self.model
        if job.conversation is not None:
            job.ids = self._fit(job)
        n = m.reuse_prefix(job.ids)
        self.counts["prompt_tokens"] += len(job.ids)
        self.counts["cached_tokens"] += n
        job.emit("start", n)
        steps = m.generate(job.ids[n:], job.settings)
        try:
            for step in steps:
                self.counts["tokens"] += step.token >= 0
                job.emit("step", step)
                if job.cancelled.is_set():    # the client left: stop before the next token
                    self.counts["cancelled"] += 1
                    break
        finally:
            steps.close()
        job.emit("done")
