"""Device layer: enumeration, selection and the clear errors a user sees instead of tracebacks."""
import numpy as np
import pytest

from engine import vulkan_probe
from engine.cli import main
from engine.device import Device, list_devices
from engine.errors import DeviceLimitError, NoVulkanError, VkharpError


def test_devices_have_the_limits_the_engine_needs():
    devs = list_devices()
    assert devs and all(d.max_storage_buffer_range >= 1 << 20 and d.max_workgroup_invocations >= 128 for d in devs)
    assert all(d.type in ("cpu", "integrated", "discrete", "virtual", "other") for d in devs)


def test_missing_loader_names_what_to_install(monkeypatch):
    import ctypes
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(ctypes, "CDLL", lambda name: (_ for _ in ()).throw(OSError(name)))
    with pytest.raises(NoVulkanError, match="install"):
        vulkan_probe.probe_devices()


def test_bad_device_index_and_cli_exit_code(capsys, monkeypatch):
    with pytest.raises(VkharpError, match="does not exist"):
        Device(99)
    monkeypatch.setenv("VKHARP_DEVICE", "not-a-number")
    assert main(["selfcheck"]) == 2
    assert "VKHARP_DEVICE" in capsys.readouterr().err


def test_buffer_over_the_device_limit_is_refused_clearly():
    dev = Device(max_buffer_bytes=4096)
    with pytest.raises(DeviceLimitError, match="MiB"):
        dev.buffer(2000)
    assert dev.buffer(1000).size == 1000
    with pytest.raises(VkharpError, match="float32, uint32 or int32"):
        dev.buffer(np.zeros(4, np.float64))


def test_const_buffers_read_back(device):
    """A weight part reads back as uploaded: host-visible on unified memory, copied back from
    device-local memory otherwise (VKHARP_DEVICE_PROFILE=gpu; its mapping would be no host memory)."""
    data = np.arange(1001, dtype=np.uint32) * np.uint32(2654435761)
    buf = device.upload(data, "w.qs")
    np.testing.assert_array_equal(buf.read(), data)
