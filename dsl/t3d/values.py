"""Pin values both ways: Unreal ``DefaultValue`` text ⇄ DSL literal text.

Unreal stores every pin default as text whose shape depends on the pin type
(``2.000000``, ``true``, ``0, 0, 500`` for a vector, ``P,Y,R`` for a rotator,
``(R=1,G=0,B=0,A=1)`` for other structs, an object path in ``DefaultObject``).
"""
from __future__ import annotations

import re

from ..ast import quote
from .mapping import is_ident, object_short_name
from .parser import Struct, parse_value

_NUM_RE = re.compile(r"\s*-?\d+(\.\d*)?([eE][-+]?\d+)?\s*\Z")
_TEXT_RE = re.compile(r'"((?:[^"\\]|\\.)*)"\s*\)\s*\Z')

VECTOR_FIELDS = ("X", "Y", "Z")
ROTATOR_FIELDS = ("Pitch", "Yaw", "Roll")  # Unreal writes rotators as "P,Y,R"


def _num(text: str) -> str | None:
    if not _NUM_RE.match(text):
        return None
    value = float(text)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value)) if "." not in text and "e" not in text.lower() else repr(float(int(value)))
    return repr(value)


def dsl_number(text: str, integer: bool = False) -> str | None:
    n = _num(text)
    if n is None:
        return None
    if integer:
        return str(int(float(n)))
    return n


def struct_kind(sub_object: str) -> str:
    return object_short_name(sub_object) if sub_object else ""


def ue_to_dsl(category: str, sub_object: str, value: str | None, default_object: str | None) -> str | None:
    """A DSL literal for an Unreal pin default; None when it has no DSL spelling."""
    if category in ("object", "class", "softobject", "softclass", "interface"):
        path = default_object or value
        if not path or path == "None":
            return None
        name = object_short_name(path)
        if category in ("class", "softclass") and name.endswith("_C"):
            name = name[:-2]
        return name if is_ident(name) else quote(name)
    if value is None:
        return None
    if category == "bool":
        low = value.strip().lower()
        return low if low in ("true", "false") else None
    if category in ("int", "int64"):
        return dsl_number(value, integer=True)
    if category in ("real", "float", "double"):
        return dsl_number(value)
    if category == "byte":
        n = dsl_number(value, integer=True)
        if n is not None:
            return n
        return value if is_ident(value) else quote(value)
    if category == "string":
        return quote(value)
    if category == "name":
        return quote(value)
    if category == "text":
        m = _TEXT_RE.search(value)
        if value.startswith(("NSLOCTEXT(", "LOCTEXT(", "INVTEXT(", "LOCGEN")) and m:
            from .parser import unescape

            return quote(unescape(m.group(1)))
        return quote(value)
    if category in ("", "wildcard"):
        low = value.strip().lower()
        if low in ("true", "false"):
            return low
        n = dsl_number(value)
        return n if n is not None else quote(value)
    if category == "struct":
        kind = struct_kind(sub_object)
        text = value.strip()
        if kind in ("Vector", "Vector2D", "Vector4", "Rotator") and not text.startswith("("):
            parts = [p.strip() for p in text.split(",")]
            names = ROTATOR_FIELDS if kind == "Rotator" else VECTOR_FIELDS[: len(parts)] if len(parts) <= 3 else None
            if names is None or len(parts) != len(names):
                return None
            nums = [dsl_number(p) for p in parts]
            if any(n is None for n in nums):
                return None
            return "(" + ",".join(f"{k}={v}" for k, v in zip(names, nums)) + ")"
        if text.startswith("("):
            parsed = parse_value(text)
            if not isinstance(parsed, Struct) or parsed.items:
                return None
            fields = []
            for k, v in parsed.fields.items():
                if isinstance(v, Struct) or not is_ident(k.replace(".", "_")):
                    return None  # nested structs have no one-level DSL spelling
                n = dsl_number(v)
                fields.append(f"{k}={n if n is not None else (v if is_ident(v) else quote(v))}")
            return "(" + ",".join(fields) + ")"
        return None
    return None


def _ue_float(text: str) -> str:
    try:
        return f"{float(text):f}"
    except ValueError:
        return text


def dsl_to_ue(category: str, sub_object: str, value_kind: str, raw: str, python: object, fields: dict | None) -> tuple[str | None, str | None]:
    """(DefaultValue, DefaultObject) text for a DSL literal on a pin of this Unreal type."""
    if category in ("object", "class", "softobject", "softclass", "interface"):
        return None, str(python)
    if value_kind == "bool":
        return ("true" if python else "false"), None
    if value_kind == "none":
        return None, None
    if value_kind == "number":
        if category in ("int", "int64", "byte"):
            try:
                return str(int(float(raw))), None
            except ValueError:
                return raw, None
        if category in ("real", "float", "double"):
            return _ue_float(raw), None
        return raw, None
    if value_kind == "struct" and fields is not None:
        kind = struct_kind(sub_object)
        if kind == "Rotator" and set(fields) <= set(ROTATOR_FIELDS):
            return ",".join(_ue_float(str(fields.get(k, 0))) for k in ROTATOR_FIELDS), None
        if kind in ("Vector", "Vector2D") and set(fields) <= set(VECTOR_FIELDS):
            names = VECTOR_FIELDS if kind == "Vector" else VECTOR_FIELDS[:2]
            return ",".join(_ue_float(str(fields.get(k, 0))) for k in names), None
        return "(" + ",".join(f"{k}={_ue_float(str(v)) if isinstance(v, (int, float)) else v}" for k, v in fields.items()) + ")", None
    return str(python), None
