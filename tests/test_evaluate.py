"""The evaluation tool: answer extraction, the Wilson interval, task loading and prompts, and the whole
pipeline on a tiny fixed subset of the default model (2 BIG-bench tasks x 2 items x 2 settings, 24
tokens): JSON lines records, resume without new work, answers independent of what ran before them,
the summary. It proves the pipeline, not the accuracy."""
import argparse
import json
import sys

import pytest

from engine import evaluate as ev
from engine.errors import VkharpError
from engine.model import load
from engine.settings import SAMPLER_FIELDS, GenerationSettings

TASKS = ["arithmetic_2_digit_addition", "object_counting"]
SETTINGS = ["greedy", "top-p0.9-T1.0-rollback"]


def _args(out, device, *extra):
    p = argparse.ArgumentParser()
    ev.add_arguments(p)
    args = p.parse_args(["--tasks", *TASKS, "-n", "2", "--settings", *SETTINGS, "--max-tokens", "24",
                         "-c", "512", "-o", str(out), *extra])
    args.device = device
    return args


@pytest.fixture(scope="module")
def first_run(device, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run.jsonl"
    assert ev.run(_args(out, device)) == 0
    return out


# -- extraction, statistics, settings --------------------------------------------------------------
@pytest.mark.parametrize("text, want", [
    ("The answer is 1,200.", "1200"),
    ("3 + 4 = 7\n#### 7", "7"),
    ("first 5, then 9", "9"),                       # no marker: the last number
    ("The answer is 7. Not 8.", "7"),              # after the marker: the first one
    ("The answer is three.", "3"),
    ("I have one dog and 4 cats", "4"),            # words only where there are no digits
    ("The answer is $-12.50", "-12.5"),
    ("The answer is −3", "-3"),
    ("The answer is 1.5.", "1.5"),
    ("no number here", None),
    ("The answer is", None),
])
def test_extract_number(text, want):
    assert ev.extract_number(text) == want


def test_extract_choice():
    opts = ("04/29/2021", "05/01/2021", "05/02/2021")
    assert ev.extract_choice("The answer is 05/01/2021. Not 04/29/2021.", opts) == "05/01/2021"
    assert ev.extract_choice("Maybe 05/01/2021, or 04/29/2021", opts) == "04/29/2021"
    assert ev.extract_choice("THE ANSWER IS (05/02/2021)", opts) == "05/02/2021"
    assert ev.extract_choice("no idea", opts) is None
    assert ev.extract_choice("the answer is apple pie", ("apple", "apple pie")) == "apple pie"


def test_score():
    num = ev.Item("t", "0", "q", "70", "number")
    assert ev.score(num, "So 12 + 58 = 70.\nThe answer is 70.") == ("70", True)
    assert ev.score(num, "The answer is 70.5") == ("70.5", False)
    choice = ev.Item("t", "0", "q", "05/01/2021", "choice", ("05/01/2021", "04/29/2021"))
    assert ev.score(choice, "The answer is 04/29/2021.") == ("04/29/2021", False)
    assert ev.score(choice, "") == (None, False)


@pytest.mark.parametrize("k, n, lo, hi", [
    (0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0),
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605),   # Newcombe (1998), Stat. Med. 17:857, method 3
])
def test_wilson_known_values(k, n, lo, hi):
    got = ev.wilson(k, n)
    assert got == pytest.approx((lo, hi), abs=5e-5)


def test_mcnemar_exact():
    assert ev.mcnemar(0, 0) == 1.0
    assert ev.mcnemar(5, 0) == pytest.approx(2 / 32)           # 2 · 0.5^5
    assert ev.mcnemar(1, 9) == pytest.approx(2 * 11 / 1024)    # 2 · (1 + 10) / 2^10
    assert ev.mcnemar(4, 4) == 1.0


def test_item_seeds_differ_between_items_and_are_stable():
    seeds = {ev.item_seed(0, t, str(i)) for t in TASKS for i in range(100)}
    assert len(seeds) == 200 and ev.item_seed(0, "a", "1") == ev.item_seed(0, "a", "1") != ev.item_seed(1, "a", "1")


def test_wilson_no_data_is_the_whole_range():
    assert ev.wilson(0, 0) == (0.0, 1.0)
    for n in (1, 7, 24, 263):                  # the ends are exact, so error bars are never negative
        assert ev.wilson(0, n)[0] == 0.0 and ev.wilson(n, n)[1] == 1.0


def test_plot_all_wrong_and_all_right(tmp_path):
    pytest.importorskip("matplotlib")
    recs = [dict(model="m", setting=s, task="t", item=str(i), correct=s == "b", tokens=3, hesitant=1, rollbacks=0,
                 seconds=0.5) for s in "ab" for i in range(24)]
    assert ev.plot(ev.summarize(recs), tmp_path / "p.png") and (tmp_path / "p.png").stat().st_size > 1000


def test_every_preset_states_every_sampling_field_and_is_valid():
    for name, fields in ev.SETTINGS.items():
        assert set(SAMPLER_FIELDS) - {"repeat_window"} <= set(fields), name
        GenerationSettings(**fields)
    with pytest.raises(VkharpError, match="unknown setting.*known: greedy"):
        ev.settings_for(["greedy", "lukewarm"], 16, 0)


# -- tasks and prompts -----------------------------------------------------------------------------
def test_bigbench_tasks_load_reproducibly():
    shots, items = ev.load_task("object_counting", 5, 0, 3)
    assert len(shots) == 3 and len(items) == 5
    assert all(i.kind == "number" and i.target.isdigit() for i in shots + items)
    assert shots[0].solution == f"The answer is {shots[0].target}."
    again = ev.load_task("object_counting", 3, 0, 0)[1]
    assert again == items[:3]                                   # fewer items: a prefix of more
    assert not {i.id for i in items} & {s.id for s in shots}    # shots are never items
    _, dates = ev.load_task("date_understanding", 4, 0, 0)
    for i in dates:
        assert i.kind == "choice" and i.target in i.options and "Options: " in i.question
    assert ev.load_task("object_counting", 5, 1, 3)[1] != items


def test_task_errors_name_the_fix(monkeypatch):
    with pytest.raises(VkharpError, match="unknown task 'nope'; known: gsm_symbolic"):
        ev.load_task("nope", 1, 0, 0)
    with pytest.raises(VkharpError, match="245 items, 9999 asked"):
        ev.load_task("object_counting", 9999, 0, 0)
    assert ev.parse_tasks(["object_counting:7", "date_understanding"], 3) == {"object_counting": 7,
                                                                            "date_understanding": 3}
    for spec, word in (("bogus:2", "unknown task 'bogus'"), ("object_counting:x", "integer"),
                       ("object_counting:0", "at least one item")):
        with pytest.raises(VkharpError, match=word):
            ev.parse_tasks([spec], 3)
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)      # as if not installed
    with pytest.raises(VkharpError, match=r"pip install reasoning-gym==0\.1\.25"):
        ev.load_task("gsm_symbolic", 2, 0, 0)


def test_gsm_symbolic_items_are_seeded():
    pytest.importorskip("reasoning_gym")
    shots, items = ev.load_task("gsm_symbolic", 3, 7, 2)
    assert [i.id for i in items] == ["7:0", "7:1", "7:2"] and len(shots) == 2
    assert ev.load_task("gsm_symbolic", 2, 7, 0)[1] == items[:2]
    for i in shots + items:
        assert i.kind == "number" and ev._to_float(i.target) is not None
        assert i.solution.endswith(f"The answer is {i.target}.") and "####" not in i.solution
        assert ev.score(i, i.solution) == (ev.extract_number(i.target), True)


class _Tok:
    chat_template = "x"

    def apply_chat_template(self, messages):
        return "|".join(f"{m['role']}:{m['content']}" for m in messages)

    def encode(self, text, add_bos=None):
        return [text, add_bos]


def test_prompts_chat_and_plain():
    shots, items = ev.load_task("arithmetic_2_digit_addition", 1, 0, 2)
    text, bos = ev.prompt_ids(_Tok(), shots, items[0], chat=True)
    assert bos is False and text.count("user:") == 3 and text.count("assistant:The answer is") == 2
    text, bos = ev.prompt_ids(_Tok(), shots, items[0], chat=False)
    assert bos is None and text.endswith(f"Question: {items[0].question}\nAnswer:")
    assert text.count("Answer: The answer is") == 2


# -- the pipeline on the default model -------------------------------------------------------------
def test_records_of_a_tiny_run(first_run):
    records = [json.loads(line) for line in first_run.read_text().splitlines()]
    assert len(records) == 8 and len({r["key"] for r in records}) == 8
    assert {(r["task"], r["setting"]) for r in records} == {(t, s) for t in TASKS for s in SETTINGS}
    items = {(t, i.id): i for t in TASKS for i in ev.load_task(t, 2, 0, 3)[1]}
    for r in records:
        assert r["model"] == "SmolLM2-135M-Instruct" and r["chat"] is True
        assert 1 <= r["tokens"] <= 24 and r["finish"] in ("stop", "length")
        assert 0 <= r["hesitant"] <= r["tokens"] and r["reframed"] == 0 and r["rollbacks"] >= 0
        assert r["seconds"] > 0 and r["prompt_tokens"] > 50
        assert r["seed"] == ev.item_seed(0, r["task"], r["item"])     # per item, the same for every setting
        assert (r["extracted"], r["correct"]) == ev.score(items[(r["task"], r["item"])], r["text"])
    summary = first_run.with_suffix(".md").read_text()
    assert "| greedy | " in summary and "| top-p0.9-T1.0-rollback | " in summary and "[95 % CI]" in summary
    rows = ev.summarize(records)
    assert [r["n"] for r in rows] == [4, 4] and rows[0]["wins"] == rows[0]["losses"] == 0
    try:
        import matplotlib  # noqa: F401
        assert first_run.with_suffix(".png").stat().st_size > 1000
    except ImportError:
        pass


def test_resume_does_no_new_work(first_run, device, monkeypatch):
    before = first_run.read_text()
    with pytest.raises(VkharpError, match="--resume"):
        ev.run(_args(first_run, device))

    def no_work(*a, **k):
        raise AssertionError("a resumed run generated an answer it already had")
    monkeypatch.setattr(ev, "run_one", no_work)
    assert ev.run(_args(first_run, device, "--resume")) == 0
    assert first_run.read_text() == before


def test_an_answer_does_not_depend_on_what_ran_before(first_run, device, tmp_path):
    """The second item of a task, run alone on a fresh model, gives the record the full run gave
    after the first item (same key, same text and statistics): resumed runs match uninterrupted ones."""
    records = [json.loads(line) for line in first_run.read_text().splitlines()]
    model = load(None, device, ctx=512)
    shots, items = ev.load_task("object_counting", 2, 0, 3)
    settings = ev.settings_for(SETTINGS, 24, 0)
    alone = ev.evaluate(model, "SmolLM2-135M-Instruct", {"object_counting": (shots, items[1:])}, settings,
                        tmp_path / "alone.jsonl", chat=True, log=lambda m: None)
    full = {r["key"]: r for r in records}
    for r in alone:
        want = full[r["key"]]
        for field in ("text", "tokens", "hesitant", "rollbacks", "correct"):
            assert r[field] == want[field], field
