"""What the Blender tests share (not a test module): whether real Blender is here, and the corpus folder.

bpy is looked up, not imported: importing it at collection would start Blender for every test run."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLEND_CORPUS = (ROOT.parent / "shared" / "corpus" / "blender" / "files").resolve()
HAVE_BPY = importlib.util.find_spec("bpy") is not None
BPY_MISSING = "bpy (Blender as a Python module) is not installed: pip install 'bpllm[blender]' (Python 3.11)"
need_bpy = pytest.mark.skipif(not HAVE_BPY, reason=BPY_MISSING)
need_blend_corpus = pytest.mark.skipif(not BLEND_CORPUS.is_dir(),
                                       reason=f"the Blender corpus is absent ({BLEND_CORPUS}; CI has it)")
