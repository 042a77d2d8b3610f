"""GPU / CPU / RAM telemetry: NVML (nvidia-ml-py) for GPUs, psutil for the host.

``sample()`` returns the payload of a ``gpu`` event.  NVML numbers devices in PCI
order (like nvidia-smi); CUDA/torch may number them differently (fastest first, or
as remapped by CUDA_VISIBLE_DEVICES), so each device's ``torch_index`` is matched by
PCI bus id -- only when torch is already imported by the engine (telemetry never
imports torch itself: the data steps and ``bpllm gpus`` stay light).  Without NVML
(no driver, no GPU) the sample says ``available: false`` with the reason.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

_NVML_LOCK = threading.Lock()
_NVML_STATE: dict[str, Any] = {"init": False, "error": None}


def _nvml():
    """The initialised pynvml module, or raise RuntimeError with a human reason."""
    with _NVML_LOCK:
        if _NVML_STATE["error"]:
            raise RuntimeError(_NVML_STATE["error"])
        try:
            import pynvml
        except ImportError:
            _NVML_STATE["error"] = "no GPU: nvidia-ml-py (pynvml) is not installed"
            raise RuntimeError(_NVML_STATE["error"]) from None
        if not _NVML_STATE["init"]:
            try:
                pynvml.nvmlInit()
            except pynvml.NVMLError as exc:
                _NVML_STATE["error"] = f"no GPU: NVML unavailable ({exc})"
                raise RuntimeError(_NVML_STATE["error"]) from None
            _NVML_STATE["init"] = True
        return pynvml


def _norm_bus(bus: str | bytes | None) -> str:
    """'00000000:01:00.0' / '0000:01:00.0' -> '0000:01:00.0' (lower case)."""
    if bus is None:
        return ""
    if isinstance(bus, bytes):
        bus = bus.decode()
    bus = bus.strip().lower()
    if ":" in bus:
        dom, rest = bus.split(":", 1)
        dom = dom[-4:].rjust(4, "0")
        return f"{dom}:{rest}"
    return bus


def torch_bus_map() -> dict[str, int]:
    """PCI bus id -> torch CUDA index, only if torch is already loaded with CUDA."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {}
    try:
        if not torch.cuda.is_available():
            return {}
        out = {}
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            bus = f"{getattr(p, 'pci_domain_id', 0):04x}:{p.pci_bus_id:02x}:{p.pci_device_id:02x}.0"
            out[_norm_bus(bus)] = i
        return out
    except Exception:  # noqa: BLE001 - telemetry never breaks a run
        return {}


def _proc_name(pid: int) -> str | None:
    try:
        import psutil
        return psutil.Process(pid).name()
    except Exception:  # noqa: BLE001
        return None


def sample_gpus(roles: dict[str, str] | None = None) -> tuple[bool, list[dict[str, Any]], str | None]:
    try:
        nv = _nvml()
    except RuntimeError as exc:
        return False, [], str(exc)
    roles = {str(k): str(v) for k, v in (roles or {}).items()}
    tmap = torch_bus_map()
    me = os.getpid()
    devices = []
    try:
        count = nv.nvmlDeviceGetCount()
    except nv.NVMLError as exc:
        return False, [], f"no GPU: NVML error ({exc})"
    if count == 0:
        return False, [], "no GPU: NVML reports 0 devices"
    for i in range(count):
        try:
            h = nv.nvmlDeviceGetHandleByIndex(i)
            name = nv.nvmlDeviceGetName(h)
            name = name.decode() if isinstance(name, bytes) else name
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            bus = _norm_bus(nv.nvmlDeviceGetPciInfo(h).busId)
            try:
                util = nv.nvmlDeviceGetUtilizationRates(h).gpu
            except nv.NVMLError:
                util = None
            try:
                temp = nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)
            except nv.NVMLError:
                temp = None
            procs = []
            for getter in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
                try:
                    for p in getattr(nv, getter)(h):
                        used = getattr(p, "usedGpuMemory", None) or 0
                        procs.append({"pid": p.pid, "name": _proc_name(p.pid), "mem_used": int(used),
                                      "engine": p.pid == me})
                except (nv.NVMLError, AttributeError):
                    pass
            role = roles.get(str(i)) or ("engine" if any(p["engine"] for p in procs)
                                         else "compute" if bus in tmap else "other")
            devices.append({"index": i, "torch_index": tmap.get(bus), "pci_bus_id": bus, "name": name, "role": role,
                            "mem_used": int(mem.used), "mem_total": int(mem.total),
                            "util": util, "temp": temp, "processes": procs})
        except nv.NVMLError as exc:
            devices.append({"index": i, "name": None, "error": str(exc), "role": roles.get(str(i), "other"),
                            "mem_used": 0, "mem_total": 0, "util": None, "temp": None, "processes": [],
                            "torch_index": None, "pci_bus_id": None})
    return True, devices, None


def sample(roles: dict[str, str] | None = None, cpu_interval: float | None = None) -> dict[str, Any]:
    """One ``gpu`` event payload (GPUs + CPU + RAM).

    CPU % is measured since psutil's previous call: the telemetry thread calls every few seconds,
    so ``None`` suits it; a one-shot caller (``bpllm gpus``) has no previous call, where psutil
    answers a meaningless 0.0, and passes ``cpu_interval`` seconds to measure over."""
    available, devices, reason = sample_gpus(roles)
    out: dict[str, Any] = {"available": available, "devices": devices, "reason": reason}
    try:
        import psutil
        vm = psutil.virtual_memory()
        out["cpu_percent"] = psutil.cpu_percent(interval=cpu_interval)
        out["ram_used"] = int(vm.total - vm.available)
        out["ram_total"] = int(vm.total)
    except Exception:  # noqa: BLE001
        pass
    try:
        out["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return out


class TelemetryThread:
    """Emits a ``gpu`` event every ``interval`` seconds until stopped."""

    def __init__(self, events: Any, *, interval: float = 5.0, roles: dict[str, str] | None = None):
        self.events = events
        self.interval = interval
        self.roles = roles or {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bpllm-telemetry", daemon=True)

    def start(self) -> None:
        try:  # prime psutil: the first event's CPU % then covers the time since start, not a bare 0.0
            import psutil
            psutil.cpu_percent(interval=None)
        except Exception:  # noqa: BLE001 - no psutil: the events carry no CPU figure, as before
            pass
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.time()
            try:
                self.events.emit("gpu", **sample(self.roles))
            except Exception:  # noqa: BLE001 - e.g. events file closed during shutdown
                return
            self._stop.wait(max(0.05, self.interval - (time.time() - t0)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
