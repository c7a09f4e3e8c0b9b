"""Query Vulkan device properties that kp does not expose, straight from the loader via ctypes.

kp's `list_devices()` gives only the name and work-group limits. The engine also needs the device
type (to decide where weights live), `maxStorageBufferRange` (to split tensors), the subgroup size,
shared-memory size and heap sizes. This module asks the Vulkan loader directly, with no compiled
code and no `vulkaninfo`. It never imports kp, so it also tells a clear story when no loader or no
device exists. Structure layouts follow vulkan_core.h (1.1).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from dataclasses import dataclass, field

from .errors import NoVulkanError

# VkPhysicalDeviceLimits, field by field from vulkan_core.h: name:type[count].
# I=uint32, i=int32, f=float, Q=uint64 (VkDeviceSize, size_t on 64-bit hosts).
_LIMITS = (
    "maxImageDimension1D:I maxImageDimension2D:I maxImageDimension3D:I maxImageDimensionCube:I "
    "maxImageArrayLayers:I maxTexelBufferElements:I maxUniformBufferRange:I maxStorageBufferRange:I "
    "maxPushConstantsSize:I maxMemoryAllocationCount:I maxSamplerAllocationCount:I "
    "bufferImageGranularity:Q sparseAddressSpaceSize:Q maxBoundDescriptorSets:I "
    "maxPerStageDescriptorSamplers:I maxPerStageDescriptorUniformBuffers:I "
    "maxPerStageDescriptorStorageBuffers:I maxPerStageDescriptorSampledImages:I "
    "maxPerStageDescriptorStorageImages:I maxPerStageDescriptorInputAttachments:I "
    "maxPerStageResources:I maxDescriptorSetSamplers:I maxDescriptorSetUniformBuffers:I "
    "maxDescriptorSetUniformBuffersDynamic:I maxDescriptorSetStorageBuffers:I "
    "maxDescriptorSetStorageBuffersDynamic:I maxDescriptorSetSampledImages:I "
    "maxDescriptorSetStorageImages:I maxDescriptorSetInputAttachments:I maxVertexInputAttributes:I "
    "maxVertexInputBindings:I maxVertexInputAttributeOffset:I maxVertexInputBindingStride:I "
    "maxVertexOutputComponents:I maxTessellationGenerationLevel:I maxTessellationPatchSize:I "
    "maxTessellationControlPerVertexInputComponents:I maxTessellationControlPerVertexOutputComponents:I "
    "maxTessellationControlPerPatchOutputComponents:I maxTessellationControlTotalOutputComponents:I "
    "maxTessellationEvaluationInputComponents:I maxTessellationEvaluationOutputComponents:I "
    "maxGeometryShaderInvocations:I maxGeometryInputComponents:I maxGeometryOutputComponents:I "
    "maxGeometryOutputVertices:I maxGeometryTotalOutputComponents:I maxFragmentInputComponents:I "
    "maxFragmentOutputAttachments:I maxFragmentDualSrcAttachments:I "
    "maxFragmentCombinedOutputResources:I maxComputeSharedMemorySize:I maxComputeWorkGroupCount:I3 "
    "maxComputeWorkGroupInvocations:I maxComputeWorkGroupSize:I3 subPixelPrecisionBits:I "
    "subTexelPrecisionBits:I mipmapPrecisionBits:I maxDrawIndexedIndexValue:I maxDrawIndirectCount:I "
    "maxSamplerLodBias:f maxSamplerAnisotropy:f maxViewports:I maxViewportDimensions:I2 "
    "viewportBoundsRange:f2 viewportSubPixelBits:I minMemoryMapAlignment:Q "
    "minTexelBufferOffsetAlignment:Q minUniformBufferOffsetAlignment:Q "
    "minStorageBufferOffsetAlignment:Q minTexelOffset:i maxTexelOffset:I minTexelGatherOffset:i "
    "maxTexelGatherOffset:I minInterpolationOffset:f maxInterpolationOffset:f "
    "subPixelInterpolationOffsetBits:I maxFramebufferWidth:I maxFramebufferHeight:I "
    "maxFramebufferLayers:I framebufferColorSampleCounts:I framebufferDepthSampleCounts:I "
    "framebufferStencilSampleCounts:I framebufferNoAttachmentsSampleCounts:I maxColorAttachments:I "
    "sampledImageColorSampleCounts:I sampledImageIntegerSampleCounts:I sampledImageDepthSampleCounts:I "
    "sampledImageStencilSampleCounts:I storageImageSampleCounts:I maxSampleMaskWords:I "
    "timestampComputeAndGraphics:I timestampPeriod:f maxClipDistances:I maxCullDistances:I "
    "maxCombinedClipAndCullDistances:I discreteQueuePriorities:I pointSizeRange:f2 lineWidthRange:f2 "
    "pointSizeGranularity:f lineWidthGranularity:f strictLines:I standardSampleLocations:I "
    "optimalBufferCopyOffsetAlignment:Q optimalBufferCopyRowPitchAlignment:Q nonCoherentAtomSize:Q"
)
_CTYPES = {"I": ctypes.c_uint32, "i": ctypes.c_int32, "f": ctypes.c_float, "Q": ctypes.c_uint64}


def _limits_fields():
    out = []
    for item in _LIMITS.split():
        name, spec = item.split(":")
        ctype = _CTYPES[spec[0]]
        out.append((name, ctype * int(spec[1:]) if len(spec) > 1 else ctype))
    return out


class _Limits(ctypes.Structure):
    _fields_ = _limits_fields()


class _Properties(ctypes.Structure):
    _fields_ = [("apiVersion", ctypes.c_uint32), ("driverVersion", ctypes.c_uint32),
                ("vendorID", ctypes.c_uint32), ("deviceID", ctypes.c_uint32),
                ("deviceType", ctypes.c_uint32), ("deviceName", ctypes.c_char * 256),
                ("pipelineCacheUUID", ctypes.c_uint8 * 16), ("limits", _Limits),
                ("sparseProperties", ctypes.c_uint32 * 5)]


class _SubgroupProperties(ctypes.Structure):
    _fields_ = [("sType", ctypes.c_int32), ("pNext", ctypes.c_void_p),
                ("subgroupSize", ctypes.c_uint32), ("supportedStages", ctypes.c_uint32),
                ("supportedOperations", ctypes.c_uint32), ("quadOperationsInAllStages", ctypes.c_uint32)]


class _Properties2(ctypes.Structure):
    _fields_ = [("sType", ctypes.c_int32), ("pNext", ctypes.c_void_p), ("properties", _Properties)]


class _MemoryHeap(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint64), ("flags", ctypes.c_uint32)]


class _MemoryType(ctypes.Structure):
    _fields_ = [("propertyFlags", ctypes.c_uint32), ("heapIndex", ctypes.c_uint32)]


class _MemoryProperties(ctypes.Structure):
    _fields_ = [("memoryTypeCount", ctypes.c_uint32), ("memoryTypes", _MemoryType * 32),
                ("memoryHeapCount", ctypes.c_uint32), ("memoryHeaps", _MemoryHeap * 16)]


class _AppInfo(ctypes.Structure):
    _fields_ = [("sType", ctypes.c_int32), ("pNext", ctypes.c_void_p),
                ("pApplicationName", ctypes.c_char_p), ("applicationVersion", ctypes.c_uint32),
                ("pEngineName", ctypes.c_char_p), ("engineVersion", ctypes.c_uint32),
                ("apiVersion", ctypes.c_uint32)]


class _InstanceInfo(ctypes.Structure):
    _fields_ = [("sType", ctypes.c_int32), ("pNext", ctypes.c_void_p), ("flags", ctypes.c_uint32),
                ("pApplicationInfo", ctypes.POINTER(_AppInfo)), ("enabledLayerCount", ctypes.c_uint32),
                ("ppEnabledLayerNames", ctypes.c_void_p), ("enabledExtensionCount", ctypes.c_uint32),
                ("ppEnabledExtensionNames", ctypes.c_void_p)]


_DEVICE_TYPES = {0: "other", 1: "integrated", 2: "discrete", 3: "virtual", 4: "cpu"}
_VK_API_1_1 = (1 << 22) | (1 << 12)
_ST_APP_INFO, _ST_INSTANCE_INFO = 0, 1
_ST_PROPERTIES2, _ST_SUBGROUP = 1000059001, 1000094000
_HEAP_DEVICE_LOCAL = 1
_SUBGROUP_ARITHMETIC, _STAGE_COMPUTE = 0x4, 0x20
_VK_ERROR_LAYER_NOT_PRESENT = -6
_PORTABILITY_ENUMERATION = "VK_KHR_portability_enumeration"
_ENUMERATE_PORTABILITY_BIT = 0x1

INSTALL_HINT = {
    "linux": "install the Vulkan loader and a driver: `apt-get install libvulkan1 mesa-vulkan-drivers` "
             "(Mesa's lavapipe runs on any CPU), or your GPU vendor's Vulkan driver",
    "darwin": "install MoltenVK and the loader: `brew install molten-vk vulkan-loader`",
    "win32": "install the Vulkan SDK (https://vulkan.lunarg.com) or an up-to-date GPU driver",
}


# Loader variables that replace (or add to) the drivers the system would find; when one is set, a
# failure is about what it names, and "install a driver" points the wrong way.
DRIVER_VARIABLES = ("VK_DRIVER_FILES", "VK_ICD_FILENAMES", "VK_ADD_DRIVER_FILES")


def driver_variable_hint() -> str | None:
    """What to fix when a driver variable is set: a path in it that does not exist, or the variable."""
    for var in DRIVER_VARIABLES:
        value = os.environ.get(var)
        if not value:
            continue
        missing = [p for p in value.split(os.pathsep) if p and not os.path.exists(p)]
        if missing:
            which = "which does not exist" if len(missing) == 1 else "which do not exist"
            return (f"{var} names {', '.join(missing)}, {which}: fix the path, or unset {var} to use "
                    f"the installed drivers")
        if var != "VK_ADD_DRIVER_FILES":
            return (f"{var}={value} limits Vulkan to the driver(s) it names: check them, or unset {var} to use "
                    f"the installed drivers")
    return None


def install_hint() -> str:
    return driver_variable_hint() or INSTALL_HINT.get(sys.platform, INSTALL_HINT["linux"])


@dataclass
class DeviceInfo:
    """What the engine needs to know about one Vulkan physical device."""
    index: int
    name: str
    type: str                       # cpu | integrated | discrete | virtual | other
    vendor_id: int = 0
    api_version: str = "1.1"
    max_storage_buffer_range: int = 128 << 20
    max_workgroup_invocations: int = 128
    max_workgroup_size: tuple = (128, 128, 64)
    max_workgroup_count: tuple = (65535, 65535, 65535)
    max_shared_memory: int = 16384
    max_texel_elements: int = 65536   # maxTexelBufferElements (texels of one texel-buffer view)
    subgroup_size: int = 1
    subgroup_ops: int = 0           # VkSubgroupFeatureFlags in compute shaders (0 when unknown)
    timestamps: bool = False
    timestamp_period_ns: float = 1.0
    device_local_bytes: int = 0
    probed: bool = True             # False when these are conservative defaults
    extras: dict = field(default_factory=dict)

    @property
    def subgroup_arithmetic(self) -> bool:
        """subgroupAdd & co. are usable in compute shaders (optional in Vulkan 1.1)."""
        return bool(self.subgroup_ops & _SUBGROUP_ARITHMETIC)

    @property
    def unified_memory(self) -> bool:
        """Device memory is host memory (CPU or integrated GPU): weights need no second copy."""
        return self.type in ("cpu", "integrated")


def _load_loader():
    names = {"darwin": ["libvulkan.1.dylib", "libvulkan.dylib", "libMoltenVK.dylib"],
             "win32": ["vulkan-1.dll"]}.get(sys.platform, ["libvulkan.so.1", "libvulkan.so"])
    found = ctypes.util.find_library("vulkan")
    if found:
        names.append(found)
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise NoVulkanError(f"No Vulkan loader found (tried {', '.join(names)}): {install_hint()}.")


def _version(v: int) -> str:
    return f"{v >> 22}.{(v >> 12) & 0x3FF}.{v & 0xFFF}"


class _ExtensionProperties(ctypes.Structure):
    _fields_ = [("extensionName", ctypes.c_char * 256), ("specVersion", ctypes.c_uint32)]


def instance_extensions(vk=None) -> list[str]:
    """The instance extensions the loader offers (no layer)."""
    vk = vk or _load_loader()
    count = ctypes.c_uint32(0)
    vk.vkEnumerateInstanceExtensionProperties.restype = ctypes.c_int32
    if vk.vkEnumerateInstanceExtensionProperties(None, ctypes.byref(count), None) != 0:
        return []
    props = (_ExtensionProperties * count.value)()
    vk.vkEnumerateInstanceExtensionProperties(None, ctypes.byref(count), props)
    return [p.extensionName.decode(errors="replace") for p in props[:count.value]]


def probe_devices() -> list[DeviceInfo]:
    """Enumerate physical devices in the loader's order (the order kp's device index uses).

    Like our patched kp (tools/kp/patches/0004), the probe enables VK_KHR_portability_enumeration
    where the loader offers it, so that both see the same devices, MoltenVK included."""
    from . import validation
    validation.setup()
    vk = _load_loader()
    void_p = ctypes.c_void_p
    vk.vkCreateInstance.restype = ctypes.c_int32
    vk.vkEnumeratePhysicalDevices.restype = ctypes.c_int32
    app = _AppInfo(_ST_APP_INFO, None, b"vkharp-probe", 1, b"vkharp", 1, _VK_API_1_1)
    if _PORTABILITY_ENUMERATION in instance_extensions(vk):
        names = (ctypes.c_char_p * 1)(_PORTABILITY_ENUMERATION.encode())
        info = _InstanceInfo(_ST_INSTANCE_INFO, None, _ENUMERATE_PORTABILITY_BIT, ctypes.pointer(app), 0, None,
                             1, ctypes.cast(names, ctypes.c_void_p))
    else:
        info = _InstanceInfo(_ST_INSTANCE_INFO, None, 0, ctypes.pointer(app), 0, None, 0, None)
    instance = void_p()
    rc = vk.vkCreateInstance(ctypes.byref(info), None, ctypes.byref(instance))
    if rc == _VK_ERROR_LAYER_NOT_PRESENT and validation.requested():
        raise NoVulkanError(f"VKHARP_VALIDATE is set but {validation.HINT}.")
    if rc != 0:
        raise NoVulkanError(f"The Vulkan loader could not create an instance (VkResult {rc}): "
                            f"{install_hint()}.")
    try:
        count = ctypes.c_uint32(0)
        rc = vk.vkEnumeratePhysicalDevices(instance, ctypes.byref(count), None)
        if rc != 0 or count.value == 0:
            raise NoVulkanError(f"Vulkan found no device (VkResult {rc}): {install_hint()}.")
        handles = (void_p * count.value)()
        vk.vkEnumeratePhysicalDevices(instance, ctypes.byref(count), handles)
        return [_describe(vk, i, h) for i, h in enumerate(handles[:count.value])]
    finally:
        vk.vkDestroyInstance(instance, None)


def _describe(vk, index: int, handle) -> DeviceInfo:
    sub = _SubgroupProperties(_ST_SUBGROUP, None, 0, 0, 0, 0)
    props2 = _Properties2(_ST_PROPERTIES2, ctypes.cast(ctypes.pointer(sub), ctypes.c_void_p))
    getter = getattr(vk, "vkGetPhysicalDeviceProperties2", None)
    if getter is not None:
        getter(ctypes.c_void_p(handle), ctypes.byref(props2))
        props = props2.properties
    else:  # a 1.0-only loader: no subgroup query
        props = _Properties()
        vk.vkGetPhysicalDeviceProperties(ctypes.c_void_p(handle), ctypes.byref(props))
    mem = _MemoryProperties()
    vk.vkGetPhysicalDeviceMemoryProperties(ctypes.c_void_p(handle), ctypes.byref(mem))
    local = sum(mem.memoryHeaps[i].size for i in range(mem.memoryHeapCount)
                if mem.memoryHeaps[i].flags & _HEAP_DEVICE_LOCAL)
    lim = props.limits
    return DeviceInfo(
        index=index,
        name=props.deviceName.decode(errors="replace"),
        type=_DEVICE_TYPES.get(props.deviceType, "other"),
        vendor_id=props.vendorID,
        api_version=_version(props.apiVersion),
        max_storage_buffer_range=int(lim.maxStorageBufferRange),
        max_workgroup_invocations=int(lim.maxComputeWorkGroupInvocations),
        max_workgroup_size=tuple(lim.maxComputeWorkGroupSize),
        max_workgroup_count=tuple(lim.maxComputeWorkGroupCount),
        max_shared_memory=int(lim.maxComputeSharedMemorySize),
        max_texel_elements=int(lim.maxTexelBufferElements),
        subgroup_size=int(sub.subgroupSize) or 1,
        subgroup_ops=int(sub.supportedOperations) if sub.supportedStages & _STAGE_COMPUTE else 0,
        timestamps=bool(lim.timestampComputeAndGraphics),
        timestamp_period_ns=float(lim.timestampPeriod),
        device_local_bytes=int(local),
    )
