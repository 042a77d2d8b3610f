"""Unreal clipboard (T3D) ⇄ Blueprint DSL.

``import_t3d_text(text) -> ImportResult(dsl_text, report, diagnostics)`` and
``export_t3d(dsl_text) -> str`` are the entry points (the lesson editor calls
them); ``parse_t3d`` reads the raw format. Mapping tables: ``dsl/packs/blueprint/catalog_ue.json``.
"""
from __future__ import annotations

from .exporter import ExportReport, ExportResult, export_coverage, export_t3d, export_t3d_result
from .importer import ImportReport, ImportResult, import_t3d_text
from .parser import T3DDocument, parse_t3d

__all__ = [
    "ExportReport",
    "ExportResult",
    "ImportReport",
    "ImportResult",
    "T3DDocument",
    "export_coverage",
    "export_t3d",
    "export_t3d_result",
    "import_t3d_text",
    "parse_t3d",
]
