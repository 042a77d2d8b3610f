"""Synthetic training data: instruction + gold DSL pairs for every catalog node type.

The catalog drives everything: each example is built around one *focus* node type,
wired to an event and to providers/consumers chosen by pin type (``Catalog.assignable``),
so a newly curated node type is covered without a new template. A handful of
pattern families (plain action, chain, branch, loop, variable, pure value, event)
shape the graph; phrasing comes from sentence frames and per-node phrases. Every
text is checked by ``dsl.validator`` — a row that does not validate cleanly is
never returned. Same ``seed`` + same catalog → the same rows.

Used by the tiny base's pretraining corpus, by the runtime's synthetic data step and
by the grader's drafted lessons (``focus_nodes`` = the weakest node types).
"""
from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

GENERATOR_VERSION = 2

# -- phrasing ------------------------------------------------------------------

EVENT_PHRASES: dict[str, list[str]] = {
    "Event_BeginPlay": ["when play begins", "on BeginPlay", "when the game starts", "as soon as it spawns"],
    "Event_Tick": ["every frame", "on Tick", "each tick"],
    "Event_EndPlay": ["when play ends", "on EndPlay", "when it is removed from the level"],
    "Event_ActorBeginOverlap": ["when something overlaps it", "on ActorBeginOverlap", "when another actor starts overlapping it"],
    "Event_ActorEndOverlap": ["when an overlap ends", "on ActorEndOverlap", "when the other actor stops overlapping it"],
    "Event_Hit": ["when it is hit", "on Hit", "when it collides with something"],
    "Event_AnyDamage": ["when it takes damage", "on AnyDamage", "whenever it is damaged"],
    "Event_PointDamage": ["when it takes point damage", "on PointDamage"],
    "Event_Destroyed": ["when it is destroyed", "on Destroyed"],
    "Event_Possessed": ["when a controller possesses it", "on Possessed"],
    "Event_Construct": ["when the widget is constructed", "on Construct"],
    "Event_PreConstruct": ["on PreConstruct", "before the widget is constructed"],
    "Event_Destruct": ["when the widget is destroyed", "on Destruct"],
}
NODE_PHRASES: dict[str, list[str]] = {
    "PrintString": ["prints {InString}", "shows the message {InString}", "prints the text {InString} on screen"],
    "Delay": ["waits {Duration} seconds", "delays for {Duration} seconds"],
    "DestroyActor": ["destroys itself", "destroys the actor", "removes itself from the level"],
    "SetTimerByFunctionName": ["sets a timer that calls {FunctionName} every {Time} seconds"],
    "SetActorHiddenInGame": ["sets hidden in game to {NewHidden}"],
    "Branch": ["checks a condition with a Branch"],
}
FRAMES = [
    "Create a Blueprint that {event}, {action}.",
    "Make an actor Blueprint that {action} {event}.",
    "Build a {parent} Blueprint: {event}, it {action}.",
    "Write a Blueprint where, {event}, the actor {action}.",
    "I need a Blueprint that {action} {event}.",
    "{Event}, {action}. Make it a {parent} Blueprint.",
]
STRINGS = ["Hello", "Game Over", "Door opened", "Ready", "Level complete", "Welcome", "Checkpoint reached",
           "Low health", "Ammo empty", "Boss defeated", "Loading", "Press E", "You win", "Try again", "Alarm"]
NAMES = ["Spawn", "Reset", "Fire", "Open", "Close", "Heal", "Respawn", "Explode", "Jump", "Interact", "Reload",
         "Collect", "Activate", "Shutdown", "Pulse"]
VAR_NAMES = {"Float": ["Health", "Speed", "Damage", "Timer", "Score"], "Int": ["Count", "Ammo", "Lives", "Level"],
             "Bool": ["IsActive", "IsOpen", "HasKey", "IsDead"], "String": ["PlayerName", "Message"],
             "Vector": ["TargetLocation", "Offset"], "Rotator": ["Facing", "AimRotation"], "Actor": ["TargetActor", "LastHit"],
             "Object": ["TargetObject"]}
# the value that makes a node's phrase meaningful is always given
PRIMARY = {"PrintString": "InString", "Delay": "Duration", "SetActorHiddenInGame": "NewHidden", "PrintText": "InText",
           "SetTimerByFunctionName": "Time", "OpenLevel": "LevelName", "PlaySound": "Sound"}
ARRAY_VARS = {"Actor": ["Enemies", "Targets", "Pickups"], "Int": ["Scores", "Codes"], "Float": ["Times", "Weights"],
              "String": ["Names", "Lines"], "Vector": ["Waypoints", "Points"]}
# blueprint names say nothing about the graph: a name spelled from the main node (BP_EventHit22) made
# the model pick the graph in the header, from its first tokens, where a wrong pick (BP_EventPreConstruct
# for "on Hit") then dragged the parent class and the nodes after it; the names are free in the scorer
NAME_STEMS = ["Logic", "Device", "Gadget", "Helper", "Module", "Mechanism", "Setup", "Behaviour", "Routine", "Feature"]
CLASSES = ["BP_Enemy", "BP_Pickup", "BP_Projectile", "BP_Coin", "BP_Door"]
WIDGETS = ["WBP_HUD", "WBP_Menu", "WBP_Health", "WBP_Pause"]
FLOATS = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 10.0, 0.25, 20.0, 100.0]
INTS = [1, 2, 3, 4, 5, 10, 0, 7, 100]
LEVELS = ["MainMenu", "Level_01", "Arena", "Lobby"]
ACTIONS = ["Jump", "Fire", "Interact", "Use", "Crouch", "Stop"]
# open vocabularies: values come from the instruction, so the model must copy them rather than
# pick one of a short memorised list
WORDS_A = ["Door", "Gate", "Boss", "Enemy", "Player", "Level", "Wave", "Health", "Ammo", "Shield", "Key", "Chest",
           "Trap", "Light", "Alarm", "Bridge", "Portal", "Timer", "Coin", "Gem", "Tower", "Rocket", "Storm", "Ghost"]
WORDS_B = ["opened", "closed", "ready", "spawned", "defeated", "collected", "lost", "found", "charged", "empty",
           "reached", "started", "destroyed", "unlocked", "armed", "cleared", "active", "missing", "full", "low"]
VERBS = ["Open", "Close", "Spawn", "Reset", "Fire", "Heal", "Launch", "Charge", "Toggle", "Start", "Stop", "Collect"]
NOUNS = ["Door", "Gate", "Wave", "Boss", "Light", "Shield", "Trap", "Portal", "Alarm", "Bridge", "Timer", "Chest"]
KEYS = ["E", "F", "SpaceBar", "LeftMouseButton", "R"]


def words(name: str) -> str:
    """``SetActorHiddenInGame`` → ``set actor hidden in game``."""
    name = name.replace("_", " ")
    parts = re.findall(r"[A-Z]+(?=[A-Z][a-z]|\b|[0-9])|[A-Z]?[a-z]+|[0-9]+|[A-Z]+", name)
    return " ".join(p.lower() if not p.isupper() or len(p) == 1 else p for p in parts) or name


# -- graph builder ---------------------------------------------------------------


@dataclass
class _Graph:
    name: str
    parent: str = "Actor"
    vars: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    execs: list[str] = field(default_factory=list)
    datas: list[str] = field(default_factory=list)
    phrases: list[str] = field(default_factory=list)  # value phrases used in the instruction
    values: dict[str, dict[str, str]] = field(default_factory=dict)  # node id -> pin/param -> phrase
    # impure producers (CreateWidget, ...) that must run before the node reading them
    pending: list[tuple[str, str, str]] = field(default_factory=list)  # (id, exec in, exec out)
    side: list[str] = field(default_factory=list)  # phrases for side events (a delegate's custom event)

    def node(self, type_name: str, params: Sequence[tuple[str, str]] = ()) -> str:
        nid = f"n{len(self.nodes) + 1}"
        body = f" [{', '.join(f'{k}={v}' for k, v in params)}]" if params else ""
        self.nodes.append(f"NODE {nid}: {type_name}{body}")
        self.types.append(type_name)
        return nid

    def exec(self, a: str, pa: str, b: str, pb: str) -> None:
        self.execs.append(f"EXEC {a}.{pa} -> {b}.{pb}")

    def data(self, src: str, dst: str, pin: str, type_name: str) -> None:
        self.datas.append(f"DATA {src} -> {dst}.{pin} [{type_name}]")

    def var(self, name: str, type_name: str, default: str | None) -> None:
        line = f"VAR {name}: {type_name}" + (f" = {default}" if default is not None else "")
        if line not in self.vars:
            self.vars.append(line)

    def text(self) -> str:
        parts = [f"BLUEPRINT: {self.name}", f"PARENT: {self.parent}"]
        parts += self.vars
        parts += ["GRAPH: EventGraph"]
        return "\n".join(parts + self.nodes + self.execs + self.datas)


class _Skip(Exception):
    """Internal: this template cannot host this focus node (caught by the generator, never escapes)."""


def _fmt_float(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") + ("" if "." in f"{x:.2f}".rstrip("0").rstrip(".") else ".0")


class Generator:
    """Builds validated examples; one instance per (catalog, seed)."""

    TEMPLATES = ("action", "chain", "branch", "loop", "variable", "pure_value", "pure_to_var", "event", "event_chain")

    def __init__(self, catalog=None, seed: int = 0):
        from dsl.catalog import default_catalog

        self.cat = catalog if catalog is not None else default_catalog()
        self.rng = random.Random(seed)
        self.events = [n for n, s in self.cat.nodes.items() if s.is_event]
        self.common_events = [e for e in ("Event_BeginPlay", "Event_Tick", "Event_ActorBeginOverlap",
                                          "Event_InputAction", "Event_Custom", "Event_AnyDamage") if e in self.cat.nodes]
        self.impure = [n for n, s in self.cat.nodes.items() if not s.pure and not s.is_event and self._exec_in(s)]
        self.pure = [n for n, s in self.cat.nodes.items() if s.pure]
        self.failures: Counter[str] = Counter()

    # -- catalog helpers ----------------------------------------------------
    @staticmethod
    def _exec_in(spec) -> str | None:
        for p in spec.pins:
            if p.direction == "in" and p.kind == "exec":
                return p.name
        return None

    @staticmethod
    def _exec_outs(spec) -> list[str]:
        return [p.name for p in spec.pins if p.direction == "out" and p.kind == "exec"]

    @staticmethod
    def _main_out(spec) -> str | None:
        outs = Generator._exec_outs(spec)
        for preferred in ("Then", "Completed", "CastSucceeded", "True", "Pressed", "LoopBody"):
            if preferred in outs:
                return preferred
        return outs[0] if outs else None

    def _data_outs(self, spec) -> list:
        return [p for p in spec.pins if p.direction == "out" and p.kind == "data"]

    # -- values ---------------------------------------------------------------
    def name_value(self) -> str:
        """An event or function name: now and then a familiar one, mostly a fresh Verb+Noun to copy."""
        r = self.rng
        return r.choice(NAMES) if r.random() < 0.3 else r.choice(VERBS) + r.choice(NOUNS)

    def literal(self, type_name: str, pin: str = "") -> tuple[str, str] | None:
        """(DSL literal, phrase) for a value of ``type_name``; None when no literal fits."""
        r = self.rng
        t = self.cat.canonical_type(type_name) if hasattr(self.cat, "canonical_type") else type_name
        if t in ("Float", "Numeric", "Wildcard"):
            x = r.choice(FLOATS) if r.random() < 0.5 else round(r.uniform(0.1, 60.0), r.choice([0, 1]))
            return _fmt_float(x), _fmt_float(x).rstrip("0").rstrip(".") if x != int(x) else str(int(x))
        if t == "Int":
            i = r.choice(INTS) if r.random() < 0.5 else r.randint(0, 60)
            return str(i), str(i)
        if t == "Bool":
            b = r.choice(["true", "false"])
            return b, b
        if t in ("String", "Text"):
            s = r.choice(STRINGS) if r.random() < 0.3 else f"{r.choice(WORDS_A)} {r.choice(WORDS_B)}"
            return f'"{s}"', s
        if t == "Name":
            if "Level" in pin:
                s = r.choice(LEVELS)
            elif "Action" in pin:
                s = r.choice(ACTIONS)
            elif "Key" in pin:
                s = r.choice(KEYS)
            else:
                s = self.name_value()
            return s, s
        if t == "Vector":
            x, y, z = r.choice([0, 100, 200, -100, 50]), r.choice([0, 100, -50]), r.choice([0, 100, 300, 1000])
            return f"(X={x},Y={y},Z={z})", f"({x}, {y}, {z})"
        if t == "Rotator":
            yaw = r.choice([90, 180, 45, -90, 30])
            return f"(Roll=0,Pitch=0,Yaw={yaw})", f"a yaw of {yaw}"
        if t == "Class":
            s = r.choice(WIDGETS if "Widget" in pin else CLASSES)
            return s, s
        if t == "Enum":
            return None
        return None

    def provider(self, g: _Graph, type_name: str, depth: int = 0) -> tuple[str, str] | None:
        """A pure node (with its inputs fed) whose output can flow into ``type_name``: (node id, pin)."""
        if depth > 1:
            return None
        preferred = {"Actor": ["GetPlayerCharacter", "GetPlayerPawn", "Self"], "Object": ["Self", "GetPlayerController"],
                     "Widget": [], "Transform": ["MakeTransform"], "Vector": ["GetActorLocation", "MakeVector"],
                     "Rotator": ["GetActorRotation", "MakeRotator"]}.get(type_name, [])
        candidates = [c for c in preferred if c in self.cat.nodes]
        if not candidates:
            for n in self.pure:
                spec = self.cat.nodes[n]
                if spec.named_pin if hasattr(spec, "named_pin") else False:
                    continue
                outs = [p for p in self._data_outs(spec) if p.type and p.type not in ("Wildcard",)]
                if outs and self.cat.assignable(outs[0].type, type_name) and outs[0].type == type_name:
                    candidates.append(n)
        if not candidates:
            return None
        name = self.rng.choice(candidates)
        spec = self.cat.nodes[name]
        nid = self.feed_inputs(g, name, depth + 1)
        out = self._data_outs(spec)[0]
        return nid, out.name

    def feed_inputs(self, g: _Graph, type_name: str, depth: int = 0, extra: Sequence[tuple[str, str]] = (),
                    optional_share: float = 0.35, skip: Sequence[str] = ()) -> str:
        """Declare ``type_name`` with its required params and inputs fed; returns its node id."""
        spec = self.cat.nodes[type_name]
        params: list[tuple[str, str]] = list(extra)
        given = {k for k, _ in params} | set(skip)
        wires: list[tuple[str, str, str]] = []  # (src, pin, type)
        named: dict[str, str] = {}
        for ps in spec.params:
            if ps.name in given or not getattr(ps, "required", True):
                continue
            lit = self._param_value(type_name, ps.name, ps.type, g)
            if lit is None:
                raise _Skip(f"{type_name}.{ps.name}: no literal for {ps.type}")
            params.append((ps.name, lit[0]))
            g.phrases.append(lit[1])
            named[ps.name] = lit[1]
            given.add(ps.name)
        primary = PRIMARY.get(type_name)
        element: str | None = None  # an array input's element type: the node's Wildcard pins take it
        for pin in spec.pins:
            if pin.direction != "in" or pin.kind != "data" or pin.name in given:
                continue
            want = pin.required or pin.name == primary or self.rng.random() < optional_share
            if not want or pin.name in ("Target", "Object", "WorldContextObject") and not pin.required:
                continue
            ptype = pin.type or "Wildcard"
            if ptype == "Wildcard" and element:
                ptype = element  # ArrayContains on Array<String> looks for a string, not 20.0
            lit = self.literal(ptype, pin.name)
            if lit is not None and ptype not in ("Object", "Actor", "Widget", "Array", "Transform"):
                # a pin's literal is written as a param, never as a literal DATA wire: the scorer counts
                # both spellings alike, and one spelling is one thing less for the model to guess
                params.append((pin.name, lit[0]))
                g.phrases.append(lit[1])
                named[pin.name] = lit[1]
                given.add(pin.name)
                continue
            if ptype == "Array":
                src_id, var_name, element = self.array_var(g)
                wires.append((f"{src_id}.{var_name}", pin.name, "Array"))
                g.phrases.append(var_name)  # which array: the prompt says it
                named[pin.name] = var_name
                continue
            prov = self.provider(g, ptype, depth)
            if prov is None and ptype == "Delegate" and "Event_Custom" in self.cat.nodes:
                ename = self.rng.choice(NAMES)
                ev = g.node("Event_Custom", [("EventName", ename)])
                tail = g.node("PrintString", [("InString", f'"{ename}"')])
                g.exec(ev, "Then", tail, "Execute")
                g.side.append(f"the custom event {ename} prints {ename}")
                g.phrases.append(ename)
                prov = (ev, "OutputDelegate")
            if prov is None:
                prov = self.impure_provider(g, ptype)
            if prov is None:
                if pin.required:
                    raise _Skip(f"{type_name}.{pin.name}: no provider for {ptype}")
                continue
            wires.append((f"{prov[0]}.{prov[1]}", pin.name, ptype if ptype not in ("Wildcard", "Numeric") else "Float"))
        nid = g.node(type_name, params)
        g.values[nid] = named
        for src, pin, t in wires:
            g.data(src, nid, pin, t)
        return nid

    def impure_provider(self, g: _Graph, type_name: str) -> tuple[str, str] | None:
        """An exec node producing ``type_name`` (CreateWidget for a Widget), run before its reader."""
        for name in sorted(self.impure):
            spec = self.cat.nodes[name]
            outs = [p for p in self._data_outs(spec) if p.type == type_name]
            if not outs:
                continue
            try:
                nid = self.feed_inputs(g, name, depth=2, optional_share=0.0)
            except _Skip:
                continue
            g.pending.append((nid, self._exec_in(spec) or "Execute", self._main_out(spec) or "Then"))
            g.phrases.append(f"a {words(name)}")
            return nid, outs[0].name
        return None

    def chain_in(self, g: _Graph, src: str, out: str, nid: str, exec_in: str) -> None:
        """Wire ``src.out`` to ``nid`` through any pending producers it reads from."""
        for pid, pin_in, pin_out in g.pending:
            g.exec(src, out, pid, pin_in)
            src, out = pid, pin_out
        g.pending.clear()
        g.exec(src, out, nid, exec_in)

    def _param_value(self, node: str, name: str, type_name: str, g: _Graph) -> tuple[str, str] | None:
        if name == "VarName":
            return None  # set by the variable template
        if name in ("EventName", "FunctionName"):
            s = self.name_value()
            return (f'"{s}"' if type_name == "String" else s), s
        if type_name == "Class":
            s = self.rng.choice(WIDGETS if "Widget" in name or "Widget" in node else CLASSES)
            return s, s
        return self.literal(type_name, name)

    def array_var(self, g: _Graph) -> tuple[str, str, str]:
        """An array variable read by a VariableGet: (node id, variable name, element type)."""
        elem = self.rng.choice(sorted(ARRAY_VARS))
        name = self.rng.choice(ARRAY_VARS[elem])
        g.var(name, f"Array<{elem}>", None)
        nid = g.node("VariableGet", [("VarName", name)])
        return nid, name, elem

    def event(self, g: _Graph, name: str | None = None) -> tuple[str, str, str]:
        """An event node: (id, exec out pin, phrase)."""
        name = name or self.rng.choice(self.common_events)
        spec = self.cat.nodes[name]
        extra: list[tuple[str, str]] = []
        phrase = self.rng.choice(EVENT_PHRASES.get(name, [f"on {name.removeprefix('Event_')}"]))
        for ps in spec.params:
            if getattr(ps, "required", True):
                lit = self._param_value(name, ps.name, ps.type, g)
                if lit is None:
                    raise _Skip(f"{name}.{ps.name}")
                extra.append((ps.name, lit[0]))
                if name == "Event_InputAction":
                    phrase = self.rng.choice([f"when the {lit[1]} action is pressed", f"on the {lit[1]} input action"])
                elif name == "Event_Custom":
                    phrase = self.rng.choice([f"when the custom event {lit[1]} fires", f"on a custom event {lit[1]}"])
                elif name == "Event_InputKey":
                    phrase = f"when the {lit[1]} key is pressed"
                else:
                    phrase += f" ({ps.name} {lit[1]})"
        nid = g.node(name, extra)
        out = self._main_out(spec) or "Then"
        return nid, out, phrase

    def action_phrase(self, type_name: str, g: _Graph, start: int, nid: str | None = None) -> str:
        values = g.phrases[start:]
        named = g.values.get(nid, {}) if nid else {}
        templates = NODE_PHRASES.get(type_name)
        if templates:
            usable = [t for t in templates if all(k in named for k in re.findall(r"{(\w+)}", t))]
            if usable:
                chosen = self.rng.choice(usable)
                phrase = chosen.format(**named)
                # every value in the gold is in the prompt: an optional pin the template does not
                # mention (PrintString's Key, PrintToLog) is named, or the model is asked to guess it
                unsaid = [f"{k} {v}" for k, v in named.items() if "{" + k + "}" not in chosen]
                return phrase + (f" ({', '.join(unsaid)})" if unsaid else "")
        verb = words(type_name)
        head = self.rng.choice([f"calls {type_name}", f"uses a {type_name} node to {verb}", f"does {verb} ({type_name})",
                                f"runs {type_name}"])
        if values:
            head += " with " + ", ".join(values[:3])
        return head

    # -- templates --------------------------------------------------------------
    def build(self, focus: str, template: str) -> tuple[str, str]:
        spec = self.cat.nodes[focus]
        g = _Graph(name=f"BP_{self.rng.choice(NAME_STEMS)}{self.rng.randint(1, 99)}")
        if focus.startswith("Event_") and focus in ("Event_Construct", "Event_PreConstruct", "Event_Destruct"):
            g.parent = "UserWidget"
        else:
            g.parent = self.rng.choice(["Actor", "Actor", "Character", "Pawn"])
        if spec.is_event:
            if template not in ("event", "event_chain"):
                raise _Skip("event focus uses the event templates")
            ev, out, phrase = self.event(g, focus)
            start = len(g.phrases)
            follow = self.rng.choice(["PrintString", "Delay", "DestroyActor", "PrintString"])
            nid = self.feed_inputs(g, follow)
            self.chain_in(g, ev, out, nid, "Execute")
            action = self.action_phrase(follow, g, start, nid)
            if template == "event_chain":
                follow2 = self.rng.choice(["PrintString", "SetActorHiddenInGame", "Delay"])
                start2 = len(g.phrases)
                n2 = self.feed_inputs(g, follow2)
                self.chain_in(g, nid, self._main_out(self.cat.nodes[follow]) or "Then", n2, "Execute")
                action += ", then " + self.action_phrase(follow2, g, start2, n2)
            return g.text(), self.frame(phrase, action, g.parent)
        exec_in = self._exec_in(spec)
        if spec.pure or not exec_in:
            if template not in ("pure_value", "pure_to_var"):
                raise _Skip("pure focus uses the pure templates")
            return self._pure_value(g, focus, template)
        if template in ("pure_value", "pure_to_var", "event", "event_chain"):
            raise _Skip("impure focus")
        if template == "variable" and focus not in ("VariableSet",):
            raise _Skip("variable template hosts VariableSet")
        if template == "loop" and focus in ("ForLoop", "ForEachLoop", "WhileLoop", "ForLoopWithBreak", "ForEachLoopWithBreak"):
            raise _Skip("loop in loop")
        ev, out, phrase = self.event(g)
        start = len(g.phrases)
        prefix = ""
        if template == "branch":
            cond_var = self.rng.choice(VAR_NAMES["Bool"])
            initially = self.rng.choice(["true", "false"])
            g.var(cond_var, "Bool", initially)
            get = g.node("VariableGet", [("VarName", cond_var)])
            br = g.node("Branch")
            g.exec(ev, out, br, "Execute")
            g.data(f"{get}.{cond_var}", br, "Condition", "Bool")
            ev, out = br, "True"
            prefix = f"if {cond_var} (initially {initially}) is true, "
        elif template == "loop":
            last = self.rng.choice([3, 5, 9])
            loop = g.node("ForLoop", [("FirstIndex", "0"), ("LastIndex", str(last))])
            g.exec(ev, out, loop, "Execute")
            ev, out = loop, "LoopBody"
            prefix = self.rng.choice([f"in a loop from 0 to {last}, ", f"for each index of a ForLoop from 0 to {last}, "])
        extra: list[tuple[str, str]] = []
        if focus == "VariableSet":
            vtype = self.rng.choice(["Float", "Int", "Bool"])
            vname = self.rng.choice(VAR_NAMES[vtype])
            lit = self.literal(vtype)
            g.var(vname, vtype, lit[0])
            new = self.literal(vtype)
            extra = [("VarName", vname)]
            nid = g.node(focus, extra)
            g.data(new[0], nid, vname, vtype)
            g.exec(ev, out, nid, exec_in)
            action = f"sets the variable {vname} (initially {lit[1]}) to {new[1]}"
        else:
            nid = self.feed_inputs(g, focus, extra=extra)
            self.chain_in(g, ev, out, nid, exec_in)
            action = self.action_phrase(focus, g, start, nid)
            if g.side:
                action += " (" + "; ".join(g.side) + ")"
        action = prefix + action
        if template == "chain":
            nxt = self.rng.choice([n for n in ("PrintString", "Delay", "PrintString", "SetActorHiddenInGame")
                                   if n in self.cat.nodes])
            out2 = self._main_out(spec)
            if out2 is None:
                raise _Skip("no exec out")
            start2 = len(g.phrases)
            n2 = self.feed_inputs(g, nxt)
            self.chain_in(g, nid, out2, n2, "Execute")
            action += ", then " + self.action_phrase(nxt, g, start2, n2)
        return g.text(), self.frame(phrase, action, g.parent)

    def _pure_value(self, g: _Graph, focus: str, template: str = "pure_value") -> tuple[str, str]:
        spec = self.cat.nodes[focus]
        ev, out, phrase = self.event(g)
        start = len(g.phrases)
        extra: list[tuple[str, str]] = []
        if focus == "VariableGet":
            vtype = self.rng.choice(["Float", "Int", "Bool", "String"])
            vname = self.rng.choice(VAR_NAMES[vtype])
            initially = self.literal(vtype)
            g.var(vname, vtype, initially[0])
            extra = [("VarName", vname)]
            out_pin, out_type = vname, vtype
        else:
            outs = self._data_outs(spec)
            if not outs:
                raise _Skip("pure node without outputs")
            out_pin, out_type = outs[0].name, outs[0].type or "Wildcard"
        nid = self.feed_inputs(g, focus, extra=extra, optional_share=0.9)
        values = g.phrases[start:]
        if out_type == "Wildcard" and not [p for p in spec.pins if p.direction == "in"]:
            out_type = "Object"  # Self and friends
        if out_type in ("Wildcard", "Numeric", "Var"):
            out_type = "Float"
        consumer = self._consumer_for(out_type)
        if consumer is None:
            raise _Skip(f"no consumer for {out_type}")
        cname, cpin, ctype, conv = consumer
        src = f"{nid}.{out_pin}"
        if template == "pure_to_var" and out_type in VAR_NAMES and focus != "VariableGet" and out_type not in ("Object",):
            vname = self.rng.choice(VAR_NAMES[out_type])
            g.var(vname, out_type, None)
            sid = g.node("VariableSet", [("VarName", vname)])
            g.data(f"{nid}.{out_pin}", sid, vname, out_type)
            self.chain_in(g, ev, out, sid, "Execute")
            with_values = f" of {', '.join(values)}" if values else ""
            what = self.rng.choice([f"computes {words(focus)} ({focus}){with_values}", f"uses {focus}{with_values}",
                                    f"takes the {focus}{with_values}"])
            return g.text(), self.frame(phrase, f"{what} and stores it in {vname}", g.parent)
        if template == "pure_to_var" and focus != "VariableGet":
            raise _Skip(f"no variable type for {out_type}")
        if conv:
            cv_spec = self.cat.nodes[conv]
            cin = [p for p in cv_spec.pins if p.direction == "in" and p.kind == "data"][0]
            cout = self._data_outs(cv_spec)[0]
            cv = g.node(conv)
            g.data(src, cv, cin.name, out_type)
            src = f"{cv}.{cout.name}"
            out_type = cout.type
        cid = (self.feed_inputs(g, cname, optional_share=0.0, skip=(cpin,)) if cname != "Branch" else g.node("Branch"))
        g.data(src, cid, cpin, ctype)
        self.chain_in(g, ev, out, cid, "Execute")
        if cname == "Branch":
            tail = g.node("PrintString", [("InString", '"Yes"')])
            g.exec(cid, "True", tail, "Execute")
        with_values = f" of {', '.join(values)}" if values else ""
        what = self.rng.choice([f"computes {words(focus)} ({focus}){with_values}", f"takes the {focus}{with_values}",
                                f"uses {focus}{with_values}"]) if focus != "VariableGet" else f"reads the variable {out_pin} (initially {initially[1]})"
        use = {"PrintString": "and prints the result",
               "SetActorLocation": "and moves the actor there", "SetActorRotation": "and rotates the actor to it",
               "Branch": "and prints Yes when it is true",
               "DestroyActor": "and destroys that actor", "Delay": "and waits that many seconds"}.get(cname, f"and passes it to {cname}")
        return g.text(), self.frame(phrase, f"{what} {use}", g.parent)

    def _consumer_for(self, out_type: str) -> tuple[str, str, str, str | None] | None:
        table = {
            "String": ("PrintString", "InString", "String", None),
            "Text": ("PrintString", "InString", "String", None),
            "Name": ("PrintString", "InString", "String", None),
            "Float": ("PrintString", "InString", "String", "FloatToString"),
            "Int": ("PrintString", "InString", "String", "IntToString"),
            "Bool": ("Branch", "Condition", "Bool", None),
            "Vector": ("SetActorLocation", "NewLocation", "Vector", None),
            "Rotator": ("SetActorRotation", "NewRotation", "Rotator", None),
            "Actor": ("DestroyActor", "Target", "Actor", None),
            "Object": ("PrintString", "InString", "String", "GetDisplayName"),
        }
        hit = table.get(out_type)
        if hit is None and self.cat.assignable(out_type, "String"):
            return ("PrintString", "InString", "String", None)
        if hit and hit[3] and hit[3] not in self.cat.nodes:
            return None
        return hit

    def frame(self, event_phrase: str, action: str, parent: str) -> str:
        # the parent class is stated unless it is the default (Actor) or the event says "widget":
        # "Create a Blueprint that …" with PARENT: Pawn in the gold asks the model to guess
        if parent == "Actor":
            frames = FRAMES
        elif parent == "UserWidget":
            frames = [f for f in FRAMES if "actor Blueprint" not in f]
        else:
            frames = [f for f in FRAMES if "{parent}" in f]
        tmpl = self.rng.choice(frames)
        text = tmpl.format(event=event_phrase, Event=event_phrase[:1].upper() + event_phrase[1:], action=action,
                           parent=parent)
        text = re.sub(r"\ba ([AEIOU])", r"an \1", text)
        return re.sub(r"\s+", " ", text).strip()


def templates_for(cat, focus: str) -> tuple[str, ...]:
    spec = cat.nodes[focus]
    if spec.is_event:
        return ("event", "event_chain")
    if spec.pure or not Generator._exec_in(spec):
        return ("pure_value", "pure_to_var")
    if focus == "VariableSet":
        return ("variable", "branch", "loop")
    return ("action", "chain", "branch", "loop")


def generate(
    n: int,
    seed: int = 0,
    catalog=None,
    focus_nodes: Iterable[str] | None = None,
    strict: bool = True,
) -> list[dict[str, Any]]:
    """``n`` validated rows ``{instruction, output, pattern, focus, nodes, source}``, deterministic per seed.

    Focus node types are taken round-robin (shuffled by seed) over ``focus_nodes``
    or the whole catalog, so every type appears once before any appears twice;
    ``pattern`` names the template family. ``strict``: warnings also reject a row.
    """
    from dsl.validator import validate

    gen = Generator(catalog, seed)
    cat = gen.cat
    pool = [cat.canonical_node_type(f) for f in focus_nodes] if focus_nodes else sorted(cat.nodes)
    pool = [f for f in dict.fromkeys(pool) if f in cat.nodes]
    if not pool:
        return []
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    order: list[str] = []
    attempts = 0
    tcount: Counter[str] = Counter()
    while len(rows) < n and attempts < n * 20 + 100:
        if not order:
            order = pool[:]
            gen.rng.shuffle(order)
        focus = order.pop()
        attempts += 1
        options = list(templates_for(cat, focus))
        # least-used template first, ties broken by seed: no family dominates
        gen.rng.shuffle(options)
        options.sort(key=lambda t: tcount[t])
        for template in options:
            try:
                dsl, instruction = gen.build(focus, template)
            except _Skip as exc:
                gen.failures[f"skip:{focus}:{template}:{exc}"] += 1
                continue
            diags = validate(dsl, cat)
            bad = [d for d in diags if d.severity == "error" or (strict and d.severity == "warning")]
            if bad:
                gen.failures[f"invalid:{focus}:{template}:{bad[0].code}"] += 1
                continue
            key = instruction + "\n" + dsl
            if key in seen:
                continue
            seen.add(key)
            tcount[template] += 1
            rows.append({
                "instruction": instruction,
                "output": dsl,
                "pattern": f"{template}:{focus}",
                "focus": focus,
                "source": f"synthetic-v{GENERATOR_VERSION}",
            })
            break
    return rows


def coverage_report(rows: Sequence[dict], catalog=None) -> dict[str, Any]:
    """Template and node-type distribution of generated rows (the 'no template dominates' check)."""
    from dsl.catalog import default_catalog
    from dsl.parser import parse

    cat = catalog if catalog is not None else default_catalog()
    templates = Counter(r["pattern"].split(":", 1)[0] for r in rows)
    node_uses: Counter[str] = Counter()
    for r in rows:
        for node in parse(r["output"]).nodes:
            node_uses[cat.canonical_node_type(node.type)] += 1
    missing = sorted(set(cat.nodes) - set(node_uses))
    total = max(1, len(rows))
    return {
        "rows": len(rows),
        "templates": dict(templates.most_common()),
        "max_template_share": round(max(templates.values(), default=0) / total, 3),
        "node_types_covered": len(set(node_uses) & set(cat.nodes)),
        "node_types_total": len(cat.nodes),
        "missing_node_types": missing,
        "focus_counts": dict(Counter(r.get("focus") for r in rows).most_common()),
    }
