"""A chat that outgrows its context (engine/embed/memory.py, engine/chat.py): the window keeps the
system prompt and the newest exchanges; with --memory the evicted ones are stored and the relevant
one comes back in front of a later question (checked in the prompt log); without, the chat goes on."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from checkpoints import make_hf_checkpoint  # noqa: E402
from engine.convert import convert  # noqa: E402
from engine.embed.memory import RECALL_HEADER, ContextWindow, Memory  # noqa: E402
from engine.embed.store import VectorStore  # noqa: E402
from engine.errors import VkharpError  # noqa: E402
from engine.model import Model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FACT = "Please remember this: my secret code word is PELICAN."
FILLER = ["Tell me about the ocean, its currents, its tides, its deep trenches, its coral reefs, and the many "
          "strange animals that live far below the surface where no light reaches.",
          "What do bees eat, how do they make honey from nectar, why do they dance in the hive, and how far "
          "will a worker bee fly from home to find flowers in the summer?",
          "Describe a high mountain in the middle of winter, with snow on the peaks, frozen lakes in the "
          "valleys, cold winds on the ridges and climbers resting in small huts at night.",
          "How do trains work, from the steam engines of the past to the electric high-speed trains of "
          "today that run on overhead wires between the large cities of Europe?"]
QUESTION = "What is my secret code word?"


def chat(tmp_path, *flags):
    log = tmp_path / f"prompts{len(list(tmp_path.iterdir()))}.jsonl"
    script = "\n".join([FACT, *FILLER, QUESTION]) + "\n"
    r = subprocess.run([sys.executable, "-m", "engine", "chat", "-c", "256", "-n", "8", "--temp", "0",
                        "--prompt-log", str(log), *flags], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                       input=script, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr
    prompts = [json.loads(line)["prompt"] for line in log.read_text(encoding="utf-8").splitlines()]
    assert len(prompts) == 6                                 # every turn was answered
    return prompts, r.stderr


def test_memory_recalls_the_first_exchange_past_the_context(tmp_path):
    store = tmp_path / "memory.db"
    prompts, err = chat(tmp_path, "--memory", str(store))
    assert "left the context, stored" in err and "recalled" in err, err
    last = prompts[-1]
    window = last.split("(Earlier in this conversation:")[0]
    assert "PELICAN" not in window                          # the first exchange left the window...
    assert "PELICAN" in last and last.rstrip().endswith("assistant")   # ...and came back before the question
    recall = last[last.index("(Earlier in this conversation:"):]
    assert recall.index("PELICAN") < recall.index(QUESTION)
    with VectorStore.open(store) as st:
        assert len(st) >= 1
        assert any(h.meta["user"] == FACT for h in st.get(range(1, len(st) + 1)))


def test_without_memory_the_window_slides_and_the_chat_goes_on(tmp_path):
    prompts, err = chat(tmp_path)
    assert "[window: " in err and "left the context, dropped" in err, err
    assert "the context is full: /undo" not in err
    assert "PELICAN" in prompts[0] and "PELICAN" not in prompts[-1]
    assert prompts[-1].startswith(prompts[0][:prompts[0].index(FACT)])    # the system prompt stays
    assert QUESTION in prompts[-1]


@pytest.fixture(scope="module")
def tiny(device, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny")
    convert(make_hf_checkpoint(tmp, "llama"), tmp / "converted", dtype="f32", progress=False)
    return Model(tmp / "converted", device, ctx=256)


def test_window_evicts_oldest_first_and_keeps_the_budgets(tiny, tmp_path):
    ex = [(f"question {i} about the fox", f"answer {i} about Paris") for i in range(12)]
    plain = ContextWindow(tiny).fit(None, ex, "next one", reserve=10)
    assert plain.kept == ex[len(plain.evicted):] and plain.evicted == ex[:len(plain.evicted)]
    assert plain.evicted and len(plain.ids) <= 256 - 10 and not plain.recalled
    mem = Memory(tiny, tmp_path / "m.db", pooling="mean", k=3)
    window = ContextWindow(tiny, mem, recall_tokens=100)
    turn = window.fit(None, ex, "question 0 about the fox", reserve=10)
    assert len(turn.evicted) > len(plain.evicted)            # room was kept for what comes back
    assert len(mem.store) == len(turn.evicted)
    assert turn.recalled and len(turn.ids) <= 256 - 10
    content = turn.messages[-1]["content"]
    assert content.startswith(RECALL_HEADER.split("{}")[0]) and content.endswith("question 0 about the fox")
    bare = window._render(None, turn.kept, "question 0 about the fox")[1]
    assert len(turn.ids) - len(bare) <= 100                  # the recall budget holds
    with pytest.raises(VkharpError, match="this message needs .* shorten it"):
        window.fit(None, [], "word " * 400, reserve=10)
    mem.close()
