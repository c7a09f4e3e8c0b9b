"""`vkharp serve` end to end: the real server in a subprocess with the default model, driven by the
official `openai` client (and raw HTTP where the client cannot send the bad input)."""
import json
import math
import subprocess
import sys
import threading

import httpx
import openai
import pytest

from served import ROOT, Served

KEY = "test-key-1"
AUTH = {"Authorization": f"Bearer {KEY}"}
CTX = 512
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def server():
    s = Served("-c", str(CTX), "--api-key", KEY, "--queue", "16")
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=600)


def greedy_chat(client, messages, n=8, **kw):
    return client.chat.completions.create(model="any", messages=messages, max_tokens=n, temperature=0, **kw)


def test_health_and_models(server, client):
    assert set(server.health_seen) <= {503, 200} and server.health_seen[-1] == 200
    h = httpx.get(server.url + "/health").json()                 # open without a key
    assert h["status"] == "ok"
    models = client.models.list().data
    assert [m.id for m in models] == ["SmolLM2-135M-Instruct"] and models[0].model_extra["meta"]["n_ctx"] == CTX


def test_chat_answers_as_the_cli_does(client):
    r = greedy_chat(client, QUESTION)
    text = r.choices[0].message.content
    assert r.object == "chat.completion" and r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 8 and r.usage.prompt_tokens > 10
    cli = subprocess.run([sys.executable, "-m", "engine", "generate", "--chat", "--temp", "0", "-n", "8", "-c", str(CTX),
                          "-p", QUESTION[0]["content"]], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout == text + "\n"
    assert "Paris" in text


def test_chat_stream_chunks(client):
    r = greedy_chat(client, QUESTION)
    whole = r.choices[0].message.content
    chunks = list(greedy_chat(client, QUESTION, stream=True, stream_options={"include_usage": True}))
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:] if c.choices)
    *body, last, usage = chunks
    assert last.choices[0].finish_reason == r.choices[0].finish_reason and not last.choices[0].delta.content
    assert all(c.choices[0].finish_reason is None for c in body)
    assert usage.choices == [] and usage.usage.completion_tokens == r.usage.completion_tokens
    assert "".join(c.choices[0].delta.content or "" for c in body) == whole


def test_raw_stream_ends_with_done(server):
    with httpx.stream("POST", server.url + "/v1/completions", headers=AUTH, timeout=600,
                      json={"prompt": "Hello", "max_tokens": 3, "temperature": 0, "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    events = text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""] and all(e.startswith("data: ") for e in events[:-1])


def test_completions_whole_and_streamed(client):
    r = client.completions.create(model="any", prompt="The capital of France is", max_tokens=4, temperature=0)
    assert r.object == "text_completion" and r.choices[0].text.startswith(" Paris")
    streamed = client.completions.create(model="any", prompt="The capital of France is", max_tokens=4, temperature=0,
                                         stream=True)
    parts = list(streamed)
    assert "".join(c.choices[0].text for c in parts) == r.choices[0].text
    assert parts[-1].choices[0].finish_reason == "length"
    ids = client.completions.create(model="any", prompt=[504, 3575, 282, 4649, 314], max_tokens=2, temperature=0)
    assert ids.usage.prompt_tokens == 5


def test_seed_repeats_and_another_seed_differs(client):
    def run(seed):
        return client.completions.create(model="any", prompt="Once upon a time", max_tokens=16, temperature=0.9,
                                         seed=seed).choices[0].text
    first = run(7)
    assert run(7) == first
    assert run(8) != first


def test_prefix_of_the_previous_request_is_reused(client):
    greedy_chat(client, QUESTION, n=2)
    again = greedy_chat(client, QUESTION, n=2)
    assert again.usage.prompt_tokens_details.cached_tokens == again.usage.prompt_tokens - 1
    longer = greedy_chat(client, QUESTION + [{"role": "assistant", "content": "Paris."},
                                             {"role": "user", "content": "And of Italy?"}], n=2)
    assert longer.usage.prompt_tokens_details.cached_tokens >= again.usage.prompt_tokens - 1


def test_harp_and_token_data_through_extra_body(client):
    theta = 0.5
    r = client.chat.completions.create(model="any", messages=QUESTION, max_tokens=12, temperature=0.8, seed=3,
                                       logprobs=True, top_logprobs=2,
                                       extra_body={"harp": "cached", "harp_theta": theta, "rollback": True,
                                                   "top_k": 20, "min_p": 0.02, "token_data": True})
    data = r.choices[0].model_extra["token_data"]
    assert len(data) == r.usage.completion_tokens
    for d in data:
        assert d["reframed"] == (d["entropy"] > theta), d
        assert 0 < d["p"] <= 1 and d["logprob"] <= 0 and isinstance(d["rollbacks"], list)
    assert any(d["reframed"] for d in data)           # a 135M model hesitates above half a bit somewhere
    lp = r.choices[0].logprobs.content
    text_tokens = [d for d in data if d["text"]]
    assert [e.logprob for e in lp] == [d["logprob"] for d in text_tokens]
    for e in lp:        # the most likely token first, then the sampled one when it is another
        assert 1 <= len(e.top_logprobs) <= 2 and e.top_logprobs[0].logprob >= e.logprob
        assert (len(e.top_logprobs) == 1) == (e.top_logprobs[0].token == e.token)
        assert e.top_logprobs[-1].token == e.token and e.top_logprobs[-1].logprob == e.logprob
    greedy = greedy_chat(client, QUESTION, logprobs=True, top_logprobs=5).choices[0].logprobs.content
    assert all([t.token for t in e.top_logprobs] == [e.token] for e in greedy)     # greedy draws the top one
    chunks = list(client.chat.completions.create(model="any", messages=QUESTION, max_tokens=6, temperature=0,
                                                 stream=True, extra_body={"token_data": True}))
    streamed = [d for c in chunks if c.choices for d in c.choices[0].model_extra.get("token_data") or []]
    assert len(streamed) == 6 and all(math.isfinite(d["entropy"]) for d in streamed)


PROMPTS = ["Name a colour.", "Count to three.", "What is 2+2?", "Say hello.", "Name a fruit.", "What is water?",
           "Name a planet.", "Tell me a word."]


def test_eight_concurrent_clients_get_the_serial_answers(client, server):
    def ask(p):
        return greedy_chat(client, [{"role": "user", "content": p}], n=6).choices[0].message.content
    serial = [ask(p) for p in PROMPTS]
    got = [None] * len(PROMPTS)

    def run(i):
        got[i] = ask(PROMPTS[i])
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == serial


def test_a_client_that_leaves_mid_stream_stops_its_generation(server, client):
    before = server.metrics(AUTH)
    with httpx.stream("POST", server.url + "/v1/completions", headers=AUTH, timeout=600,
                      json={"prompt": "Once upon a time", "max_tokens": 300, "stream": True}) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(4)]         # two events and their blank lines
    assert got[0].startswith("data: ")
    for _ in range(600):
        m = server.metrics(AUTH)
        if m["requests_processing"] == 0:
            break
    assert m["requests_cancelled_total"] == before["requests_cancelled_total"] + 1
    assert m["tokens_predicted_total"] - before["tokens_predicted_total"] < 300
    assert "Paris" in greedy_chat(client, QUESTION).choices[0].message.content     # and it still serves


def post(server, path, body: bytes, headers=AUTH):
    return httpx.post(server.url + path, content=body, headers={"Content-Type": "application/json", **headers},
                      timeout=600)


def test_bad_inputs_get_openai_errors_and_the_server_goes_on(server, client):
    def error(r, status=400):
        assert r.status_code == status, r.text
        e = r.json()["error"]
        assert set(e) == {"message", "type", "param", "code"} and e["message"]
        return e
    assert error(post(server, "/v1/chat/completions", b'{"messages": [')) ["code"] == "invalid_json"
    assert error(post(server, "/v1/completions", b'[1, 2]'))["code"] == "invalid_json"
    assert error(post(server, "/v1/completions", json.dumps({"prompt": "x", "max_tokens": "4"}).encode()))["param"] \
        == "max_tokens"
    assert error(post(server, "/v1/completions", b'{"prompt": "x", "temperature": NaN}'))["code"] == "invalid_json"
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model="any", messages=QUESTION, temperature="hot")
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model="any", messages=QUESTION, temperature=-1)
    with pytest.raises(openai.BadRequestError, match="'foo'"):
        client.chat.completions.create(model="any", messages=QUESTION, extra_body={"foo": 1})
    with pytest.raises(openai.BadRequestError, match="n=2"):
        client.chat.completions.create(model="any", messages=QUESTION, n=2)
    with pytest.raises(openai.BadRequestError, match="presence_penalty"):
        client.chat.completions.create(model="any", messages=QUESTION, presence_penalty=0.5)
    with pytest.raises(openai.BadRequestError, match="harp"):
        client.chat.completions.create(model="any", messages=QUESTION, extra_body={"harp": "sometimes"})
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="any", messages=[{"role": "user", "content": "word " * 700}])
    assert exc.value.code == "context_length_exceeded" and str(CTX) in exc.value.message
    r = post(server, "/v1/completions", json.dumps({"prompt": "x" * (2 << 20)}).encode())
    assert error(r, 413)["code"] == "request_too_large"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()
    assert error(post(server, "/v1/completions", b'{"prompt": "x"}', headers={}), 401)["code"] == "invalid_api_key"
    assert error(httpx.get(server.url + "/v1/nothing", headers=AUTH), 404)
    assert server.proc.poll() is None
    assert "Paris" in greedy_chat(client, QUESTION).choices[0].message.content


def test_tokenize_and_detokenize(server):
    toks = post(server, "/tokenize", b'{"content": "Hello world", "with_pieces": true}').json()["tokens"]
    assert "".join(t["piece"] for t in toks) == "Hello world"
    ids = [t["id"] for t in toks]
    assert post(server, "/tokenize", b'{"content": "Hello world"}').json() == {"tokens": ids}
    assert post(server, "/detokenize", json.dumps({"tokens": ids}).encode()).json() == {"content": "Hello world"}
    assert post(server, "/detokenize", b'{"tokens": [99999999]}').status_code == 400


def test_embeddings_are_embed_texts_vectors(server, client):
    import numpy as np
    texts = ["The cat sat on the mat.", "Paris is the capital of France."]
    r = client.embeddings.create(model="any", input=texts)          # the client asks for base64
    got = np.array([d.embedding for d in r.data])
    cli = subprocess.run([sys.executable, "-m", "engine", "embed", "-c", str(CTX), *texts], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr
    want = np.array([json.loads(line)["vector"] for line in cli.stdout.splitlines()])
    assert got.shape == want.shape == (2, 576)
    assert np.abs(got - want).max() < 1e-6                            # the CLI rounds to 7 decimals
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)
    floats = post(server, "/v1/embeddings", json.dumps({"input": texts[1], "encoding_format": "float",
                                                        "pooling": "prompteol"}).encode()).json()
    assert np.abs(np.array(floats["data"][0]["embedding"]) - got[1]).max() < 1e-7
    assert floats["usage"]["prompt_tokens"] > 0
    for bad, param in (({"input": ["a", ""]}, "input"), ({"input": [1, 2, 3]}, "input"),
                       ({"input": "a", "dimensions": 3}, "dimensions"), ({"input": "a", "pooling": "max"}, "pooling")):
        r = post(server, "/v1/embeddings", json.dumps(bad).encode())
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    greedy_chat(client, QUESTION, n=2)
    client.embeddings.create(model="any", input="something else")  # its own KV cache: the chat's prefix stays
    again = greedy_chat(client, QUESTION, n=2)
    assert again.usage.prompt_tokens_details.cached_tokens == again.usage.prompt_tokens - 1
