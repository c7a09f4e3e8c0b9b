"""The terminal chat: `vkharp chat [MODEL]`.

Each turn renders the whole conversation with the model's chat template and feeds only the tokens
the KV cache does not already hold (common prefix, then a position move), so a long conversation
costs one prefill of the new message, not of the whole history. /undo moves the cache back to
where the exchange began (remembered per exchange), again without recomputing anything.

When the next turn would not fit the context, the oldest exchanges leave it (engine/embed/memory.py):
with --memory STORE they go into a vector store, and each new message gets the most similar ones back
in front of it; without, the window just slides (the system prompt stays). A status line on stderr
says what left and what came back. --prompt-log FILE (or $VKHARP_PROMPT_LOG) appends every rendered
prompt to FILE as a JSON line.

Ctrl-C during an answer stops it; the partial answer stays in the conversation (the model can be
asked to go on), unless nothing was produced, in which case the turn is dropped. Ctrl-C at the
prompt gives a new prompt line; Ctrl-D or /exit quits. When stdin is not a terminal, lines are read
until EOF with no prompt or banner, so `echo hi | vkharp chat` works in scripts; there an error
(a template that fails, input that is not UTF-8) ends the chat with exit status 2, while at a
terminal it is shown and the chat goes on.

--show-uncertainty colours each token by its entropy (green < 1 bit, yellow < 3, red above),
underlines HARP-reframed tokens and shows rolled-back text dim and struck through before its
replacement; only when colours are on (a terminal without NO_COLOR, or --color always).
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import text_input
from .errors import VkharpError
from .settings import GenerationSettings

HELP = """commands:
  /set NAME VALUE  change a setting (/show lists them; lists like stop take a|b|c)
  /show            current settings (* = changed from the default)
  /system [TEXT]   set the system prompt (no TEXT: the template's default)
  /undo            remove the last exchange (the KV cache moves back, nothing is recomputed)
  /reset           clear the conversation and the KV cache (the system prompt stays)
  /stats           the last answer's and the session's figures
  /fix TEXT        the last answer should have been TEXT: train the adapter until it says so, then answer
                   again (PREFIX|TEXT: keep the answer up to PREFIX and continue with TEXT)
  /fixes           the corrections in force, and whether each still holds
  /unfix           drop the adapter: the base model again (its saved file stays)
  /help            this list
  /exit            quit (also Ctrl-D)
Ctrl-C stops an answer (the partial answer is kept)."""

RESET, DIM_STRIKE, UNDERLINE = "\x1b[0m", "2;9", "4"
GREEN, YELLOW, RED = "32", "33", "31"
LEGEND = (f"entropy: \x1b[{GREEN}mgreen < 1 bit{RESET}, \x1b[{YELLOW}myellow < 3 bits{RESET}, "
          f"\x1b[{RED}mred ≥ 3 bits{RESET}; \x1b[{UNDERLINE}munderlined{RESET}: HARP reframed; "
          f"\x1b[{DIM_STRIKE}mstruck{RESET}: rolled back")


@dataclass
class AnswerStats:
    """Figures of one answer, fed step by step (also used by `vkharp generate`)."""
    fed: int = 0              # prompt tokens prefilled for this answer
    cached: int = 0           # prompt tokens reused from the KV cache
    tokens: int = 0           # tokens sampled (an end-of-sequence token included)
    prefill_s: float = 0.0    # the first step: the prompt's feed and the first draw
    decode_s: float = 0.0     # from the first step to the last
    harp: int = 0             # steps HARP reframed
    rollbacks: int = 0
    finish: str | None = None
    interrupted: bool = False
    _t_first: float = field(default=0.0, repr=False)

    def add(self, step) -> None:
        now = time.perf_counter()
        if step.token >= 0:
            if self.tokens == 0:
                self.prefill_s, self._t_first = step.ms / 1e3, now
            else:
                self.decode_s = now - self._t_first
            self.tokens += 1
        self.harp += step.reframed
        self.rollbacks += len(step.rollbacks)
        self.finish = step.finish or self.finish

    def line(self) -> str:
        prefill = self.fed / self.prefill_s if self.prefill_s else 0.0
        decode = (self.tokens - 1) / self.decode_s if self.tokens > 1 and self.decode_s else 0.0
        end = "interrupted" if self.interrupted else "context full" if self.finish == "context" else self.finish or "-"
        return (f"{self.tokens} tokens ({end}); prompt {self.fed} new + {self.cached} cached, "
                f"prefill {prefill:.1f} tok/s; decode {decode:.1f} tok/s; HARP {self.harp}; "
                f"rollbacks {self.rollbacks}")


def use_color(mode: str, stream) -> bool:
    """--color: always, never, or auto (a terminal, and NO_COLOR unset or empty)."""
    if mode == "auto":
        return stream.isatty() and not os.environ.get("NO_COLOR")
    return mode == "always"


class Chat:
    def __init__(self, model, settings: GenerationSettings, *, out=None, err=None, color: bool = False,
                 show_uncertainty: bool = False, memory=None, prompt_log: str | None = None, tuner=None,
                 fix_steps: int = 60):
        from .embed.memory import ContextWindow
        self.model, self.settings = model, settings
        self.window = ContextWindow(model, memory)   # what stays in the context, leaves and comes back
        self.prompt_log = prompt_log                 # a file each rendered prompt is appended to (JSON lines)
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.color, self.uncertainty = color, show_uncertainty
        self.system: str | None = None
        self.messages: list[dict] = []      # user and assistant messages, in pairs
        self.starts: list[int] = []         # KV position each exchange began at (/undo goes back there)
        self.last: AnswerStats | None = None
        self.session = AnswerStats()        # totals (tokens, fed, cached, harp, rollbacks)
        self.answers = 0
        self.tuner = tuner                  # engine/tune/fix.py: the corrections in force (made on the first /fix)
        self.fix_steps = fix_steps
        self.last_prompt_ids: list[int] | None = None   # what the model saw for the last answer (/fix trains on it)

    # -- one exchange ----------------------------------------------------------------------------
    def ask(self, text: str) -> None:
        m, tok = self.model, self.model.tokenizer
        pairs = [(self.messages[i]["content"], self.messages[i + 1]["content"]) for i in range(0, len(self.messages), 2)]
        turn = self.window.fit(self.system, pairs, text, reserve=self._reserve())
        ids = turn.ids
        if not ids:
            raise VkharpError(f"the chat template rendered nothing for this conversation, so there is nothing to "
                              f"answer; fix or replace the template in {tok.template_source}")
        if turn.evicted:       # the oldest exchanges left: their cache positions are recomputed below
            del self.messages[:2 * len(turn.evicted)]
            self.starts = [0] * len(self.starts[len(turn.evicted):])
        status = turn.status(stored=self.window.memory is not None)
        if status:
            self._note(f"[{'memory' if self.window.memory is not None else 'window'}: {status}]")
        self._log_prompt(tok.decode(ids))
        self.last_prompt_ids = list(ids)
        n = m.reuse_prefix(ids)
        st = AnswerStats(fed=len(ids) - n, cached=n)
        pieces = []
        try:
            for step in m.generate(ids[n:], self.settings):
                self._show(step)
                pieces.append(step.text)
                st.add(step)
        except KeyboardInterrupt:
            st.interrupted = True
        self.out.write("\n")
        self.out.flush()
        answer = "".join(pieces)
        if answer:
            self.messages += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
            self.starts.append(n)
        else:
            m.truncate(min(n, m.kv.pos))
            self._note("(no text: the turn is dropped)")
        self.last, self.answers = st, self.answers + 1
        for k in ("fed", "cached", "tokens", "harp", "rollbacks"):
            setattr(self.session, k, getattr(self.session, k) + getattr(st, k))
        self._note(f"[{st.line()}]")
        if st.finish == "context":
            self._note("the context is full: the next turn lets the oldest exchanges go (-n shortens answers)")

    def _reserve(self) -> int:
        """Tokens kept free for the answer: max_tokens, up to a quarter of the context."""
        return max(1, min(self.settings.max_tokens, self.model.ctx // 4))

    def _log_prompt(self, prompt: str) -> None:
        if self.prompt_log:
            import json
            with open(self.prompt_log, "a", encoding="utf-8") as f:
                f.write(json.dumps({"turn": self.answers + 1, "prompt": prompt}, ensure_ascii=False) + "\n")

    def _show(self, step) -> None:
        if not (self.color and self.uncertainty):
            self.out.write(step.text)
        else:
            for ev in step.rollbacks:
                self.out.write(f"\x1b[{DIM_STRIKE}m{ev.text}{RESET}")
            if step.text:
                code = GREEN if step.entropy < 1 else YELLOW if step.entropy < 3 else RED
                code += f";{UNDERLINE}" if step.reframed else ""
                self.out.write(f"\x1b[{code}m{step.text}{RESET}")
        self.out.flush()

    def _note(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    # -- slash commands --------------------------------------------------------------------------
    def command(self, line: str) -> bool:
        """Run one slash command; False means quit."""
        name, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        if name in ("/exit", "/quit"):
            return False
        if name == "/help":
            print(HELP, file=self.out)
        elif name == "/reset":
            self.messages, self.starts = [], []
            self.model.reset()
            self._note("conversation cleared")
        elif name == "/undo":
            self._undo()
        elif name == "/set":
            key, _, value = rest.partition(" ")
            if not key or not value.strip():
                self._note("usage: /set NAME VALUE  (/show lists the names)")
            else:
                try:
                    before, self.settings = dict(self.settings.describe()), self.settings.set(key, value.strip())
                    changed = [f"{k} = {v}" for k, v in self.settings.describe() if before[k] != v]
                    self._note(", ".join(changed) or "unchanged")
                except VkharpError as exc:
                    self._note(f"error: {exc}")
        elif name == "/show":
            default = GenerationSettings()
            for k, v in self.settings.describe():
                mark = "*" if getattr(self.settings, k) != getattr(default, k) else " "
                print(f"{mark} {k} = {v}", file=self.out)
        elif name == "/stats":
            self._stats()
        elif name == "/fix":
            self._fix(rest)
        elif name == "/fixes":
            self._fixes()
        elif name == "/unfix":
            if self.tuner is None or self.tuner.adapter is None:
                self._note("no adapter in use")
            else:
                self.tuner.drop()
                self._note("adapter dropped: the base model again (its saved file stays; --adapter loads it)")
        elif name == "/system":
            self.system = rest or None
            self._note("system prompt set" if rest else "system prompt: the template's default")
        else:
            self._note(f"unknown command {name}; /help lists them")
        self.out.flush()
        return True

    def _fix(self, text: str) -> None:
        from .tune.fix import Correction, Tuner, answer_ids, default_adapter_path
        if not text:
            self._note("usage: /fix TEXT  (the last answer should have been TEXT; PREFIX|TEXT keeps PREFIX)")
            return
        if not self.messages or self.last_prompt_ids is None:
            self._note("nothing to fix yet: ask something first")
            return
        user, said = self.messages[-2]["content"], self.messages[-1]["content"]
        prefix, sep, tail = text.partition("|")
        keep = bool(sep) and said.startswith(prefix) and tail.strip() != ""
        answer = prefix + tail if keep else text
        msgs = ([{"role": "system", "content": self.system}] if self.system else []) + \
               [{"role": "user", "content": user}]
        try:
            _, a_ids = answer_ids(self.model.tokenizer, msgs, answer, end_turn=not keep)
        except VkharpError as exc:
            self._note(f"error: {exc}")
            return
        if self.tuner is None:
            self.tuner = Tuner(self.model)
        if self.tuner.path is None:
            self.tuner.path = default_adapter_path(self.model)
        corr = Correction(user, answer, self.last_prompt_ids, a_ids)

        def show(rep):
            what = "reproduced" if not rep.mismatches else f"{rep.mismatches} token{'s' * (rep.mismatches != 1)} wrong"
            self.err.write(f"\r[fix: step {rep.step}, loss {rep.loss:.3f}, {what}]   ")
            self.err.flush()
        try:
            result = self.tuner.fix(corr, max_steps=self.fix_steps, on_step=show)
        except KeyboardInterrupt:
            self.err.write("\n")
            self._note("fix interrupted: the adapter is as it was before it")
            return
        except VkharpError as exc:
            self.err.write("\n")
            self._note(f"error: {exc} (the adapter is as it was before this fix)")
            return
        self.err.write("\n")
        path = self.tuner.save()
        if result.success:
            self._note(f"fixed in {result.steps} steps ({result.seconds:.1f} s); adapter saved to {path}")
        else:
            self._note(f"the correction does not hold after {result.steps} steps (the limit, --fix-steps): it is kept "
                       f"and saved to {path}; /fix again trains more, /unfix drops the adapter")
        # answer the same message again with the corrected model (the cache was reset)
        del self.messages[-2:]
        if self.starts:
            self.starts.pop()
        self.ask(user)

    def _fixes(self) -> None:
        if self.tuner is None or not self.tuner.corrections:
            print("no corrections in force", file=self.out)
            return
        for i, (c, ok) in enumerate(self.tuner.check(), 1):
            print(f"{i}. {c.prompt!r} -> {c.answer!r}  ({'holds' if ok else 'no longer holds'})", file=self.out)
        if self.tuner.path is not None:
            print(f"adapter: {self.tuner.path}", file=self.out)

    def _undo(self) -> None:
        if not self.starts:
            self._note("nothing to undo")
            return
        del self.messages[-2:]
        self.model.truncate(min(self.starts.pop(), self.model.kv.pos))
        self._note(f"undone; KV cache back to {self.model.kv.pos} positions")

    def _stats(self) -> None:
        s = self.session
        if self.last is not None:
            print(f"last answer: {self.last.line()}", file=self.out)
        print(f"session: {_count(self.answers, 'answer')}, {s.tokens} tokens generated, {s.fed} prompt tokens "
              f"fed, {s.cached} reused from the cache, HARP {s.harp}, rollbacks {s.rollbacks}", file=self.out)
        print(f"KV cache: {self.model.kv.pos} of {self.model.ctx} positions; "
              f"conversation: {_count(len(self.starts), 'exchange')}", file=self.out)

    # -- the loop --------------------------------------------------------------------------------
    def loop(self, interactive: bool) -> int:
        """Read lines until Ctrl-D, EOF or /exit; returns the exit status."""
        while True:
            try:
                line = _read(interactive)
            except KeyboardInterrupt:
                print(file=self.out, flush=True)
                continue
            except UnicodeDecodeError:      # typed or pasted at the terminal: say so, keep the chat
                self._note("error: that line is not UTF-8 text; vkharp reads UTF-8")
                continue
            if line is None:
                if interactive:
                    print(file=self.out, flush=True)
                return 0
            text = line.strip()
            if not text:
                continue
            if text.startswith("/"):
                if not self.command(text):
                    return 0
                continue
            try:
                self.ask(line.rstrip("\n"))
            except VkharpError as exc:
                if not interactive:         # a script: stop with the CLI's one line and exit status 2
                    raise
                self._note(f"error: {exc}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _read(interactive: bool) -> str | None:
    """One line from the terminal (with readline editing) or from piped stdin; None at EOF."""
    if interactive:
        try:
            return input("> ")
        except EOFError:
            return None
    line = text_input.read_line(sys.stdin, "a line of stdin")   # not UTF-8: an error (exit 2), not a traceback
    return line or None


def _history_file() -> Path | None:
    """$VKHARP_CHAT_HISTORY (empty: no history), else chat_history next to the model cache."""
    env = os.environ.get("VKHARP_CHAT_HISTORY")
    if env is not None:
        return Path(env) if env else None
    from .convert import cache_root
    return cache_root().parent / "chat_history"


def _start_readline():
    """Line editing and a persistent history where the readline module exists; returns a saver."""
    try:
        import readline
    except ImportError:
        return lambda: None
    path = _history_file()
    if path is None:
        return lambda: None
    try:
        readline.read_history_file(path)
    except OSError:
        pass
    readline.set_history_length(1000)

    def save():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(path)
        except OSError:
            pass
    return save


def run(args, settings: GenerationSettings) -> int:
    """`vkharp chat`: load the model, then talk until Ctrl-D, EOF or /exit."""
    from .model import load
    interactive = sys.stdin.isatty()
    color = use_color(args.color, sys.stdout)
    system = text_input.check(args.system, "--system") if args.system else None
    model = load(args.model, args.device, ctx=args.ctx_size, progress=sys.stderr.isatty(),
                 kv_type=getattr(args, "kv_type", None))
    memory = None
    if args.memory:
        from .embed.memory import Memory
        memory = Memory(model, args.memory, pooling=args.pooling)
    tuner = None
    if getattr(args, "adapter", None):
        from .tune.fix import Tuner
        from .tune.cli import settings_from
        tuner = (Tuner.load(model, args.adapter, settings_from(args)) if Path(args.adapter).exists()
                 else Tuner(model, settings_from(args), rank=args.rank, path=args.adapter))
    elif getattr(args, "rule", None) is not None:
        from .tune.fix import Tuner
        from .tune.cli import settings_from
        tuner = Tuner(model, settings_from(args), rank=args.rank)
    chat = Chat(model, settings, color=color, show_uncertainty=args.show_uncertainty, memory=memory,
                prompt_log=args.prompt_log or os.environ.get("VKHARP_PROMPT_LOG") or None, tuner=tuner,
                fix_steps=getattr(args, "fix_steps", 60))
    chat.system = system
    save = lambda: None
    if interactive:
        save = _start_readline()
        print(f"vkharp chat: {model.path.name} on [{model.device.index}] {model.device.info.name}, "
              f"context {model.ctx}; /help for commands, Ctrl-D to quit", file=sys.stderr)
        if color and args.show_uncertainty:
            print(LEGEND, file=sys.stderr)
    try:
        return chat.loop(interactive)
    finally:
        save()
