"""Published peak numbers for every GPU SKU vidur 0.0.26 knows (``vidur.types.DeviceSKUType``).

vidur's own ``BaseDeviceSKUConfig`` carries only ``fp16_tflops`` and memory size, but a roofline also needs memory
bandwidth (decode is bandwidth-bound) and the GPU-to-GPU link bandwidth (tensor/pipeline-parallel traffic). The
figures below are the vendor datasheet values for *dense* FP16/BF16 tensor throughput with FP32 accumulation (the
mode PyTorch/cuBLAS GEMMs use), i.e. without the 2:4 structured-sparsity doubling the datasheets print next to them.

Usage::

    from envs.sim.devices import get_device
    get_device("h100").hbm_bandwidth_tb_s  # 3.35
"""

from __future__ import annotations

from dataclasses import dataclass

from envs.errors import WarmRouteError


@dataclass(frozen=True)
class DeviceSpec:
    """Peak capabilities of one GPU; efficiency factors are applied by the predictor, not here."""

    name: str
    """vidur device string (``ReplicaConfig.device``), lower case."""
    peak_fp16_tflops: float
    """Dense FP16/BF16 tensor-core throughput, TFLOP/s."""
    hbm_bandwidth_tb_s: float
    """Device memory (HBM or GDDR) bandwidth, TB/s."""
    memory_gb: float
    """Device memory capacity, GB (vidur's own table, used for KV-cache sizing, may differ slightly)."""
    source: str
    """Datasheet the numbers come from."""
    link_bandwidth_gb_s: float
    """GPU-to-GPU bandwidth per direction, GB/s (NVLink where the SKU has it, else PCIe); for TP/PP traffic."""
    host_link_gb_s: float = 32.0
    """GPU-to-host (PCIe x16) bandwidth per direction, GB/s: Gen5 64, Gen4 32; for host-tier KV loads."""


_DEVICES: dict[str, DeviceSpec] = {
    spec.name: spec
    for spec in (
        DeviceSpec(
            name="a40",
            peak_fp16_tflops=149.7,
            hbm_bandwidth_tb_s=0.696,
            memory_gb=48.0,
            source="NVIDIA A40 datasheet (GA102, 48 GB GDDR6, NVLink bridge 112.5 GB/s bidirectional)",
            link_bandwidth_gb_s=56.25,
        ),
        DeviceSpec(
            name="a100",
            peak_fp16_tflops=312.0,
            hbm_bandwidth_tb_s=2.039,
            memory_gb=80.0,
            source="NVIDIA A100 Tensor Core GPU datasheet, A100 80GB SXM (HBM2e, NVLink 600 GB/s bidirectional)",
            link_bandwidth_gb_s=300.0,
        ),
        DeviceSpec(
            name="h100",
            peak_fp16_tflops=989.4,
            hbm_bandwidth_tb_s=3.35,
            memory_gb=80.0,
            source="NVIDIA H100 Tensor Core GPU datasheet, H100 SXM (HBM3, NVLink 900 GB/s bidirectional)",
            link_bandwidth_gb_s=450.0,
            host_link_gb_s=64.0,
        ),
        DeviceSpec(
            name="l40",
            peak_fp16_tflops=181.05,
            hbm_bandwidth_tb_s=0.864,
            memory_gb=48.0,
            source="NVIDIA L40 GPU datasheet (AD102, 48 GB GDDR6, no NVLink: PCIe Gen4 x16 64 GB/s bidirectional)",
            link_bandwidth_gb_s=32.0,
        ),
    )
}

DEVICE_NAMES: tuple[str, ...] = tuple(_DEVICES)
"""All known device names, in vidur's ``DeviceSKUType`` order."""


def get_device(name: str) -> DeviceSpec:
    """Look up a device by its vidur name (case-insensitive); unknown names fail loudly rather than guess."""
    spec = _DEVICES.get(name.strip().lower())
    if spec is None:
        raise WarmRouteError(f"unknown device '{name}'; choose one of: {', '.join(DEVICE_NAMES)}")
    return spec
