"""`vkharp bench` end to end on the default model (a smoke run: the figures exist and hang together;
speed itself is never asserted)."""
import json

from engine.cli import main


def test_quick_bench_reports_every_figure(capsys):
    assert main(["bench", "--quick", "--json", "-"]) == 0
    out, err = capsys.readouterr()
    r = json.loads(out)
    assert set(r["prefill"]) == {"64"} and r["prefill"]["64"]["tok_s"] > 0
    assert r["decode_tok_s"] > 0 and r["floor_tok_s"] > 0
    assert 0 < r["decode_vs_floor"] < 1.5
    assert r["device_mb"] * 2**20 > r["weight_bytes"]
    assert set(r["decode_at_context"]) == {"64", "256"} and all(v["tok_s"] > 0 for v in r["decode_at_context"].values())
    dec = r["structure"]["decode token"]
    # decode copies nothing but its download of the sampled words (parameters are host-visible); every dependent
    # dispatch has at most one barrier before it
    assert dec["copies"] == 1 and 0 < dec["barriers"] <= dec["dispatches"] + 1
    assert r["structure"]["prefill chunk"]["dispatches"] >= dec["layers"]
    # the fused decode layer (q/k/v in one product, norms folded, residual adds and act(gate)·up in the
    # epilogues, RoPE and the KV append in attention): 5 dispatches, plus embed, head and sampling
    assert dec["dispatches"] <= 5 * dec["layers"] + 3
    if "kernels" in r:   # devices with timestamps: the matrix-vector products dominate a decode step
        names = [k["kernel"] for k in r["kernels"]]
        assert any(n.startswith("matvec") for n in names[:3]) and any(n.startswith("sample") for n in names)
        assert 0 < r["sampling_share"] < 1
    modes = {m["mode"]: m for m in r["modes"]}
    assert set(modes) == {"greedy", "greedy + HARP cached", "greedy + HARP paper", "sampling", "sampling + rollback"}
    assert modes["greedy"]["hesitant"] == 0 and modes["greedy + HARP cached"]["hesitant"] > 0
    # the modes take turns for --repeats rounds (--quick: 2), the paper's once
    assert {m["runs"] for n, m in modes.items() if "paper" not in n} == {2} and modes["greedy + HARP paper"]["runs"] == 1
    assert "decode" in err and "floor" in err and "HARP cached" in err     # the table went to stderr


def test_bad_bench_values_are_clear_errors(capsys):
    assert main(["bench", "--repeats", "0", "--no-modes"]) == 2
    assert "repeats must be at least 1" in capsys.readouterr().err


FAKE_LLAMA = '''
import os, time
class Llama:
    """Stands in for llama_cpp.Llama: eval costs 1 ms per token and logs how many it got."""
    def __init__(self, model_path, **kw):
        assert model_path.endswith(".gguf")
        self.log = open(os.environ["FAKE_LLAMA_LOG"], "a")
    def reset(self):
        pass
    def eval(self, tokens):
        self.log.write(f"{len(tokens)}\\n")
        self.log.flush()
        time.sleep(1e-3 * len(tokens))
'''


def test_bench_runs_llama_cpp_under_its_own_interpreter(tmp_path, capsys):
    """--llama-cpp PYTHON: tools/llama_cpp_bench.py runs the same GGUF under that interpreter in the same
    invocation (here a real python whose llama_cpp is a stand-in), and the ratios come back."""
    import os
    import sys
    (tmp_path / "llama_cpp.py").write_text(FAKE_LLAMA)
    wrapper = tmp_path / "python"
    log = tmp_path / "evals.log"
    wrapper.write_text(f"#!/bin/sh\nFAKE_LLAMA_LOG={log} PYTHONPATH={tmp_path} exec {sys.executable} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    assert main(["bench", "--quick", "--no-modes", "--contexts", "--json", "-", "--llama-cpp", str(wrapper)]) == 0
    out, err = capsys.readouterr()
    lc = json.loads(out)["llama_cpp"]
    assert lc["python"] == str(wrapper) and set(lc["prefill"]) == {"64"}
    assert lc["prefill"]["64"] > 0 and lc["decode_tok_s"] > 0
    evals = [int(n) for n in log.read_text().split()]
    assert evals.count(64) >= 2 and evals.count(1) >= 32     # the prompt prefilled, 32 tokens decoded (--quick)
    assert set(lc["ratios"]) == {"decode", "prefill 64"} and all(v > 0 for v in lc["ratios"].values())
    assert "vkharp / llama.cpp: decode" in err


def test_bench_llama_cpp_interpreter_problems(tmp_path, capsys):
    assert main(["bench", "--quick", "--llama-cpp", str(tmp_path / "nope")]) == 2
    assert "not an executable file" in capsys.readouterr().err
    from engine.bench import llama_cpp_external
    r = llama_cpp_external("/bin/false", "x.gguf", [64], 8, 1)      # runs, fails: reported, not raised
    assert "exited 1" in r["error"]


def test_kernel_bench_ratios_are_each_format_over_q4_1_at_its_shape():
    from engine.kernel_bench import Row, ratios_to_q4_1
    row = lambda name, gbs: Row(name, 1.0, gbs, 0.0, None, 0.0)
    r = ratios_to_q4_1([row("matvec q4_1 576x576", 4.0), row("matvec q6_k 576x576", 3.0),
                        row("matvec q4_1 4096x4096", 8.0), row("matvec q2_k 4096x4096", 10.0),
                        row("matvec f16 4096x4096", 2.0), row("matvec q5_0 640x2048", 1.0)])
    assert r == {"576x576": {"q6_k": 0.75}, "4096x4096": {"q2_k": 1.25}}   # f16 is not compared; no q4_1 at 640x2048


def test_format_ab_times_the_formats_in_turn_as_ratios_to_the_first(device):
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("format_ab", Path(__file__).parent.parent / "tools" / "format_ab.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    rows = tool.measure("40x512", ["q4_1", "q8_0", "q6_k"], rounds=2, dispatches=2, device=device)
    assert [r["format"] for r in rows] == ["q4_1", "q8_0", "q6_k"]
    assert rows[0]["ratio"] == 1.0 and all(r["us"] > 0 and r["gbs"] > 0 for r in rows)
    # q8_0 has 34 bytes per 32 weights against q4_1's 20: its ratio is its bytes over q4_1's, per time
    assert abs(rows[1]["ratio"] - (34 / 20) * rows[0]["us"] / rows[1]["us"]) < 1e-9


def test_llama_cpp_killed_by_a_signal_runs_again_without_extra_buffer_types(tmp_path):
    """llama.cpp's AMX path dies of SIGSEGV on VMs that list AMX without granting its tile state: the
    bench runs it once more with --no-extra-bufts and says so."""
    import os
    script = tmp_path / "python"
    script.write_text("#!/bin/sh\ncase \"$*\" in *--no-extra-bufts*) echo '{\"prefill\": {\"64\": 10.0}, "
                      "\"decode_tok_s\": 5.0}';; *) kill -SEGV $$;; esac\n")
    os.chmod(script, 0o755)
    from engine.bench import llama_cpp_external
    r = llama_cpp_external(str(script), "x.gguf", [64], 8, 1)
    assert r["prefill"] == {64: 10.0} and r["decode_tok_s"] == 5.0
    assert "signal 11" in r["note"] and "--no-extra-bufts" in r["note"]
