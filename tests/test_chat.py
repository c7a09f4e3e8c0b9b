"""The terminal chat driven in a pseudo-terminal (pexpect) on the default model, greedy and short:
KV reuse across turns, /undo, settings commands, Ctrl-C and Ctrl-D, colours on and off."""
import os
import re
import sys
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "\r\n> "
STATS = r"\[(\d+) tokens \((\w+)\); prompt (\d+) new \+ (\d+) cached"
SGR = re.compile(r"\x1b\[[0-9;]*m")       # colour codes (readline's bracketed-paste codes are not SGR)


def spawn(*args, env=None):
    e = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    e.update(VKHARP_CHAT_HISTORY="", TERM="xterm", **(env or {}))
    child = pexpect.spawn(sys.executable, ["-m", "engine", "chat", "--temp", "0", *args], cwd=str(ROOT), env=e,
                          encoding="utf-8", timeout=120, dimensions=(50, 250))
    child.expect_exact("Ctrl-D to quit")
    child.expect_exact(PROMPT)
    return child


def ask(child, text):
    """Send a user line; returns (answer text, tokens, finish, fed, cached) from the stats line."""
    child.sendline(text)
    child.expect_exact(text + "\r\n")      # the terminal's echo
    child.expect(STATS)
    answer = child.before
    tokens, finish, fed, cached = child.match.groups()
    child.expect_exact(PROMPT)
    return answer, int(tokens), finish, int(fed), int(cached)


def command(child, line, pattern):
    child.sendline(line)
    child.expect_exact(line + "\r\n")
    child.expect(pattern)
    found = child.match
    child.expect_exact(PROMPT)
    return found


def quit_with_ctrl_d(child):
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_turns_reuse_the_cache_and_undo_moves_it_back():
    c = spawn("-n", "12")
    _, _, _, fed1, cached1 = ask(c, "Hi, what is your name?")
    assert cached1 == 0 and fed1 > 20
    answer2, _, _, fed2, cached2 = ask(c, "What can you do?")
    assert cached2 >= fed1                   # the whole first turn came from the cache
    assert fed2 < 20                         # only the new message (and the template around it) was fed
    pos = int(command(c, "/stats", r"KV cache: (\d+) of").group(1))
    assert pos > cached2
    assert int(command(c, "/undo", r"KV cache back to (\d+) positions").group(1)) == cached2
    command(c, "/stats", rf"KV cache: {cached2} of \d+ positions; conversation: 1 exchange\b")
    again = ask(c, "What can you do?")       # the same question again: the same feed, the same answer
    assert again[3:] == (fed2, cached2) and again[0] == answer2
    command(c, "/undo", "KV cache back to")
    command(c, "/undo", "KV cache back to 0 positions")
    command(c, "/undo", "nothing to undo")
    quit_with_ctrl_d(c)


def test_settings_commands():
    c = spawn()
    command(c, "/set temperature 0.5", r"temperature = 0\.5")
    command(c, "/show", r"\* temperature = 0\.5")
    command(c, "/set temperature -1", r"error: .*temperature must be .*-1")
    command(c, "/set top-t 0.2", r"min_p = 0\.2")
    command(c, "/set warmth 1", "unknown setting 'warmth'")
    command(c, "/set temperature", "usage: /set NAME VALUE")
    command(c, "/frobnicate", "unknown command /frobnicate")
    command(c, "/help", "/undo")
    command(c, "/system You are terse.", "system prompt set")
    c.sendline("/exit")
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 0


def test_ctrl_c_stops_an_answer_and_the_chat_goes_on():
    c = spawn("-n", "400")
    line = "Count from 1 to 300, separated by commas."
    c.sendline(line)
    c.expect_exact(line + "\r\n")
    c.expect(r"\d")                            # the first tokens are out
    c.sendintr()
    c.expect(r"\[\d+ tokens \(interrupted\)")
    c.expect_exact(PROMPT)
    c.sendintr()                               # at the prompt: just a new prompt line
    c.expect_exact(PROMPT)
    command(c, "/stats", r"conversation: 1 exchange\b")   # the partial answer was kept
    command(c, "/set max_tokens 8", "max_tokens = 8")
    _, tokens, finish, fed, cached = ask(c, "Thanks!")
    assert finish in ("stop", "length") and 0 < tokens <= 8 and cached > 0
    quit_with_ctrl_d(c)


def test_colours_show_uncertainty():
    c = spawn("-n", "6", "--color", "always", "--show-uncertainty")
    answer = ask(c, "Hi")[0]
    assert re.search(r"\x1b\[3[123](;4)?m", answer)      # entropy colours on the tokens
    quit_with_ctrl_d(c)


@pytest.mark.parametrize("flags, env", [(["--color", "never"], {}), ([], {"NO_COLOR": "1"})])
def test_no_colours(flags, env):
    c = spawn("-n", "6", "--show-uncertainty", *flags, env=env)
    answer = ask(c, "Hi")[0]
    assert answer.strip() and not SGR.search(answer)
    quit_with_ctrl_d(c)
