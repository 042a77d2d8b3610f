"""Every GPU the engine reports: name, role, NVML ↔ torch index, VRAM bar, utilisation
sparkline, engine processes — or a plain "no GPU — CPU run" state with CPU/RAM."""
from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from bpllm_tui.state import GpuInfo, RunState, format_bytes
from bpllm_tui.widgets._theme import themed

SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int, top: float = 100.0) -> str:
    values = values[-width:]
    return "".join(SPARK[min(len(SPARK) - 1, int(max(0.0, v) / top * (len(SPARK) - 1) + 0.5))] for v in values)


def bar(fraction: float, width: int) -> tuple[str, str]:
    fraction = min(max(fraction, 0.0), 1.0)
    full = int(round(fraction * width))
    return "█" * full, "░" * (width - full)


class GpuPanel(Static):
    DEFAULT_CSS = """
    GpuPanel { height: auto; }
    """

    def sync(self, state: RunState) -> None:
        """The engine's samples while it runs; otherwise the TUI's own NVML reading (from the first paint)."""
        width = max(20, self.size.width - 2 if self.size.width else 40)
        engine = state.gpu_available is not None and (state.active or state.local_gpu is None)
        if engine:
            available, reason, host = state.gpu_available, state.gpu_reason, self._host_line(state)
            gpus = sorted(state.gpus.values(), key=lambda g: g.index)
        elif state.local_gpu is not None:
            local = state.local_gpu
            available, reason = bool(local.get("available")) and bool(local.get("devices")), str(local.get("reason") or "")
            gpus = [local_gpu_info(d) for d in local.get("devices") or () if isinstance(d, dict)]
            host = Text("(NVML read by the TUI itself)", style="dim")
        else:
            self.update(Text("reading NVML…", style="dim"))
            return
        if not available:
            self.update(Group(
                Text("no GPU — CPU run", style=themed(self.app, "bold $warning")),
                Text(reason or "NVML not available", style="dim", overflow="fold"),
                host,
            ))
            return
        parts = [self._gpu(g, width) for g in gpus]
        parts.append(host)
        self.update(Group(*parts))

    def _gpu(self, gpu: GpuInfo, width: int) -> Table:
        frac = gpu.used / gpu.total if gpu.total else 0.0
        table = Table.grid(padding=(0, 1))
        table.add_column(no_wrap=True)
        title = Text()
        title.append(f"GPU {gpu.index}", "bold")
        torch_idx = "—" if gpu.torch_index is None else str(gpu.torch_index)
        title.append(f" (torch {torch_idx}) ", "dim")
        title.append(gpu.name or "?")
        if gpu.role:
            title.append(f"  [{gpu.role}]", themed(self.app, "$accent"))
        table.add_row(title)
        colour = "$success" if frac < 0.8 else "$warning" if frac < 0.95 else "$error"
        filled, empty = bar(frac, max(8, width - 26))
        vram = Text()
        vram.append("VRAM ", "dim")
        vram.append(filled, themed(self.app, colour))
        vram.append(empty, "dim")
        vram.append(f" {format_bytes(gpu.used)}/{format_bytes(gpu.total)}")
        table.add_row(vram)
        util = Text()
        util.append("util ", "dim")
        util.append(sparkline(list(gpu.util), max(8, width - 16)), themed(self.app, "$accent"))
        if gpu.util:
            util.append(f" {gpu.util[-1]:.0f}%")
        if gpu.temperature is not None:
            util.append(f" {gpu.temperature:.0f}°C", "dim")
        table.add_row(util)
        for proc in gpu.processes[:3]:
            table.add_row(Text(f"  pid {proc.get('pid')} {proc.get('name', '')} {format_bytes(proc.get('mem_used') or 0)}",
                               style="dim"))
        return table

    @staticmethod
    def _host_line(state: RunState) -> Text:
        host = state.host
        text = Text(style="dim")
        if "cpu_percent" in host:
            text.append(f"CPU {float(host['cpu_percent']):.0f}%  ")
        if host.get("ram_total"):
            text.append(f"RAM {format_bytes(host.get('ram_used') or 0)}/{format_bytes(host['ram_total'])}")
        return text


def local_gpu_info(d: dict) -> GpuInfo:
    """A GpuInfo from one device of a ``gpu`` sample (the TUI's own reading keeps no history)."""
    info = GpuInfo(int(d.get("index") or 0), name=str(d.get("name") or ""),  # no role: no engine yet
                   used=float(d.get("mem_used") or 0), total=float(d.get("mem_total") or 0),
                   temperature=d.get("temp") if isinstance(d.get("temp"), (int, float)) else None)
    if isinstance(d.get("util"), (int, float)):
        info.util.append(float(d["util"]))
    info.processes = [p for p in d.get("processes") or () if isinstance(p, dict)]
    return info
