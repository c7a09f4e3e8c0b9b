"""Fault injection: what a user sees (the message, the exit status) under bad files, bad templates,
full disks and signals, and that nothing was lost (the files are still there, with the same bytes).

Classes: data loss (--overwrite), silent corruption (damaged weights, non-finite logits), templates
that hang or eat memory, tracebacks for faults a user can fix (read-only places, a full disk, text
that is not UTF-8, template features we refuse), litter after a kill, messages that point the wrong
way. Disks fill up and places turn read-only through injected OSErrors (this may run as root, and
mounting needs privileges). Everything runs on a tiny random-init llama (tests/checkpoints.py).
"""
import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine import chat_template
from engine.chat_template import TemplateFailure, TemplateLimit
from engine.cli import _step_json, main
from engine.convert import convert, ensure_converted, open_model_dir, staging, verify
from engine.errors import NonFiniteLogits, VkharpError
from engine.generate import Step

from checkpoints import CHAT_TEMPLATE, make_hf_checkpoint

ROOT = Path(__file__).resolve().parent.parent
MSGS = [{"role": "user", "content": "hi"}]
HANG = "{% for i in range(10**9) %}{% for j in range(10**9) %}x{% endfor %}{% endfor %}"
HANG_ALLOWED = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
HUGE = "{% set s = 'x' * 10**6 %}{% for i in range(10**5) %}{{ s }}{% endfor %}"


# -- helpers ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_hf_checkpoint(tmp_path_factory.mktemp("hf"), "llama")


@pytest.fixture
def model_dir(ckpt, tmp_path):
    return convert(ckpt, tmp_path / "model", progress=False)


def snapshot(root: Path) -> dict:
    """Every file below root with its bytes (what "nothing was lost" compares)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def user_error(capsys, argv, code=2) -> str:
    """Run the CLI in-process; it must exit with `code` and print exactly one error line, no traceback."""
    assert main(argv) == code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("vkharp: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def vkharp(*args, stdin=b"", env=None, timeout=120):
    e = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, input=stdin, capture_output=True,
                          timeout=timeout, env=e)


def one_error_line(r) -> str:
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode == 2 and "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("vkharp: error:")]
    assert len(lines) == 1, err
    return lines[0]


def with_template(ckpt: Path, tmp_path: Path, template: str) -> Path:
    """A converted model whose (consistent, checksummed) chat template is `template`: as downloaded."""
    src = tmp_path / "src"
    shutil.copytree(ckpt, src)
    cfg = json.loads((src / "tokenizer_config.json").read_text())
    (src / "tokenizer_config.json").write_text(json.dumps({**cfg, "chat_template": template}))
    return convert(src, tmp_path / "tpl", progress=False)


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def inject(monkeypatch, target, attr, code, where=None, after=0):
    """Make target.attr raise OSError(code) (from the after+1-th call on; only for paths below `where`)."""
    real, calls = getattr(target, attr), []

    def failing(*args, **kwargs):
        path = str(args[0]) if args else ""
        if where is None or path.startswith(str(where)):
            calls.append(path)
            if len(calls) > after:
                raise OSError(code, os.strerror(code), path if where is not None else None)
        return real(*args, **kwargs)
    monkeypatch.setattr(target, attr, failing)
    return calls


# -- data loss: --overwrite replaces only a vkharp model directory, never the source -----------------
def test_overwrite_refuses_a_directory_of_user_files(ckpt, tmp_path, capsys):
    mine = tmp_path / "photos"
    (mine / "2019").mkdir(parents=True)
    (mine / "2019" / "a.jpg").write_bytes(b"\xff\xd8 a user's file")
    (mine / "notes.txt").write_text("keep me")
    before = snapshot(mine)
    line = user_error(capsys, ["convert", "--quiet", str(ckpt), str(mine), "--overwrite"])
    assert "replaces only a vkharp model directory" in line and "no manifest.json" in line
    assert snapshot(mine) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]      # no temporary left either


def test_overwrite_refuses_a_model_directory_holding_other_files(ckpt, model_dir, capsys):
    (model_dir / "my-notes.txt").write_text("mine")
    before = snapshot(model_dir)
    line = user_error(capsys, ["convert", "--quiet", str(ckpt), str(model_dir), "--overwrite"])
    assert "vkharp did not write there (my-notes.txt)" in line
    assert snapshot(model_dir) == before


@pytest.mark.parametrize("where", ["source", "parent of the source", "a file", "a symlink"])
def test_overwrite_never_replaces_the_source_or_a_stranger(ckpt, tmp_path, capsys, where):
    src = tmp_path / "hf" / "llama"
    shutil.copytree(ckpt, src)
    (tmp_path / "hf" / "README").write_text("the user's")
    dst = {"source": src, "parent of the source": tmp_path / "hf", "a file": tmp_path / "hf" / "README",
           "a symlink": tmp_path / "link"}[where]
    if where == "a symlink":
        (tmp_path / "hf" / "elsewhere").mkdir()
        (tmp_path / "hf" / "elsewhere" / "manifest.json").write_text("{}")
        dst.symlink_to(tmp_path / "hf" / "elsewhere")
    before = snapshot(tmp_path / "hf")
    line = user_error(capsys, ["convert", "--quiet", str(src), str(dst), "--overwrite"])
    want = {"source": "is the source of this conversion or holds it",
            "parent of the source": "is the source of this conversion or holds it",
            "a file": "is a file", "a symlink": "is a symbolic link"}[where]
    assert want in line
    assert snapshot(tmp_path / "hf") == before


def test_overwrite_replaces_a_model_directory_even_a_damaged_one(ckpt, model_dir, capsys):
    (model_dir / "manifest.json").write_text("{ damaged")
    assert main(["convert", "--quiet", str(ckpt), str(model_dir), "--overwrite", "--dtype", "q8_0"]) == 0
    assert open_model_dir(model_dir, verify=True).manifest["dtype"] == "q8_0"
    assert sorted(p.name for p in model_dir.parent.iterdir()) == ["model"]


# -- silent corruption: checksums verified once, then stamped; non-finite logits are an error --------
def test_first_load_after_conversion_trusts_the_stamp_then_a_change_is_hashed(model_dir, monkeypatch):
    hashed = []
    real = verify.sha256_file
    monkeypatch.setattr(verify, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    open_model_dir(model_dir, verify="once")
    assert hashed == []                                  # the conversion hashed what it wrote
    cfg = model_dir / "config.json"
    st = cfg.stat()
    cfg.write_bytes(cfg.read_bytes())                    # same bytes, but the file was written
    os.utime(cfg, ns=(st.st_atime_ns, st.st_mtime_ns))   # even with its old mtime back (ctime moved)
    open_model_dir(model_dir, verify="once")
    assert "model.safetensors" in hashed and "config.json" in hashed
    hashed.clear()
    open_model_dir(model_dir, verify="once")             # verified again and re-stamped
    assert hashed == []


@pytest.mark.parametrize("damage", ["flipped bytes", "NaN scales"])
def test_a_damaged_weight_is_named_and_reconversion_offered(ckpt, tmp_path, device, capsys, damage):
    from engine.convert.safetensors_io import read_header
    from engine.model import load
    dst = convert(ckpt, tmp_path / "model", dtype="q8_0", progress=False)
    f = dst / "model.safetensors"
    name = "model.layers.1.mlp.down_proj.weight"
    entry = read_header(f)[0][f"{name}.qs" if damage == "flipped bytes" else f"{name}.scales"]
    data = bytearray(f.read_bytes())
    if damage == "flipped bytes":
        data[entry.begin + 5] ^= 0x10
    else:
        data[entry.begin:entry.end] = np.full((entry.end - entry.begin) // 2, np.nan, np.float16).tobytes()
    f.write_bytes(bytes(data))
    with pytest.raises(VkharpError, match=rf"model.safetensors is corrupt \(sha256 mismatch\): tensor {name} differs "
                                          rf"from what was converted; reconvert it from its source: vkharp convert "
                                          rf"{ckpt} {dst} --overwrite --dtype q8_0"):
        load(dst, device)
    line = user_error(capsys, ["generate", str(dst), "-p", "hi", "-n", "1"])
    assert name in line and "--overwrite" in line


def test_a_damaged_cache_copy_is_converted_again(ckpt, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VKHARP_CACHE", str(tmp_path / "cache"))
    first = ensure_converted(ckpt, progress=False)
    good = (first / "model.safetensors").read_bytes()
    data = bytearray(good)
    data[-3] ^= 0x01
    (first / "model.safetensors").write_bytes(bytes(data))
    assert ensure_converted(ckpt, progress=False) == first
    assert "cached conversion of" in capsys.readouterr().err
    assert (first / "model.safetensors").read_bytes() == good


@pytest.fixture(scope="module")
def nan_model(tmp_path_factory):
    """A checkpoint whose final norm holds NaN (its checksums are right: only the logits can tell)."""
    from safetensors.numpy import load_file, save_file
    root = tmp_path_factory.mktemp("nan")
    src = make_hf_checkpoint(root, "llama")
    t = load_file(src / "model.safetensors")
    t["model.norm.weight"][:] = np.nan
    save_file(t, src / "model.safetensors")
    return convert(src, root / "converted", progress=False)


def test_non_finite_logits_are_an_error_not_an_end_of_text(nan_model, device, capsys):
    from engine.model import load
    m = load(nan_model, device, ctx=32)
    with pytest.raises(NonFiniteLogits, match="non-finite logits"):
        list(m.generate("hi", max_tokens=4, temperature=0.0))
    assert main(["generate", str(nan_model), "-p", "hi", "-n", "3", "--json"]) == 2
    out = capsys.readouterr()
    assert "NaN" not in out.out and "4294967295" not in out.out and "non-finite logits" in out.err


@pytest.fixture(scope="module")
def one_nan_row_model(tmp_path_factory):
    """An untied output matrix with one NaN row: one logit of every step is NaN, the rest are fine,
    so the sampler's statistics stay finite; only its count of non-finite logits can tell."""
    from safetensors.numpy import load_file, save_file
    root = tmp_path_factory.mktemp("nanrow")
    src = make_hf_checkpoint(root, "llama", tie_word_embeddings=False)
    t = load_file(src / "model.safetensors")
    t["lm_head.weight"][7] = np.nan
    save_file(t, src / "model.safetensors")
    return convert(src, root / "converted", progress=False)


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_one_nan_logit_is_an_error_too(one_nan_row_model, device, temperature):
    from engine.model import load
    m = load(one_nan_row_model, device, ctx=32)
    with pytest.raises(NonFiniteLogits, match="non-finite logits"):
        list(m.generate("hi", max_tokens=4, temperature=temperature))


def test_json_steps_are_strict_json():
    line = _step_json(Step(5, "x", float("nan"), float("inf"), 0.0, p_max=float("-inf")))
    step = json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert step["prob"] is None and step["entropy"] is None and step["p_max"] is None and step["token"] == 5


# -- templates: bounded in time and output, each bound named ------------------------------------
def test_the_hanging_templates_stop(monkeypatch):
    monkeypatch.setenv("VKHARP_TEMPLATE_SECONDS", "0.5")
    for template in (HANG, "{% set s = 'x' * 10**6 %}{% for i in range(10**6) %}{{ s }}{% endfor %}"):
        with pytest.raises(TemplateFailure, match=r"range of more than 100,000 numbers"):
            chat_template.render(template, MSGS)         # the issue's own examples: the sandbox's range cap
    for template in (HANG_ALLOWED, "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                     "{% macro f() %}{% for i in range(100000) %}{% endfor %}{% endmacro %}"
                     "{% for i in range(100000) %}{{ f() }}{% endfor %}"):
        t0 = time.monotonic()
        with pytest.raises(TemplateLimit, match=r"time limit of 0.5 s \(VKHARP_TEMPLATE_SECONDS\)"):
            chat_template.render(template, MSGS)
        assert time.monotonic() - t0 < 3


@pytest.mark.parametrize("template", [
    HUGE,
    "{% set s = 'x' * 10**6 %}{% for i in range(10**5) %}{% for j in range(10**5) %}{{ s }}{% endfor %}{% endfor %}",
    "{{ 'x' * 10**10 }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "{% set s = 'x' * 10**6 %}{% set ns = namespace(l=[]) %}{% for i in range(10**5) %}"
    "{% set ns.l = ns.l + [s ~ i] %}{% endfor %}",
    "{% set s = 'x' * 10**6 %}{% set ns = namespace(l=[]) %}{% for i in range(10**5) %}"
    "{% set ns.l = ns.l + [s[i:]] %}{% endfor %}",
    "{% set s = 'x' * 10**5 %}{% set big %}{% for i in range(10**5) %}{{ s }}{% endfor %}{% endset %}",
    "{{ ([('x' * 10**6)] * 10**5)|join }}", "{{ ''.join([('x' * 10**6)] * 10**5) }}",
    "{{ ('x' * 10**6).replace('x', 'x' * 10**6) }}", "{{ 'x'|center(10**10) }}", "{{ 'x'.ljust(10**10) }}",
    "{{ '{:>10000000000}'.format(1) }}", "{{ '%10000000000d' % 1 }}", "{{ 'a\nb'|indent(10**10) }}",
])
def test_templates_that_build_huge_strings_stop_at_the_output_limit(template):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(TemplateLimit, match=r"output limit of [\d,]+ characters \(VKHARP_TEMPLATE_CHARS"):
        chat_template.render(template, MSGS)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / (2**20 if sys.platform == "darwin" else 1024)
    assert grown_mb < 300, grown_mb


def test_bounded_rendering_renders_what_transformers_renders():
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    plain = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    conv = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi " * 20000},
            {"role": "assistant", "content": "yo"}] * 40
    template = (CHAT_TEMPLATE + "{% for m in messages if m.role == 'user' %}{{ loop.index }}/{{ loop.length }}"
                "{% if loop.last %}.{% endif %}{% else %}none{% endfor %}{% macro f(x) %}[{{ x }}]{% endmacro %}"
                "{{ f(messages[0]['content'][::-1]) }}{{ messages|map(attribute='role')|join(',') }}"
                "{{ '%s=%d'|format('n', 3) }}{{ '{}:{}'.format('a', 1) }}{% filter upper %}end{% endfilter %}")
    want = plain.from_string(template).render(messages=conv, add_generation_prompt=True)
    assert len(want) > 2_000_000
    assert chat_template.render(template, conv, add_generation_prompt=True) == want


@pytest.mark.parametrize("template, message", [
    (HANG_ALLOWED, r"time limit of 0.3 s \(VKHARP_TEMPLATE_SECONDS\)"),
    (HUGE, r"output limit of [\d,]+ characters"),
    (HANG, r"range of more than 100,000 numbers"),
    ("{% include 'system.jinja' %}", r"uses \{% include %\} \(line 1\).*self-contained"),
    ("{% extends 'base.jinja' %}", r"uses \{% extends %\}"),
    ("{{ ''.__class__.__mro__ }}", r"unsafe"),
    ("{% for m in messages %}", r"syntax error on line 1"),
    ("{{ raise_exception('Conversation roles must alternate') }}", r"failed: Conversation roles must alternate"),
    ("{{ 1 / 0 }}", r"ZeroDivisionError"),
])
def test_template_faults_are_one_line_naming_the_template(ckpt, tmp_path, capsys, monkeypatch, template, message):
    import re
    monkeypatch.setenv("VKHARP_TEMPLATE_SECONDS", "0.3")
    dst = with_template(ckpt, tmp_path, template)
    line = user_error(capsys, ["generate", str(dst), "--chat", "-p", "hi", "-n", "1"])
    assert re.search(message, line), line
    assert line.endswith(f"fix or replace the template in {dst / 'chat_template.jinja'}")


def test_a_template_that_renders_nothing(ckpt, tmp_path, device, capsys):
    from engine.chat import Chat
    from engine.model import load
    from engine.settings import GenerationSettings
    dst = with_template(ckpt, tmp_path, "{% if false %}{{ messages }}{% endif %}")
    chat = Chat(load(dst, device, ctx=32), GenerationSettings(max_tokens=2))
    with pytest.raises(VkharpError, match="rendered nothing") as exc:
        chat.ask("hi")
    assert "truncate" not in str(exc.value)
    line = user_error(capsys, ["generate", str(dst), "--chat", "-p", "hi"])
    assert "rendered nothing" in line


# -- tracebacks for faults a user can fix ---------------------------------------------------------------
@pytest.mark.parametrize("code, words", [(errno.EROFS, "read-only"), (errno.EACCES, "permission denied")])
def test_read_only_destination(ckpt, tmp_path, capsys, monkeypatch, code, words):
    ro = tmp_path / "ro"
    ro.mkdir()
    inject(monkeypatch, os, "mkdir", code, where=ro)
    line = user_error(capsys, ["convert", "--quiet", str(ckpt), str(ro / "out")])
    assert f"cannot write {ro / 'out'}" in line and words in line
    assert list(ro.iterdir()) == []


def test_read_only_cache_on_first_use(ckpt, tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("VKHARP_CACHE", str(cache))
    inject(monkeypatch, os, "mkdir", errno.EROFS, where=cache)
    line = user_error(capsys, ["generate", str(ckpt), "-p", "hi"])   # HF directory: converted on first use
    assert "read-only" in line and "set VKHARP_CACHE to a writable directory" in line
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize("first_use", [False, True])
def test_full_disk_during_conversion_loses_nothing(ckpt, model_dir, tmp_path, capsys, monkeypatch, first_use):
    from engine.convert import safetensors_io
    before = snapshot(model_dir)
    inject(monkeypatch, safetensors_io.StreamWriter, "_emit", errno.ENOSPC, after=3)
    if first_use:
        monkeypatch.setenv("VKHARP_CACHE", str(tmp_path / "cache"))
        line = user_error(capsys, ["generate", str(ckpt), "-p", "hi"])
        assert "VKHARP_CACHE" in line
        assert list((tmp_path / "cache" / "models").iterdir()) == []
    else:
        line = user_error(capsys, ["convert", "--quiet", str(ckpt), str(model_dir), "--overwrite", "--dtype", "f16"])
        assert snapshot(model_dir) == before                         # the old conversion is intact
        assert sorted(p.name for p in model_dir.parent.iterdir()) == ["model"]
    assert "no space left" in line


def test_an_unreadable_source_is_named_as_the_source(ckpt, tmp_path, capsys, monkeypatch):
    from engine.convert.hf import HFSource

    def denied(self, t, fmt):
        raise PermissionError(errno.EACCES, "Permission denied", str(ckpt / "model.safetensors"))
    monkeypatch.setattr(HFSource, "read", denied)
    line = user_error(capsys, ["convert", "--quiet", str(ckpt), str(tmp_path / "out")])
    assert f"{ckpt / 'model.safetensors'}: permission denied; check its permissions" in line
    assert "cannot write" not in line and list(tmp_path.iterdir()) == []


def test_text_that_is_not_utf8(model_dir):
    binary = bytes(range(256)) * 4
    line = one_error_line(vkharp("generate", str(model_dir), stdin=binary))
    assert "the prompt on stdin is not UTF-8 text (byte 0x80 at offset 128)" in line
    line = one_error_line(vkharp("generate", str(model_dir), "-p", os.fsdecode(b"caf\xe9")))
    assert "the -p prompt is not UTF-8 text (byte 0xe9 at character 3)" in line
    line = one_error_line(vkharp("chat", str(model_dir), "-n", "2", stdin=b"hello\n\xff\xfe\n"))
    assert "a line of stdin is not UTF-8 text" in line


def test_debug_shows_the_traceback(model_dir):
    r = vkharp("generate", str(model_dir), stdin=b"\xff", env={"VKHARP_DEBUG": "1"})
    assert r.returncode == 2 and b"Traceback" in r.stderr and b"vkharp: error:" in r.stderr


# -- litter: a killed conversion's temporaries are removed, ours and dead only --------------------------
SLOW_CONVERT = """
import sys, time
import engine.convert.hf as hf
real = hf.HFSource.read
hf.HFSource.read = lambda self, t, fmt: (time.sleep(0.1), real(self, t, fmt))[1]
from engine.cli import main
sys.exit(main(["convert", "--quiet", sys.argv[1], sys.argv[2]]))
"""


def start_slow_conversion(ckpt, dst):
    p = subprocess.Popen([sys.executable, "-c", SLOW_CONVERT, str(ckpt), str(dst)], cwd=ROOT,
                         stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(dst.parent.glob(f"{dst.name}.tmp-{p.pid}-*/*.safetensors")):
        assert p.poll() is None and time.monotonic() < deadline, "the conversion never started"
        time.sleep(0.02)
    return p


def test_sigterm_during_convert_leaves_nothing(ckpt, tmp_path):
    p = start_slow_conversion(ckpt, tmp_path / "out")
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=60) == 143
    assert b"Traceback" not in p.stderr.read()
    assert list(tmp_path.iterdir()) == []


def test_the_next_run_removes_what_a_killed_run_left(ckpt, tmp_path):
    p = start_slow_conversion(ckpt, tmp_path / "out")
    p.kill()
    p.wait(timeout=60)
    (left,) = tmp_path.glob("out.tmp-*")
    # look-alikes that are not provably ours and dead stay: a live run's, another host's, an unmarked one
    gone = dead_pid()
    live = staging.make_dir(tmp_path, "other")
    foreign = tmp_path / f"x.tmp-{gone}-abc"
    foreign.mkdir()
    (foreign / staging.MARKER).write_text(json.dumps({**staging.writer_identity(), "pid": gone, "host": "elsewhere"}))
    unmarked = tmp_path / f"y.tmp-{gone}-abc"
    unmarked.mkdir()
    (unmarked / "data").write_text("someone's")
    assert convert(ckpt, tmp_path / "out", progress=False)
    assert not left.exists()
    assert live.exists() and foreign.exists() and (unmarked / "data").read_text() == "someone's"
    assert open_model_dir(tmp_path / "out", verify=True)


# -- messages that pointed the wrong way -----------------------------------------------------------------
@pytest.mark.parametrize("var", ["VK_ICD_FILENAMES", "VK_DRIVER_FILES"])
def test_a_missing_driver_file_names_the_variable(tmp_path, var):
    missing = tmp_path / "nope_icd.json"
    line = one_error_line(vkharp("devices", env={var: str(missing)}))
    assert f"{var} names {missing}, which does not exist" in line and "mesa-vulkan-drivers" not in line


def test_context_size_zero_is_refused(model_dir, device, capsys):
    from engine.model import load
    with pytest.raises(SystemExit) as exc:
        main(["generate", str(model_dir), "-c", "0", "-p", "hi"])
    assert exc.value.code == 2 and "--ctx-size: must be at least 1 token" in capsys.readouterr().err
    with pytest.raises(VkharpError, match="ctx .* must be an integer ≥ 1, got 0"):
        load(model_dir, device, ctx=0)


def test_bytes_are_not_token_ids(model_dir, device):
    from engine.model import load
    m = load(model_dir, device, ctx=32)
    with pytest.raises(VkharpError, match="the prompt is bytes"):
        m.generate(b"hi")
    with pytest.raises(VkharpError, match="token ids must be integers"):
        m.generate([1, 2.5])


def test_a_context_that_fills_says_so(model_dir, capsys):
    assert main(["generate", str(model_dir), "-c", "6", "-n", "50", "--temp", "0", "-p", "The capital"]) == 0
    err = capsys.readouterr().err
    assert "(context full)" in err and "the context of 6 tokens is full" in err and "--ctx-size" in err
