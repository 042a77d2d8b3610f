"""GPU / CPU / RAM telemetry: NVML (nvidia-ml-py) for GPUs, psutil for the host.

``sample()`` returns the payload of a ``gpu`` event.  NVML numbers devices in PCI
order (like nvidia-smi); CUDA/torch may number them differently (fastest first, or
as remapped by CUDA_VISIBLE_DEVICES), so each device's ``torch_index`` is matched by
PCI bus id: read from torch when the engine has already imported it, else computed
from NVML's bus ids, CUDA_DEVICE_ORDER and CUDA_VISIBLE_DEVICES (``resolve_torch_indices``;
telemetry never imports torch itself: the TUI, the data steps and ``bpllm gpus`` stay light).  Without NVML
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


def resolve_torch_indices(devices: list[dict[str, Any]], visible: str | None = None,
                          order: str | None = None) -> dict[int, int]:
    """nvidia-smi index -> torch/CUDA index, computed the way CUDA numbers devices (pure: no torch, no NVML).

    ``devices``: one dict per GPU in NVML (= PCI bus) order with ``index``, ``pci_bus_id`` and, for the
    default order, ``uuid``, ``cc`` ((major, minor)) and ``sm`` (multiprocessors or cores). CUDA first
    orders the cards by ``CUDA_DEVICE_ORDER`` (``order``): PCI_BUS_ID = bus order; FASTEST_FIRST (the
    default) = fastest first, approximated here by compute capability then size, ties in bus order. Then
    ``CUDA_VISIBLE_DEVICES`` (``visible``) picks and renumbers: integers index that ordered list, ``GPU-…``
    entries match a UUID prefix; the list ends at the first entry that matches nothing (as in CUDA).
    A GPU torch cannot see is absent from the result."""
    if (order or "").strip().upper() == "PCI_BUS_ID":
        ordered = sorted(devices, key=lambda d: _norm_bus(d.get("pci_bus_id")))
    else:
        ordered = sorted(devices, key=lambda d: (tuple(-x for x in (d.get("cc") or (0, 0))), -int(d.get("sm") or 0),
                                                 _norm_bus(d.get("pci_bus_id"))))
    if visible is None:
        chosen = ordered
    else:
        chosen = []
        for entry in (e.strip() for e in visible.split(",")):
            if not entry:
                break
            hit = None
            if entry.lstrip("+-").isdigit():
                k = int(entry)
                hit = ordered[k] if 0 <= k < len(ordered) else None
            elif entry.upper().startswith("GPU-"):
                hits = [d for d in ordered if str(d.get("uuid") or "").lower().startswith(entry.lower())]
                hit = hits[0] if len(hits) == 1 else None
            if hit is None or hit in chosen:
                break
            chosen.append(hit)
    return {int(d["index"]): i for i, d in enumerate(chosen)}


def _nvml_order_facts(nv, h) -> dict[str, Any]:
    """What CUDA's device order depends on, read from NVML (missing pieces stay None)."""
    out: dict[str, Any] = {}
    for key, getter in (("uuid", "nvmlDeviceGetUUID"), ("cc", "nvmlDeviceGetCudaComputeCapability"),
                        ("sm", "nvmlDeviceGetNumGpuCores")):
        try:
            value = getattr(nv, getter)(h)
            out[key] = value.decode() if isinstance(value, bytes) else value
        except (nv.NVMLError, AttributeError):
            out[key] = None
    return out


def _proc_name(pid: int) -> str | None:
    try:
        import psutil
        return psutil.Process(pid).name()
    except Exception:  # noqa: BLE001 - a name is a nicety: no psutil, or the process already exited
        return None


def sample_gpus(roles: dict[str, str] | None = None) -> tuple[bool, list[dict[str, Any]], str | None]:
    try:
        nv = _nvml()
    except RuntimeError as exc:
        return False, [], str(exc)
    roles = {str(k): str(v) for k, v in (roles or {}).items()}
    tmap = torch_bus_map()  # exact when the engine has torch loaded; computed from NVML otherwise
    me = os.getpid()
    devices = []
    try:
        count = nv.nvmlDeviceGetCount()
    except nv.NVMLError as exc:
        return False, [], f"no GPU: NVML error ({exc})"
    if count == 0:
        return False, [], "no GPU: NVML reports 0 devices"
    if not tmap:
        facts = []
        for i in range(count):
            try:
                h = nv.nvmlDeviceGetHandleByIndex(i)
                facts.append({"index": i, "pci_bus_id": _norm_bus(nv.nvmlDeviceGetPciInfo(h).busId),
                              **_nvml_order_facts(nv, h)})
            except nv.NVMLError:
                continue
        by_index = resolve_torch_indices(facts, os.environ.get("CUDA_VISIBLE_DEVICES"),
                                         os.environ.get("CUDA_DEVICE_ORDER"))
        tmap = {f["pci_bus_id"]: by_index[f["index"]] for f in facts if f["index"] in by_index}
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
            role = roles.get(str(i)) or default_role(count, bus in tmap, any(p["engine"] for p in procs))
            devices.append({"index": i, "torch_index": tmap.get(bus), "pci_bus_id": bus, "name": name, "role": role,
                            "mem_used": int(mem.used), "mem_total": int(mem.total),
                            "util": util, "temp": temp, "processes": procs})
        except nv.NVMLError as exc:
            devices.append({"index": i, "name": None, "error": str(exc), "role": roles.get(str(i), "other"),
                            "mem_used": 0, "mem_total": 0, "util": None, "temp": None, "processes": [],
                            "torch_index": None, "pci_bus_id": None})
    return True, devices, None


def default_role(count: int, visible: bool, engine_here: bool) -> str:
    """A GPU's role when the config names none: a machine's only GPU trains (it is the one there is)."""
    if count == 1 and visible:
        return "training"
    return "engine" if engine_here else "compute" if visible else "other"


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
    except Exception:  # noqa: BLE001 - no psutil: no CPU/RAM figures (the event's fields stay absent)
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
            except Exception as exc:  # noqa: BLE001 - telemetry never breaks a run: it stops, and says so
                if not self._stop.is_set():  # the events file closed during shutdown is no news
                    print(f"bpllm: GPU telemetry stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
                return
            self._stop.wait(max(0.05, self.interval - (time.time() - t0)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
