"""Where the numbers were measured: hardware and package versions, one record for every
report and benchmark JSON (REPORT.md's environment section, the scoring and peer benches,
the baselines)."""
from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

PACKAGES = ("torch", "pyspark", "delta-spark", "ray", "transformers", "peft", "torch-geometric",
            "pandas", "numpy", "scikit-learn", "matplotlib", "pydantic")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_native_bf16() -> bool:
    """True on x86 CPUs with AVX-512 BF16 or AMX (oneDNN runs bf16 matmuls there at about
    twice the fp32 rate; elsewhere bf16 is emulated and slower than fp32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f" {flag}" in flags for flag in ("avx512_bf16", "amx_bf16"))


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _gpu() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except ImportError:
        pass
    return "none (CPU run)"


def environment() -> dict:
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            versions[p] = "not installed"
    return {
        "cpu": _cpu_model(), "cores": os.cpu_count(), "ram_gib": _ram_gib(), "gpu": _gpu(),
        # whether `model.dtype: auto` serves bf16 here: speed ratios differ across CPUs
        "native_bf16": cpu_has_native_bf16(),
        "os": platform.platform(), "python": platform.python_version(), "packages": versions,
    }
