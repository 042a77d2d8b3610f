#!/usr/bin/env python3
"""Derive the Blender material catalog from Blender itself (bpy), and show what a newer Blender changed.

Why: the material language is validated against real Blender, so its catalog is not curated by
hand. This tool instantiates every ``ShaderNode*`` type bpy knows in a temporary material tree
(or a shader node group for the group-only ones), reads its sockets (identifier, name, socket
type, default, subtype), its enum properties with their items and its other user-set properties,
then flips every enum to each of its items and records which sockets each setting enables
(``ShaderNodeMix.data_type`` picks ``A_Float``/``A_Vector``/``A_Color``; ``ShaderNodeMath`` hides its
third input for most operations). It also asks Blender which socket-type links it marks invalid.
The result is plain data in ``dsl/packs/blender_material/catalog.json``, so validation and the TUI
work without bpy.

Usage (needs bpy, `pip install -e ".[blender]"` on Python 3.11, and bpllm importable: ``PYTHONPATH=.`` in a checkout)::

    python tools/derive_blender_catalog.py                 # (re)write the catalog
    python tools/derive_blender_catalog.py --diff          # what the live Blender changes vs the stored file
    python tools/derive_blender_catalog.py --out F.json    # write elsewhere
"""
from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from importlib import resources
from pathlib import Path
from typing import Any


from dsl.atomic import atomic_write_text

DEFAULT_OUT = Path(str(resources.files("dsl.packs.blender_material") / "catalog.json"))
FORMAT_VERSION = 1
MAX_COMBOS = 4096  # cartesian product of socket-affecting enums per node, above this only single flips

# Types Blender's versioning replaces when it loads an older file (corpus README): the stored
# idname no longer exists (or is legacy) after load. Kept as aliases so old spellings resolve.
RENAMES = {
    "ShaderNodeMixRGB": "ShaderNodeMix",
    "ShaderNodeBsdfGlossy": "ShaderNodeBsdfAnisotropic",
    "ShaderNodeBsdfVelvet": "ShaderNodeBsdfSheen",
    "ShaderNodeTexMusgrave": "ShaderNodeTexNoise",
    "ShaderNodeSeparateRGB": "ShaderNodeSeparateColor",
    "ShaderNodeCombineRGB": "ShaderNodeCombineColor",
    "ShaderNodeSeparateHSV": "ShaderNodeSeparateColor",
    "ShaderNodeCombineHSV": "ShaderNodeCombineColor",
}

# Readable extra names people and models reach for (short name <- alias).
EXTRA_ALIASES = {
    "ShaderNodeBsdfPrincipled": ["Principled"],
    "ShaderNodeValToRGB": ["ValToRGB"],
    "ShaderNodeTexCoord": ["TexCoord"],
    "ShaderNodeNewGeometry": ["NewGeometry"],
    "ShaderNodeOutputMaterial": ["Output"],
    "ShaderNodeBsdfAnisotropic": ["Glossy", "GlossyBSDF"],
    "ShaderNodeBsdfSheen": ["Velvet"],
    "ShaderNodeTexNoise": ["Musgrave"],
    "ShaderNodeSeparateColor": ["SeparateRGB", "SeparateHSV"],
    "ShaderNodeCombineColor": ["CombineRGB", "CombineHSV"],
}

# Node-tree plumbing that a shader tree holds besides ShaderNode* types.
PLUMBING = ("NodeGroupInput", "NodeGroupOutput")

# Properties every node has (name, label, location...) are not node settings.
SKIP_PROPS = {"rna_type", "name", "label", "location", "location_absolute", "width", "height", "color",
              "color_tag", "select", "show_options", "show_preview", "hide", "mute", "show_texture",
              "use_custom_color", "parent", "warning_propagation", "bl_idname", "bl_label",
              "bl_description", "bl_icon", "bl_static_type", "bl_width_default", "bl_width_min",
              "bl_width_max", "bl_height_default", "bl_height_min", "bl_height_max", "image_user",
              "texture_mapping", "color_mapping", "interface", "file_output_items", "internal_links"}

# Struct properties with their own DSL params (see docs/blender.md): the node's data in bpy terms.
STRUCT_PROPS = {
    "color_ramp": {"kind": "color_ramp",
                   "params": {"interpolation": "color_ramp.interpolation",
                              "color_mode": "color_ramp.color_mode",
                              "hue_interpolation": "color_ramp.hue_interpolation",
                              "stops": "color_ramp.elements"}},
    "mapping": {"kind": "curve_mapping", "params": {"curves": "mapping.curves"}},
}


def short_label(text: str) -> str:
    """A DSL spelling of a Blender name: letters, digits and ``_``; spaces and punctuation become ``_``."""
    out = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")
    if not out:
        return "_"
    return "_" + out if out[0].isdigit() else out


def type_name(label: str) -> str:
    """CamelCase type name from a node label: 'Principled BSDF' -> 'PrincipledBSDF'."""
    words = re.split(r"[^A-Za-z0-9]+", label)
    out = "".join(w[:1].upper() + w[1:] for w in words if w)
    return out if out and not out[0].isdigit() else "N" + out


def plain(value: Any) -> Any:
    """bpy values (bpy_float arrays, Euler, Color) as JSON data."""
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, float):
        return round(value, 6)
    try:
        return [plain(v) for v in value]
    except TypeError:
        return str(value)


def _socket(sock: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"identifier": sock.identifier, "name": sock.name,
                             "bl_idname": sock.bl_idname, "type": sock.type}
    prop = sock.bl_rna.properties.get("default_value")
    if prop is not None:
        entry["default"] = plain(sock.default_value)
        if prop.subtype not in ("NONE", ""):
            entry["subtype"] = prop.subtype
        if prop.type in ("FLOAT", "INT"):
            lo, hi = prop.hard_min, prop.hard_max
            if lo > -1e30:
                entry["min"] = plain(lo)
            if hi < 1e30:
                entry["max"] = plain(hi)
    if not sock.enabled:
        entry["enabled"] = False
    if getattr(sock, "hide_value", False):
        entry["hide_value"] = True
    if getattr(sock, "is_multi_input", False):
        entry["multi_input"] = True
    return entry


def _props(node: Any, base_props: set[str]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for p in node.bl_rna.properties:
        ident = p.identifier
        if ident in base_props or ident in SKIP_PROPS or ident.startswith("bl_"):
            continue
        if ident in STRUCT_PROPS:
            props[ident] = {"type": "STRUCT", **STRUCT_PROPS[ident]}
            continue
        if p.is_readonly and p.type != "POINTER":
            continue
        entry: dict[str, Any] = {"type": p.type}
        if p.type == "ENUM":
            items = [i.identifier for i in p.enum_items]
            if not items:  # dynamic enums list their items only on an instance
                items = [i.identifier for i in p.enum_items_static] if hasattr(p, "enum_items_static") else []
            # RNA lists items a node of this tree refuses (shader Mix: data_type ROTATION, a geometry
            # nodes type): keep what Blender lets this node take, record the rest
            settable = items if p.is_enum_flag else [i for i in items if _settable(node, ident, i)]
            entry["items"] = settable
            if p.is_enum_flag:
                entry["flag"] = True
                entry["default"] = sorted(getattr(node, ident))
            else:
                entry["default"] = getattr(node, ident)
            if len(settable) < len(items):
                entry["refused"] = [i for i in items if i not in settable]
        elif p.type == "POINTER":
            if p.is_readonly:
                continue
            entry["fixed_type"] = p.fixed_type.identifier
            entry["default"] = None
        elif p.type in ("BOOLEAN", "INT", "FLOAT", "STRING"):
            if getattr(p, "is_array", False) or getattr(p, "array_length", 0) > 0:
                entry["array_length"] = p.array_length
            entry["default"] = plain(getattr(node, ident))
        else:
            continue
        props[ident] = entry
    return props


def _settable(node: Any, key: str, item: str) -> bool:
    """Whether Blender accepts ITEM for the enum KEY of this node (the value is put back)."""
    original = getattr(node, key)
    try:
        setattr(node, key, item)
    except (TypeError, ValueError):
        return False
    finally:
        setattr(node, key, original)
    return True


def _enabled(node: Any) -> tuple[frozenset[str], frozenset[str]]:
    return (frozenset(s.identifier for s in node.inputs if s.enabled),
            frozenset(s.identifier for s in node.outputs if s.enabled))


def _availability(node: Any, props: dict[str, Any]) -> dict[str, Any]:
    """Which enum settings enable which sockets: {"keys": [...], "inputs": {id: [[v, ...], ...]}, ...}.

    A socket enabled in every combination has no entry. Each listed socket carries the combos of
    ``keys`` values where it is enabled, reduced to the keys it actually depends on."""
    enums = [k for k, v in props.items() if v.get("type") == "ENUM" and not v.get("flag") and v["items"]]
    base = _enabled(node)
    single = []  # keys whose single flip from the defaults changes the enabled sockets
    for key in enums:
        original = getattr(node, key)
        seen = set()
        for item in props[key]["items"]:
            try:
                setattr(node, key, item)
            except (TypeError, ValueError):
                continue
            seen.add(_enabled(node))
        setattr(node, key, original)
        if len(seen) > 1 or (seen and seen != {base}):
            single.append(key)
    if not single:
        return {}
    # interactions (Mix: factor_mode matters only when data_type is VECTOR): try every enum together
    # when the product is small enough, else only the keys that matter on their own
    total = 1
    for key in enums:
        total *= max(1, len(props[key]["items"]))
    affecting = enums if total <= MAX_COMBOS else single
    if not affecting:
        return {}
    sizes = [len(props[k]["items"]) for k in affecting]
    total = 1
    for s in sizes:
        total *= s
    originals = {k: getattr(node, k) for k in affecting}
    table: dict[tuple[str, ...], tuple[frozenset[str], frozenset[str]]] = {}
    if total <= MAX_COMBOS:
        combos = itertools.product(*[props[k]["items"] for k in affecting])
    else:  # too many: vary one key at a time from the defaults
        combos = ((*[originals[k] for k in affecting[:i]], item, *[originals[k] for k in affecting[i + 1:]])
                  for i, key in enumerate(affecting) for item in props[key]["items"])
    for combo in combos:
        try:
            for k, v in zip(affecting, combo):
                setattr(node, k, v)
        except (TypeError, ValueError):
            continue
        table[combo] = _enabled(node)
    for k, v in originals.items():
        setattr(node, k, v)

    def conditions(side: int, ident: str) -> list[dict[str, list[str]]] | None:
        on = {c for c, e in table.items() if ident in e[side]}
        if len(on) == len(table):
            return None
        # keep only the keys the socket depends on
        keep = []
        for i, key in enumerate(affecting):
            depends = False
            for c in table:
                for item in props[key]["items"]:
                    other = c[:i] + (item,) + c[i + 1:]
                    if other in table and ((c in on) != (other in on)):
                        depends = True
                        break
                if depends:
                    break
            if depends:
                keep.append(i)
        reduced = sorted({tuple(c[i] for i in keep) for c in on})
        # one dict per combo: {key: value}; single-key conditions fold into one {key: [values]}
        if len(keep) == 1:
            return [{affecting[keep[0]]: [r[0] for r in reduced]}]
        return [{affecting[i]: [r[j]] for j, i in enumerate(keep)} for r in reduced]

    result: dict[str, Any] = {"keys": [], "inputs": {}, "outputs": {}}
    for side, name in ((0, "inputs"), (1, "outputs")):
        socks = node.inputs if side == 0 else node.outputs
        for s in socks:
            cond = conditions(side, s.identifier)
            if cond is not None:
                result[name][s.identifier] = cond
    used = {k for side in ("inputs", "outputs") for conds in result[side].values() for c in conds for k in c}
    result["keys"] = [k for k in affecting if k in used]
    return result


def _link_rules(bpy: Any, tree: Any, socket_types: set[str]) -> dict[str, list[str]]:
    """For each output socket type, the input socket types Blender links without marking them invalid."""
    reps_out: dict[str, Any] = {}
    reps_in: dict[str, Any] = {}
    for idname in sorted(n for n in dir(bpy.types) if n.startswith("ShaderNode")):
        try:
            node = tree.nodes.new(idname)
        except RuntimeError:
            continue
        for s in node.outputs:
            if s.enabled and s.type in socket_types:
                reps_out.setdefault(s.type, s)
        for s in node.inputs:
            if s.enabled and s.type in socket_types and not s.is_multi_input:
                reps_in.setdefault(s.type, s)
    rules: dict[str, list[str]] = {}
    for a, out_sock in sorted(reps_out.items()):
        ok = []
        for b, in_sock in sorted(reps_in.items()):
            link = tree.links.new(out_sock, in_sock)
            if link.is_valid:
                ok.append(b)
            tree.links.remove(link)
        rules[a] = ok
    return rules


def derive() -> dict[str, Any]:
    """The whole catalog from the running Blender."""
    import bpy  # lazy: the rest of bpllm never needs it

    mat = bpy.data.materials.new("__catalog__")
    tree = mat.node_tree
    group = bpy.data.node_groups.new("__catalog_group__", "ShaderNodeTree")
    base_props = set(bpy.types.Node.bl_rna.properties.keys())
    idnames = sorted(n for n in dir(bpy.types) if n.startswith("ShaderNode"))
    nodes: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for idname in [*idnames, *PLUMBING]:
        where = "material"
        try:
            node = tree.nodes.new(idname)
        except RuntimeError as err:
            try:
                node = group.nodes.new(idname)
                where = "group"
            except RuntimeError:
                skipped[idname] = str(err).strip().splitlines()[0]
                continue
        cls = getattr(bpy.types, idname)
        props = _props(node, base_props)
        entry: dict[str, Any] = {
            "label": node.bl_label or cls.bl_rna.name,
            "description": (cls.bl_rna.description or "").strip(),
            "inputs": [_socket(s) for s in node.inputs],
            "outputs": [_socket(s) for s in node.outputs],
            "props": props,
        }
        if where == "group" or idname in PLUMBING:
            entry["group_only"] = True
        if idname.startswith("ShaderNodeOutput") or idname == "NodeGroupOutput":
            entry["is_output"] = True
        if idname in ("ShaderNodeGroup", "NodeGroupInput", "NodeGroupOutput"):
            entry["is_group"] = True
        if idname in RENAMES:
            entry["legacy"] = True
            entry["replaced_by"] = RENAMES[idname]
        avail = _availability(node, props)
        if avail:
            entry["availability"] = avail
        nodes[idname] = entry
    socket_types = {s["type"] for n in nodes.values() for s in n["inputs"] + n["outputs"]}
    link_rules = _link_rules(bpy, tree, socket_types)
    short, aliases = _names(nodes)
    bpy.data.materials.remove(mat)
    bpy.data.node_groups.remove(group)
    return {
        "format": FORMAT_VERSION,
        "blender_version": bpy.app.version_string,
        "blender_version_tuple": list(bpy.app.version),
        "derived_by": "tools/derive_blender_catalog.py",
        "node_count": len(nodes),
        "skipped": skipped,
        "short_names": short,
        "aliases": aliases,
        "renames": RENAMES,
        "link_rules": link_rules,
        "nodes": nodes,
    }


def _names(nodes: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Short DSL type names (from labels, unique) and aliases (idname, stripped idname, renames)."""
    short: dict[str, str] = {}
    taken: dict[str, str] = {}
    manual = {"NodeGroupInput": "GroupInput", "NodeGroupOutput": "GroupOutput", "ShaderNodeGroup": "Group",
              "ShaderNodeMixRGB": "MixRGB"}
    for idname, entry in sorted(nodes.items()):
        name = manual.get(idname) or type_name(entry["label"])
        if name in taken:
            name = idname.removeprefix("ShaderNode")
        taken[name] = idname
        short[idname] = name
    aliases: dict[str, str] = {}

    def add(alias: str, target: str) -> None:
        if alias not in taken and alias not in aliases:
            aliases[alias] = target

    for idname in sorted(nodes):
        add(idname, idname)
        add(idname.removeprefix("ShaderNode"), idname)
        for extra in EXTRA_ALIASES.get(idname, []):
            add(extra, idname)
    for idname in sorted(nodes):  # "Noise" for NoiseTexture, "Diffuse" for DiffuseBSDF
        for suffix in ("Texture", "BSDF"):
            stem = short[idname].removesuffix(suffix)
            if stem != short[idname] and stem:
                add(stem, idname)
    for old, new in sorted(RENAMES.items()):
        add(old, new)
        add(old.removeprefix("ShaderNode"), new)
    return short, aliases


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable changes between two catalogs (types, sockets, enum items, props)."""
    lines = [f"blender {old.get('blender_version')} -> {new.get('blender_version')}"]
    on, nn = old.get("nodes", {}), new.get("nodes", {})
    for t in sorted(set(nn) - set(on)):
        lines.append(f"+ node {t}")
    for t in sorted(set(on) - set(nn)):
        lines.append(f"- node {t}")
    for t in sorted(set(on) & set(nn)):
        a, b = on[t], nn[t]
        for side in ("inputs", "outputs"):
            sa = {s["identifier"]: s for s in a[side]}
            sb = {s["identifier"]: s for s in b[side]}
            for i in sorted(set(sb) - set(sa)):
                lines.append(f"+ {t}.{side}.{i} ({sb[i]['type']})")
            for i in sorted(set(sa) - set(sb)):
                lines.append(f"- {t}.{side}.{i}")
            for i in sorted(set(sa) & set(sb)):
                for k in ("name", "type", "default", "subtype"):
                    if sa[i].get(k) != sb[i].get(k):
                        lines.append(f"~ {t}.{side}.{i}.{k}: {sa[i].get(k)!r} -> {sb[i].get(k)!r}")
        pa, pb = a["props"], b["props"]
        for p in sorted(set(pb) - set(pa)):
            lines.append(f"+ {t}.{p}")
        for p in sorted(set(pa) - set(pb)):
            lines.append(f"- {t}.{p}")
        for p in sorted(set(pa) & set(pb)):
            ia, ib = pa[p].get("items"), pb[p].get("items")
            if ia is not None and ib is not None and ia != ib:
                added = [x for x in ib if x not in ia]
                gone = [x for x in ia if x not in ib]
                lines.append(f"~ {t}.{p} items: +{added} -{gone}")
            if pa[p].get("default") != pb[p].get("default"):
                lines.append(f"~ {t}.{p} default: {pa[p].get('default')!r} -> {pb[p].get('default')!r}")
    if old.get("link_rules") != new.get("link_rules"):
        lines.append(f"~ link_rules: {old.get('link_rules')} -> {new.get('link_rules')}")
    if len(lines) == 1:
        lines.append("no changes")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="catalog file (default: the pack's)")
    parser.add_argument("--diff", action="store_true", help="print what the live Blender changes; write nothing")
    args = parser.parse_args(argv)
    try:
        import bpy  # noqa: F401 - probe only
    except ImportError:
        print("derive_blender_catalog: bpy is not installed (pip install 'bpllm[blender]' on Python 3.11)",
              file=sys.stderr)
        return 2
    new = derive()
    if args.diff:
        if not args.out.exists():
            print(f"derive_blender_catalog: {args.out} does not exist; run without --diff to write it",
                  file=sys.stderr)
            return 2
        old = json.loads(args.out.read_text(encoding="utf-8"))
        print("\n".join(diff(old, new)))
        return 0
    atomic_write_text(args.out, json.dumps(new, indent=1, sort_keys=False) + "\n")
    print(f"wrote {args.out}: {new['node_count']} node types from Blender {new['blender_version']}"
          f" ({len(new['skipped'])} skipped: {', '.join(new['skipped'])})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
