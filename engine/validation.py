"""The Khronos validation layer, with synchronization validation, when asked for (VKHARP_VALIDATE=1).

kp is built without its own debug layers (tools/kp/patches/0003), so validation runs only through
the loader: this module points `VK_INSTANCE_LAYERS` at `VK_LAYER_KHRONOS_validation` and
`VK_LAYER_SETTINGS_PATH` at a settings file that turns on synchronization validation and logs every
error, warning and performance warning to a file. It must run before the first Vulkan instance of
the process; `probe_devices()` and `Device()` call `setup()`, so setting the variable is enough:

    VKHARP_VALIDATE=1 [VKHARP_VALIDATION_LOG=DIR] vkharp generate -p "Hello"

The test suite's gate (tests/test_validation.py) runs the engine this way and fails on any message.
"""
from __future__ import annotations

import os
import re
import tempfile

LAYER = "VK_LAYER_KHRONOS_validation"
SETTINGS = """\
khronos_validation.debug_action = VK_DBG_LAYER_ACTION_LOG_MSG
khronos_validation.report_flags = error,warn,perf
khronos_validation.log_filename = {log}
khronos_validation.enables = VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT
khronos_validation.duplicate_message_limit = 100000
"""
# One logged message starts at an unindented line naming its ID and severity, e.g.
# "SYNC-HAZARD-READ-AFTER-WRITE(ERROR / SPEC): msgNum: ..."; its object list follows, indented.
_MESSAGE = re.compile(r"^\S.*?msgNum: ", re.M)


def requested() -> bool:
    return os.environ.get("VKHARP_VALIDATE", "").strip().lower() in ("1", "true", "yes", "on")


def setup() -> str | None:
    """Configure the loader for validation if VKHARP_VALIDATE is set; returns this process's log file.

    VKHARP_VALIDATION_LOG names a directory (default: vkharp-validation in the temp directory); each
    process logs to its own file there (vk-PID.log), so that processes started by a test or by the
    chat never write over each other's log."""
    if not requested():
        return None
    folder = os.environ.get("VKHARP_VALIDATION_LOG") or os.path.join(tempfile.gettempdir(), "vkharp-validation")
    folder = os.path.abspath(folder)
    os.environ["VKHARP_VALIDATION_LOG"] = folder
    log = os.path.join(folder, f"vk-{os.getpid()}.log")
    settings_dir = os.path.join(folder, f"settings-{os.getpid()}")
    os.makedirs(settings_dir, exist_ok=True)
    settings = os.path.join(settings_dir, "vk_layer_settings.txt")
    with open(settings, "w") as f:
        f.write(SETTINGS.format(log=log))
    layers = [x for x in os.environ.get("VK_INSTANCE_LAYERS", "").split(os.pathsep) if x]
    if LAYER not in layers:
        os.environ["VK_INSTANCE_LAYERS"] = os.pathsep.join([LAYER] + layers)
    os.environ["VK_LAYER_SETTINGS_PATH"] = settings
    return log


def messages(folder: str) -> list[str]:
    """The messages the layer wrote to the logs in `folder` (or to one log file), one string each."""
    paths = ([os.path.join(folder, n) for n in sorted(os.listdir(folder)) if n.endswith(".log")]
             if os.path.isdir(folder) else [folder] if os.path.exists(folder) else [])
    out = []
    for path in paths:
        with open(path, errors="replace") as f:
            text = f.read()
        starts = [m.start() for m in _MESSAGE.finditer(text)]
        if text.strip() and not starts:   # a format this parser does not know is still a message
            out.append(text.strip())
        out += [text[a:b].strip() for a, b in zip(starts, starts[1:] + [len(text)])]
    return out


HINT = ("the Khronos validation layer is not installed: `apt-get install vulkan-validationlayers` "
        "(Debian/Ubuntu) or the Vulkan SDK")
