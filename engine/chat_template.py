"""Chat templates, rendered as transformers renders them, with bounds on the work they may do.

A template ships with every downloaded model, so it is untrusted input. jinja2's immutable sandbox
(what transformers and llama.cpp's jinja mode rely on) refuses attribute escapes and mutation, but
not work: nested loops run forever and `'x' * 10**6` in a loop fills the memory. So rendering here
also counts, without trusting the template:

  time    TIME_LIMIT_S of wall clock (VKHARP_TEMPLATE_SECONDS), checked at every loop iteration, call,
          filter, operator, subscript and piece of output;
  output  OUTPUT_LIMIT characters (VKHARP_TEMPLATE_CHARS), plus INPUT_FACTOR times the size of the
          conversation (a template builds its output through a few concatenations per message), for
          everything the template writes or builds: output, `~` concatenations, `+`, `*`, `%`,
          slices, filter and method results (a list counts its items). What one operation would
          build is checked before it runs where it can be foreseen (str * n, list * n, padding
          widths, joins, replace), so one step never allocates past the limit; a number from `**`
          has at most MAX_BITS bits.

How: a code generator that routes output, concatenations and slices through the budget, every
`for` iterable wrapped in a counting iterator, and the sandbox's own hooks (call, call_binop,
getattr, getitem) plus wrapped filters for the rest. A template must be self-contained: there is no
loader, so {% include %}, {% extends %} and {% import %} are refused with a message (as transformers
cannot render them either). Every failure is a TemplateFailure: one line for the user.
"""
from __future__ import annotations

import functools
import json
import os
import re
import string
import time
from datetime import datetime

from .errors import VkharpError

TIME_LIMIT_S = 2.0
OUTPUT_LIMIT = 8_000_000
INPUT_FACTOR = 16
MAX_BITS = 1 << 20          # integers from ** (one such power already takes a good part of a second)
_MAX_INDENT = 64            # tojson(indent=...)


class TemplateFailure(VkharpError):
    """The chat template could not be rendered (an error in it, a feature we refuse, a bound hit)."""


class TemplateLimit(TemplateFailure):
    """A chat template hit one of its bounds (time or output)."""


def _limit(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise VkharpError(f"{name}={raw!r} is not a number") from None
    if not value > 0:
        raise VkharpError(f"{name} must be > 0, got {raw}")
    return value


def _size(value) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)) else 0


class Budget:
    """The time and output a render may still use; every hook ticks the clock and charges its result."""

    def __init__(self, seconds: float, chars: int):
        self.seconds, self.chars = seconds, int(chars)
        self.deadline = time.monotonic() + seconds
        self.left = self.chars

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateLimit(f"the chat template ran past its time limit of {self.seconds:g} s "
                                f"(VKHARP_TEMPLATE_SECONDS)")

    def _over(self):
        raise TemplateLimit(f"the chat template built more than its output limit of {self.chars:,} characters "
                            f"(VKHARP_TEMPLATE_CHARS; all the text and lists it builds count)")

    def expect(self, n: int) -> None:
        """Refuse, before it runs, an operation that would build n characters or items past the limit."""
        if n > self.left:
            self._over()

    def made(self, value):
        """Charge a value the template built; returns it."""
        self.tick()
        self.left -= _size(value)
        if self.left < 0:
            self._over()
        return value


class _Counted:
    """A `for` loop's iterable: each iteration ticks the clock (len() as the original, for loop.length)."""
    __slots__ = ("_items", "_budget")

    def __init__(self, items, budget: Budget):
        self._items, self._budget = items, budget

    def __len__(self):
        return len(self._items)

    def __iter__(self):
        tick = self._budget.tick
        for item in self._items:
            tick()
            yield item


_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_DIGITS = re.compile(r"\d+")


def _format_widths(fmt: str) -> list[int]:
    """Widths and precisions a str.format string asks for (nested {…} specs come from the arguments)."""
    out = []
    try:
        for _, _, spec, _ in string.Formatter().parse(fmt):
            out += [int(d) for d in _DIGITS.findall(spec or "")]
    except ValueError:
        pass      # malformed: str.format raises it itself
    return out


def _printf_widths(fmt: str) -> list[int]:
    return [int(g) for m in _PRINTF.finditer(fmt) for g in m.groups() if g and g != "*"]


def _ints(*values) -> list[int]:
    flat = []
    for v in values:
        if isinstance(v, (tuple, list)):
            flat += list(v)
        elif isinstance(v, dict):
            flat += list(v.values())
        else:
            flat.append(v)
    return [abs(v) for v in flat if isinstance(v, int) and not isinstance(v, bool)]


def _join_size(items, sep) -> int:
    if not isinstance(items, (list, tuple)):
        return 0
    return sum(len(x) for x in items if isinstance(x, str)) + len(sep if isinstance(sep, str) else "") * len(items)


def _replace_size(s, old, new) -> int:
    if not (isinstance(s, str) and isinstance(old, str) and isinstance(new, str)):
        return 0
    n = len(s) + 1 if old == "" else s.count(old)
    return len(s) + n * max(0, len(new) - len(old))


def _foresee_method(budget: Budget, obj, args, kwargs) -> None:
    """Check a str method call that can build far more than its inputs (padding, join, replace, format)."""
    target = getattr(obj, "__wrapped__", obj)        # the sandbox wraps str.format / format_map
    s, name = getattr(target, "__self__", None), getattr(target, "__name__", "")
    if not isinstance(s, str):
        return
    if name in ("ljust", "rjust", "center", "zfill") and args:
        budget.expect(_ints(args[0])[0] if _ints(args[0]) else 0)
    elif name == "expandtabs":
        size = (_ints(*args, kwargs)[:1] or [8])[0]
        budget.expect(len(s) + s.count("\t") * size)
    elif name == "join" and args:
        budget.expect(_join_size(args[0], s))
    elif name == "replace" and len(args) >= 2:
        budget.expect(_replace_size(s, args[0], args[1]))
    elif name in ("format", "format_map"):
        budget.expect(max(_format_widths(s) + _ints(*args, kwargs) + [0]) if "{" in s else 0)


def _foresee_filter(budget: Budget, name: str, value, args, kwargs) -> None:
    """The same for the built-in filters that pad, join, replace, format or slice by an argument."""
    extra = args + tuple(kwargs.values())
    if name == "center" and extra:
        budget.expect(max(_ints(*extra) + [0]))
    elif name == "indent" and isinstance(value, str):
        width = extra[0] if extra else 4
        w = len(width) if isinstance(width, str) else (_ints(width) or [0])[0]
        budget.expect(len(value) + (value.count("\n") + 1) * w)
    elif name == "join":
        budget.expect(_join_size(value, extra[0] if extra else ""))
    elif name == "replace" and len(extra) >= 2:
        budget.expect(_replace_size(value, extra[0], extra[1]))
    elif name == "format" and isinstance(value, str):
        budget.expect(max(_printf_widths(value) + _ints(*extra) + [0]))
    elif name in ("slice", "batch") and extra:
        budget.expect(max(_ints(extra[0]) + [0]))
    elif name == "sum" and isinstance(value, (list, tuple)):
        budget.expect(sum(_size(v) for v in value))


def _guard_filter(name: str, func, budget: Budget):
    passes = hasattr(func, "jinja_pass_arg")          # pass_context / pass_environment: value comes second

    @functools.wraps(func)
    def guarded(*args, **kwargs):
        budget.tick()
        i = 1 if passes else 0
        if len(args) > i:
            _foresee_filter(budget, name, args[i], args[i + 1:], kwargs)
        return budget.made(func(*args, **kwargs))
    return guarded


@functools.lru_cache(maxsize=None)
def _environment_class():
    """The guarded environment class (built on first use: importing jinja2 is kept off the CLI's start)."""
    from jinja2 import nodes
    from jinja2.compiler import CodeGenerator
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generator(CodeGenerator):
        """Output pieces, `~` and slices go through environment.budget.made(...)."""

        def _output_child_pre(self, node, frame, finalize):
            self.write("environment.budget.made(")
            super()._output_child_pre(node, frame, finalize)

        def _output_child_post(self, node, frame, finalize):
            super()._output_child_post(node, frame, finalize)
            self.write(")")

        def _output_const_repr(self, group):
            return f"environment.budget.made({super()._output_const_repr(group)})"

        def visit_Concat(self, node, frame):
            self.write("environment.budget.made(")
            super().visit_Concat(node, frame)
            self.write(")")

        def visit_Getitem(self, node, frame):
            if not isinstance(node.arg, nodes.Slice):       # the others go through environment.getitem
                return super().visit_Getitem(node, frame)
            self.write("environment.budget.made(")
            super().visit_Getitem(node, frame)
            self.write(")")

    class Environment(ImmutableSandboxedEnvironment):
        code_generator_class = Generator
        intercepted_binops = frozenset({"+", "*", "%", "**"})

        def call_binop(self, context, operator, left, right):
            b = self.budget
            b.tick()
            if operator == "*":
                for seq, n in ((left, right), (right, left)):
                    if _size(seq) and isinstance(n, int):
                        b.expect(_size(seq) * n)
            elif operator == "+" and _size(left) and _size(right):
                b.expect(_size(left) + _size(right))
            elif operator == "%" and isinstance(left, str):
                b.expect(max(_printf_widths(left) + _ints(right) + [0]))
            elif (operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1
                  and right * abs(left).bit_length() > MAX_BITS):
                raise TemplateLimit(f"the chat template computed a number of more than {MAX_BITS:,} bits "
                                    f"(its number limit)")
            return b.made(super().call_binop(context, operator, left, right))

        def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (the sandbox's own signature)
            b = __self.budget
            b.tick()
            _foresee_method(b, __obj, args, kwargs)
            return b.made(super().call(__context, __obj, *args, **kwargs))

        def getattr(self, obj, attribute):
            self.budget.tick()
            return super().getattr(obj, attribute)

        def getitem(self, obj, argument):
            self.budget.tick()
            return super().getitem(obj, argument)

    return Environment


def _environment(budget: Budget):
    from jinja2 import pass_context
    env = _environment_class()(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.budget = budget

    def raise_exception(message):
        from jinja2.exceptions import TemplateError
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        if isinstance(indent, int) and indent > _MAX_INDENT:
            raise TemplateFailure(f"the chat template asked tojson for an indent of {indent} (at most {_MAX_INDENT})")
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    @pass_context
    def loop_guard(context, items):
        return _Counted(items, context.environment.budget)

    env.filters["tojson"] = tojson
    env.filters = {name: _guard_filter(name, f, budget) for name, f in env.filters.items()}
    env.filters["__vkharp_loop__"] = loop_guard          # pass_context: never folded at compile time
    env.globals.pop("lipsum", None)                      # a text generator: nothing a chat template needs
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


_UNSUPPORTED = {"Include": "{% include %}", "Extends": "{% extends %}", "Import": "{% import %}",
                "FromImport": "{% from ... import %}"}


def render(template: str, messages: list[dict], *, time_limit: float | None = None, output_limit: int | None = None,
           **kwargs) -> str:
    """Render like transformers (sandboxed jinja2, trim_blocks + lstrip_blocks, loopcontrols,
    raise_exception, tojson, strftime_now), within the time and output limits."""
    from jinja2 import nodes
    from jinja2.exceptions import TemplateError, TemplateSyntaxError
    from jinja2.sandbox import MAX_RANGE
    seconds = time_limit if time_limit is not None else _limit("VKHARP_TEMPLATE_SECONDS", TIME_LIMIT_S)
    if output_limit is None:
        try:
            given = len(json.dumps([messages, kwargs], ensure_ascii=False, default=str))
        except ValueError:          # a circular structure: no allowance for it
            given = 0
        output_limit = int(_limit("VKHARP_TEMPLATE_CHARS", OUTPUT_LIMIT)) + INPUT_FACTOR * given
    chars = output_limit
    budget = Budget(seconds, chars)
    env = _environment(budget)
    try:
        tree = env.parse(template)
        for node in tree.find_all(tuple(getattr(nodes, n) for n in _UNSUPPORTED)):
            raise TemplateFailure(f"the chat template uses {_UNSUPPORTED[type(node).__name__]} (line {node.lineno}), "
                                  f"which needs other template files; a chat template must be self-contained")
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, "__vkharp_loop__", [], [], None, None, lineno=loop.lineno)
        pieces = list(env.from_string(tree).generate(messages=messages, **kwargs))
    except TemplateFailure:
        raise
    except TemplateSyntaxError as exc:
        raise TemplateFailure(f"the chat template has a syntax error on line {exc.lineno}: {exc.message}") from None
    except TemplateError as exc:
        raise TemplateFailure(f"the chat template failed: {exc.message or type(exc).__name__}") from None
    except OverflowError as exc:
        if "MAX_RANGE" in str(exc):
            raise TemplateFailure(f"the chat template asked for a range of more than {MAX_RANGE:,} numbers, which "
                                  f"jinja2's sandbox refuses") from None
        raise TemplateFailure(f"the chat template failed: a number too large ({exc})") from None
    except RecursionError:
        raise TemplateFailure("the chat template recursed too deeply (a macro or recursive loop without end)") from None
    except MemoryError:
        raise TemplateFailure("the chat template ran out of memory") from None
    except Exception as exc:        # anything else is a fault of the template (an untrusted input)
        raise TemplateFailure(f"the chat template failed: {type(exc).__name__}: {exc}") from None
    return "".join(pieces)
