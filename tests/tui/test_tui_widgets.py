"""Dashboard widgets on their own: braille loss chart, GPU panel, status bar (stall / dead), mastery table."""
from __future__ import annotations

import time

import pytest
from textual.app import App, ComposeResult

from bpllm_tui.state import RunState, ema_debiased
from bpllm_tui.widgets.gpu_panel import GpuPanel
from bpllm_tui.widgets.loss_chart import LossChart
from bpllm_tui.widgets.mastery_table import MasteryTable
from bpllm_tui.widgets.status_bar import StatusBar
from tests.tui_helpers import aio


def ev(seq: int, type_: str, **payload) -> dict:
    return {"v": 1, "seq": seq, "ts": 1_772_323_200.0 + seq, "run_id": "r1", "type": type_, **payload}


class Host(App):
    def __init__(self, widget) -> None:
        super().__init__()
        self.widget = widget

    def compose(self) -> ComposeResult:
        yield self.widget


def rendered(widget) -> str:
    return "\n".join(widget.render_line(y).text for y in range(widget.size.height))


def lines(widget) -> str:
    return "\n".join(strip.text for strip in widget.render_lines(widget.region.reset_offset))


def test_debiased_ema_starts_at_the_first_value_and_tracks_a_constant():
    assert ema_debiased([5.0, 5.0, 5.0], 0.9) == pytest.approx([5.0, 5.0, 5.0])
    smooth = ema_debiased([4.0, 2.0], 0.5)
    assert smooth[0] == pytest.approx(4.0)  # a plain EMA would say 2.0
    assert smooth[1] == pytest.approx((0.5 * 2.0 + 0.25 * 4.0) / 0.75)


@aio
async def test_loss_chart_draws_braille_eval_marks_and_toggles():
    chart = LossChart()
    async with Host(chart).run_test(size=(80, 20)) as pilot:
        assert "no training steps yet" in rendered(chart)
        chart.set_data([(i, 3.0 / (1 + i / 10)) for i in range(1, 400)], [(100, 0.5), (300, 0.3)])
        await pilot.pause()
        text = rendered(chart)
        assert any(0x2800 < ord(c) <= 0x28FF for c in text), "braille dots"
        assert text.count("◆") == 2
        assert "step 1" in text and "399" in text and "all" in text
        top_linear = text.splitlines()[0]
        chart.log_scale = True
        chart.window = 50
        await pilot.pause()
        text = rendered(chart)
        assert "log last 50" in text and "step 350" in text
        assert "◆" not in text  # both eval points are before the window
        assert text.splitlines()[0] != top_linear


@aio
async def test_gpu_panel_shows_every_gpu_or_a_clear_cpu_state():
    state = RunState()
    panel = GpuPanel()
    async with Host(panel).run_test(size=(60, 20)) as pilot:
        panel.sync(state)
        await pilot.pause()
        assert "reading NVML" in lines(panel)  # until the TUI's own NVML reading arrives
        state.apply(ev(1, "gpu", available=False, devices=[], reason="no GPU: NVML Shared Library Not Found",
                       cpu_percent=50.0, ram_used=2**30, ram_total=8 * 2**30))
        panel.sync(state)
        await pilot.pause()
        assert "no GPU — CPU run" in lines(panel) and "NVML Shared Library" in lines(panel)
        state.apply(ev(2, "gpu", available=True, cpu_percent=10.0, devices=[
            {"index": 0, "torch_index": 1, "name": "RTX PRO 6000", "role": "training", "mem_used": 80 * 2**30,
             "mem_total": 96 * 2**30, "util": 97, "temp": 71,
             "processes": [{"pid": 4242, "name": "python", "mem_used": 79 * 2**30}]},
            {"index": 1, "torch_index": 0, "name": "RTX 4070", "role": "display", "mem_used": 2**30,
             "mem_total": 12 * 2**30, "util": 3, "temp": 40, "processes": []},
        ]))
        panel.sync(state)
        await pilot.pause()
        text = lines(panel)
        assert "GPU 0 (torch 1) RTX PRO 6000" in text and "[training]" in text
        assert "GPU 1 (torch 0) RTX 4070" in text and "[display]" in text
        assert "80.0 GiB/96.0 GiB" in text and "97%" in text and "pid 4242" in text


@aio
async def test_status_bar_warns_on_a_stale_heartbeat_and_shows_dead_engines():
    state = RunState()
    bar = StatusBar(stall_seconds=60)
    async with Host(bar).run_test(size=(160, 3)):
        state.apply(ev(1, "run", phase="start", profile="big", plan=[]))
        state.set_process("running")
        now = time.time()
        state.set_heartbeat({"pid": 1, "status": "running", "phase": "training", "updated_at": now - 1,
                             "progress_at": now - 300})
        bar.sync(state)
        text = str(bar.render())
        assert "RUNNING" in text and "big" in text and "training" in text
        assert "STALL?" in text and "no progress 5m00s" in text
        state.set_heartbeat({"pid": 1, "status": "running", "phase": "training", "updated_at": now,
                             "progress_at": now})
        bar.sync(state)
        assert "STALL?" not in str(bar.render())
        state.set_process("dead", "engine pid 1 is gone")
        bar.sync(state)
        assert "DEAD" in str(bar.render()) and "engine pid 1 is gone" in str(bar.render())
        state.apply(ev(2, "run", phase="end", status="failed", exit_code=1))
        bar.sync(state)
        assert "FAILED" in str(bar.render()) and "exit 1" in str(bar.render())


@aio
async def test_mastery_table_sorts_weakest_first_and_updates_in_place():
    state = RunState()
    table = MasteryTable()
    async with Host(table).run_test(size=(60, 12)):
        state.apply(ev(1, "mastery", version="v1", nodes=[{"node": "A", "score": 90, "n": 3},
                                                         {"node": "B", "score": 40, "n": 5}]))
        table.sync(state)
        assert [str(table.get_row_at(i)[0]) for i in range(2)] == ["B", "A"]
        table.move_cursor(row=1)
        state.apply(ev(2, "mastery", version="v2", nodes=[{"node": "B", "score": 95, "n": 6}]))
        table.sync(state)
        assert table.row_count == 2
        assert [str(table.get_row_at(i)[0]) for i in range(2)] == ["A", "B"]
        assert table.cursor_row == 0, "the cursor stays on the node it was on (A)"
        state.apply(ev(3, "mastery", version="v2", nodes=[{"node": "A", "score": 91, "n": 4}]))
        table.sync(state)  # same order: cells change in place
        assert "91.0" in str(table.get_row("A")[1]) and table.cursor_row == 0
        row_b = table.get_row("B")
        assert "+55.0" in str(row_b[3]) and "product" in str(row_b[4])  # 95: product quality with retry


def test_eta_counts_down_from_the_engines_last_estimate():
    state = RunState()
    state.apply(ev(1, "run", phase="start", plan=[{"id": "4.3", "name": "Training loop", "parent": None}]))
    state.set_process("running")
    state.apply(ev(2, "step", id="4.3", name="Training loop", status="start", eta=60.0))
    t = 1_772_323_200.0 + 2
    assert state.eta(now=t + 20) == pytest.approx(40.0)
    assert state.eta_text(now=t + 20) == "40s" and state.eta_text(now=t + 75) == "+15s over"
    state.apply(ev(30, "step", id="4.3", name="Training loop", status="progress", n=5, total=10, eta=10.0))
    assert state.eta(now=1_772_323_200.0 + 30 + 4) == pytest.approx(6.0)
    state.apply(ev(31, "step", id="4.3", name="Training loop", status="complete", duration=29.0))
    assert state.eta() is None
