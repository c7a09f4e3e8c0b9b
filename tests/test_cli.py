"""The command line: shared generation flags (defaults from GenerationSettings, bad values exit 2
naming them), `generate` plain and --json, and `chat` / no command reading piped stdin."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import build_parser, main, settings_from_args
from engine.settings import GenerationSettings

ROOT = Path(__file__).resolve().parent.parent


def vkharp(*args, stdin=""):
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, input=stdin, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("command", ["chat", "generate"])
def test_flags_default_to_the_settings_and_map_onto_them(command):
    assert settings_from_args(build_parser().parse_args([command])) == GenerationSettings()
    args = build_parser().parse_args([command, "--top-t", "0.2", "--repeat-last-n", "32", "--edt", "--stop", "a",
                                      "--stop", "b", "--harp", "cached", "--rollback", "-n", "7", "--temp", "0.3"])
    s = settings_from_args(args)
    assert (s.min_p, s.repeat_window, s.temp_rule, s.stop, s.harp, s.rollback, s.max_tokens, s.temperature) == \
        (0.2, 32, "edt", ("a", "b"), "cached", True, 7, 0.3)
    assert settings_from_args(build_parser().parse_args([command, "--dynatemp-range", "0.5"])).temp_rule == "dynatemp"


@pytest.mark.parametrize("argv, word", [
    (["generate", "--temp", "-1", "-p", "hi"], "temperature"),
    (["chat", "--harp-delta", "1.5"], "harp_delta"),
    (["generate", "--edt", "--dynatemp-range", "1", "-p", "hi"], "--edt"),
])
def test_bad_values_exit_2_naming_them(argv, word, capsys):
    assert main(argv) == 2                     # settings are checked before the model loads
    err = capsys.readouterr().err
    assert err.startswith("vkharp: error:") and word in err


def test_bad_choice_is_argparse_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--harp", "sometimes"])
    assert exc.value.code == 2 and "--harp" in capsys.readouterr().err


def test_generate_json_and_plain():
    r = vkharp("generate", "--temp", "0", "-n", "6", "--json", "-p", "The capital of France is")
    assert r.returncode == 0, r.stderr
    steps = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(steps) == 6 and steps[-1]["finish"] == "length"
    assert {"token", "text", "prob", "entropy", "temperature", "reframed", "rollbacks", "finish"} <= set(steps[0])
    assert all(s["rollbacks"] == [] for s in steps)
    text = "".join(s["text"] for s in steps)
    assert text.startswith(" Paris")
    plain = vkharp("generate", "--temp", "0", "-n", "6", "-p", "The capital of France is")
    assert plain.returncode == 0 and plain.stdout == text + "\n"
    assert "6 tokens (length); prompt" in plain.stderr


def test_chat_reads_piped_stdin():
    r = vkharp("chat", "--temp", "0", "-n", "8", "--show-uncertainty", stdin="Hi\n/stats\n")
    assert r.returncode == 0, r.stderr
    assert "session: 1 answer," in r.stdout and "\x1b" not in r.stdout   # not a terminal: no colours
    assert "8 tokens" in r.stderr or "(stop)" in r.stderr


def test_no_command_opens_the_chat_on_the_default_model():
    r = vkharp(stdin="/stats\n/exit\n")
    assert r.returncode == 0, r.stderr
    assert "KV cache: 0 of 2048 positions" in r.stdout


def test_the_readme_main_command_runs_through_its_wrapper():
    """`./vkharp` (the README's first command) goes through tools/bootstrap.sh without test extras;
    a setup step that fails under `set -e` would break it while `./run-tests` still passes."""
    r = subprocess.run([str(ROOT / "vkharp"), "chat", "--temp", "0", "-n", "4"], cwd=ROOT, input="Hi\n",
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "tokens (" in r.stderr and r.stdout.strip()
