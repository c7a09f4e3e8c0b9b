"""User-facing errors: every failure a user can cause or fix says what is wrong and what to do."""


class VkharpError(Exception):
    """An error whose message is meant for the user as-is (the CLI prints it without a traceback)."""


class NoVulkanError(VkharpError):
    """No Vulkan loader, no device, or a driver that fails to start."""


class DeviceLimitError(VkharpError):
    """A request exceeds what the selected device supports."""


class ShaderBuildError(VkharpError):
    """A GLSL shader could not be compiled."""
