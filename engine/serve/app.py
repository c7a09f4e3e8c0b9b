"""The HTTP application: OpenAI's routes (chat, completions, embeddings, models), llama-server's health and
tokenize/detokenize, every error as an OpenAI error object.

Handlers validate and tokenise a request before it queues (a bad one costs no model time and is
answered at once), then hand it to the worker (engine/serve/worker.py) and either gather its
steps into one answer or stream them as SSE chunks.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse

from ..errors import VkharpError
from ..settings import GenerationSettings
from . import sse
from .answers import Answer
from .errors import ApiError, bad_request, loading
from .guards import ApiKeyCheck, read_body
from .prompts import chat_ids, check_fits, completion_ids, conversation, embedding_texts
from .protocol import (ChatRequest, CompletionRequest, DetokenizeRequest, EmbeddingRequest, TokenizeRequest, parse,
                       refuse_unhonourable, settings_for)
from .worker import Job, Worker

log = logging.getLogger("vkharp.serve")


@dataclass(frozen=True)
class ServeOptions:
    model_id: str                       # what /v1/models lists and every answer names
    defaults: GenerationSettings        # the server's generation flags; a request changes them for itself
    max_body: int                       # bytes
    api_key: str | None = None
    drain_s: float = 60.0               # how long shutdown waits for the worker after the connections closed
    memory: bool = False                # --memory: chats that outgrow the context evict into a store


def _embed(model, texts: list[str], pooling: str | None):
    """On the worker thread. embed_texts checks every text (empty, longer than the context) and the
    pooling before any pass, so its errors are the request's: a 400."""
    from ..embed import embed_texts
    try:
        return embed_texts(model, texts, pooling)
    except VkharpError as exc:
        raise bad_request(str(exc), param="input") from None


def build_app(worker: Worker, opts: ServeOptions) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app):
        worker.start()
        yield
        await run_in_threadpool(worker.stop, opts.drain_s)

    app = FastAPI(title="vkharp", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    started = int(time.time())

    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return exc.response()

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):       # 404, 405 from the router
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", type=kind).response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc):
        return bad_request(str(exc)).response()

    @app.exception_handler(Exception)
    async def unexpected(request, exc: Exception):          # a bug: logged, answered, the server goes on
        log.exception("request failed")
        return ApiError(500, f"internal error: {type(exc).__name__}: {exc}", type="server_error").response()

    def model():
        if not worker.ready.is_set():
            raise loading()
        return worker.model

    # -- health and models -----------------------------------------------------------------------
    @app.get("/health")
    @app.get("/v1/health")
    async def health():
        if not worker.ready.is_set():
            return loading().response()
        return {"status": "ok", "waiting": worker.waiting, "running": worker.running is not None}

    @app.get("/metrics")
    async def metrics():
        """llama-server's names where it has them, in Prometheus' text format."""
        c = worker.counts
        rows = [("requests_processing", "gauge", int(worker.running is not None), "requests generating now"),
                ("requests_deferred", "gauge", worker.waiting, "requests waiting in the queue"),
                ("requests_total", "counter", c["jobs"], "requests the model worked on"),
                ("requests_cancelled_total", "counter", c["cancelled"], "requests stopped because the client left"),
                ("tokens_predicted_total", "counter", c["tokens"], "tokens generated"),
                ("prompt_tokens_total", "counter", c["prompt_tokens"], "prompt tokens of the requests"),
                ("prompt_tokens_cached_total", "counter", c["cached_tokens"], "prompt tokens reused from the KV cache")]
        text = "".join(f"# HELP vkharp:{n} {h}\n# TYPE vkharp:{n} {t}\nvkharp:{n} {v}\n" for n, t, v, h in rows)
        return PlainTextResponse(text)

    @app.get("/v1/models")
    async def models():
        entry = {"id": opts.model_id, "object": "model", "created": started, "owned_by": "vkharp"}
        if worker.ready.is_set():
            m = worker.model
            entry["meta"] = {"n_ctx": m.ctx, "n_vocab": m.cfg.vocab_size, "architecture": m.cfg.model_type}
        return {"object": "list", "data": [entry]}

    # -- generation ------------------------------------------------------------------------------
    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        m = model()
        req = parse(ChatRequest, await read_body(request, opts.max_body))
        refuse_unhonourable(req)
        conv = conversation(req) if opts.memory else None
        ids = [] if conv else await run_in_threadpool(chat_ids, req, m.tokenizer)   # a template may take a while
        if not conv:
            check_fits(ids, m.ctx, "messages")
        answer = Answer(chat=True, model_id=opts.model_id, tokenizer=m.tokenizer, prompt_tokens=len(ids),
                        logprobs=(req.top_logprobs or 0) if req.logprobs else None, token_data=req.token_data)
        return await _answer(request, req, ids, m, answer, conv)

    @app.post("/v1/completions")
    async def completions(request: Request):
        m = model()
        req = parse(CompletionRequest, await read_body(request, opts.max_body))
        refuse_unhonourable(req)
        ids = await run_in_threadpool(completion_ids, req, m.tokenizer, m.cfg.vocab_size)
        check_fits(ids, m.ctx, "prompt")
        answer = Answer(chat=False, model_id=opts.model_id, tokenizer=m.tokenizer, prompt_tokens=len(ids),
                        logprobs=req.logprobs, token_data=req.token_data)
        return await _answer(request, req, ids, m, answer)

    async def _answer(request, req, ids, m, answer: Answer, conv=None):
        if conv:   # the window keeps the answer's room free, as the chat does: max_tokens, up to ctx/4
            wanted = getattr(req, "max_completion_tokens", None) or req.max_tokens or opts.defaults.max_tokens
            reserve = max(1, min(wanted, m.ctx // 4))
            job = Job(asyncio.get_running_loop(), settings=settings_for(req, opts.defaults, reserve),
                      conversation=conv, reserve=reserve)
        else:
            job = Job(asyncio.get_running_loop(), ids=ids, settings=settings_for(req, opts.defaults, m.ctx - len(ids)))
        worker.submit(job)                       # 503 now when the queue is full
        if not req.stream:
            async for ev in job.events(request):
                answer.take(ev)
                if ev.kind == "error":
                    raise ev.payload
            return JSONResponse(answer.response())
        usage = req.stream_options is not None and req.stream_options.include_usage
        return StreamingResponse(_stream(request, job, answer, usage), media_type=sse.MEDIA_TYPE,
                                 headers=sse.HEADERS)

    async def _stream(request, job: Job, answer: Answer, usage: bool):
        try:
            first = answer.first_chunk()
            if first is not None:
                yield sse.event(first)
            async for ev in job.events(request):
                if answer.take(ev):
                    chunk = answer.chunk(ev.payload)
                    if chunk is not None:
                        yield sse.event(chunk)
                elif ev.kind == "error":
                    yield sse.event(ev.payload.body())
                    yield sse.DONE
                elif ev.kind == "done":
                    yield sse.event(answer.last_chunk())
                    if usage:
                        yield sse.event(answer.usage_chunk())
                    yield sse.DONE
        finally:
            job.cancel()                         # the client left (or the stream ended): stop generating

    # -- embeddings ------------------------------------------------------------------------------
    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        """Sentence vectors from engine.embed.embed_texts (float32, L2-normalised), on the worker."""
        m = model()
        req = parse(EmbeddingRequest, await read_body(request, opts.max_body))
        texts = embedding_texts(req)
        from ..embed import POOLINGS
        if req.pooling is not None and req.pooling not in POOLINGS:
            raise bad_request(f"unknown pooling {req.pooling!r}: choose one of {', '.join(POOLINGS)}", param="pooling")
        width = m.cfg.hidden_size
        if req.dimensions is not None and req.dimensions != width:
            raise bad_request(f"dimensions={req.dimensions}: this model's vectors have {width} (they are not "
                              f"truncated)", param="dimensions")
        tokens = sum(len(m.tokenizer.encode(t)) for t in texts)
        job = Job(asyncio.get_running_loop(), call=lambda model: _embed(model, texts, req.pooling))
        worker.submit(job)
        vectors = None
        async for ev in job.events(request):
            if ev.kind == "error":
                raise ev.payload
            if ev.kind == "done":
                vectors = ev.payload
        if vectors is None:                      # the client left
            return JSONResponse({})
        if req.encoding_format == "base64":      # little-endian float32, as OpenAI's
            rows = [base64.b64encode(v.astype("<f4").tobytes()).decode() for v in vectors]
        else:
            rows = [v.tolist() for v in vectors]
        return {"object": "list", "model": opts.model_id,
                "data": [{"object": "embedding", "index": i, "embedding": r} for i, r in enumerate(rows)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    # -- tokenizer -------------------------------------------------------------------------------
    @app.post("/tokenize")
    async def tokenize(request: Request):
        m = model()
        req = parse(TokenizeRequest, await read_body(request, opts.max_body))
        if not req.parse_special:
            raise bad_request("parse_special=false is not supported: the tokenizer always reads special tokens",
                              param="parse_special")
        ids = m.tokenizer.encode(req.content, add_bos=req.add_special)
        if req.with_pieces:
            return {"tokens": [{"id": i, "piece": m.tokenizer.decode([i])} for i in ids]}
        return {"tokens": ids}

    @app.post("/detokenize")
    async def detokenize(request: Request):
        m = model()
        req = parse(DetokenizeRequest, await read_body(request, opts.max_body))
        bad = [t for t in req.tokens if not 0 <= t < m.cfg.vocab_size]
        if bad:
            raise bad_request(f"token id {bad[0]} is outside the vocabulary [0, {m.cfg.vocab_size})", param="tokens")
        return {"content": m.tokenizer.decode(req.tokens)}

    if opts.api_key:
        app.add_middleware(ApiKeyCheck, key=opts.api_key)
    return app
