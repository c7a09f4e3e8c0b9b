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
    # epilogues, the KV append in RoPE): 6 dispatches, plus embed, head and sampling
    assert dec["dispatches"] <= 6 * dec["layers"] + 3
    if "kernels" in r:   # devices with timestamps: the matrix-vector products dominate a decode step
        names = [k["kernel"] for k in r["kernels"]]
        assert any(n.startswith("matvec") for n in names[:3]) and any(n.startswith("sample") for n in names)
        assert 0 < r["sampling_share"] < 1
    modes = {m["mode"]: m for m in r["modes"]}
    assert set(modes) == {"greedy", "greedy + HARP cached", "greedy + HARP paper", "sampling", "sampling + rollback"}
    assert modes["greedy"]["hesitant"] == 0 and modes["greedy + HARP cached"]["hesitant"] > 0
    assert "decode" in err and "floor" in err and "HARP cached" in err     # the table went to stderr


def test_bad_bench_values_are_clear_errors(capsys):
    assert main(["bench", "--repeats", "0", "--no-modes"]) == 2
    assert "repeats must be at least 1" in capsys.readouterr().err
