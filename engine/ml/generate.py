"""Batched, bounded, grammar-constrained generation.

One decode loop serves the exam and the benchmarks:

* prompts are left-padded into one batch and decoded greedily with the KV cache;
  a finished row is dropped from the batch (and from the cache), so a long answer
  never makes the short ones pay;
* with ``constrained=True`` each row has an llguidance matcher built from
  the workspace pack's grammar (Blueprint: the file the parser reads); at the ``catalog`` level
  (the default) each row also carries a :class:`dsl.constraint.ConstraintState`, so a
  candidate must fit the catalog and the nodes declared so far as well as the syntax
  (docs/ml.md, "Constrained decoding"). Greedy decoding under a
  grammar picks the best *allowed* token, so the model's candidates are checked with
  the matcher in score order (its first choice nearly always passes) and the full
  token mask is computed only when none of the top 32 fits; that mask is filled by
  llguidance and applied with plain torch (no torch.compile);
* every row is bounded: a token cap, a wall-clock budget, and a repetition guard
  (a line's third occurrence ends the row, and no DSL line runs to hundreds of
  characters); a DSL text never means a repeated line, so repeats are dropped from
  the answer, and a row that did not end on its own is cut at its last complete line.

On a GPU (``mode="auto"`` picks it; docs/gpu.md) the loop works the other way round, because there a
step costs kernel launches and host round trips, not arithmetic:

* rows that finish stay in the batch (fed a pad token, their output ignored): no KV-cache reshuffle,
  and the shapes stay static, so the decode step can run over a ``StaticCache`` as a CUDA graph
  (``torch.compile(mode="reduce-overhead")``, CUDA only; never compiled on a CPU);
* the grammar's full masks for step t+1 are computed on the CPU (llguidance, in parallel threads)
  *while* the GPU runs step t+1's forward, copied to the device without a sync and applied in one
  masked fill: the one host<->device sync per step is reading the chosen tokens back;
* prompts are bucketed by length, and the batch size can be chosen from free GPU memory
  (``batch_size=0``).
"""
from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Sequence

from dsl.constraint import ConstraintState
from dsl.packs import DEFAULT_LANGUAGE, load

from .placement import input_device


@dataclass
class GenConfig:
    max_new_tokens: int = 384
    batch_size: int = 16
    constrained: bool = True
    time_budget_s: float = 30.0  # per prompt (a batch's rows start together)
    # a line seen this many times before ends the row. 2, not 1: a small model often writes one
    # line twice and then goes on (a doubled VAR line); ending the row there threw away the whole
    # graph (measured: the 29 rows a v2 ended on a first repeat scored 35.6, allowed one more 61.5)
    max_repeat_lines: int = 2
    max_line_chars: int = 240  # a runaway line (an endless identifier or string) ends the row
    # what a constrained row must respect: "syntax" (the grammar) or "catalog" (the grammar, and
    # the validator's rules decidable from the prefix: known types, declared ids, pins, params)
    constraint: str = "catalog"
    # decode strategy: "compact" drops finished rows and checks the model's top candidates before a full
    # mask (best where arithmetic dominates: CPU); "overlap" keeps rows and computes full masks while the
    # forward runs; "static" is overlap over a StaticCache, compiled as CUDA graphs on a GPU.
    # "auto": compact on a CPU, static on CUDA (GenResult.extra["mode"] says which ran)
    mode: str = "auto"

    @property
    def level(self) -> str:
        """free | syntax | catalog: what produced an answer (recorded in every exam record)."""
        return self.constraint if self.constrained else "free"


@dataclass
class GenResult:
    index: int
    text: str  # cut at the last complete line when the row did not stop by itself
    raw_text: str
    n_tokens: int
    stop_reason: str  # eos | grammar | max_tokens | time_budget | repetition | constraint
    time_seconds: float
    constrained: bool
    mask_seconds: float = 0.0  # grammar work for this row: checks, masks, consuming tokens
    constraint: str = "free"  # free | syntax | catalog
    extra: dict = field(default_factory=dict)


def grammar_text(pack=None) -> str:
    """The grammar constrained decoding follows: the language pack's (Blueprint's by default)."""
    if pack is None:
        pack = load(DEFAULT_LANGUAGE)
    return pack.grammar_text()


class GrammarConstraint:
    """llguidance matchers for the language pack's grammar over one HF tokenizer.

    ``level="catalog"`` wraps each matcher with a catalog-aware prefix check: ``rules`` (a
    :class:`dsl.constraint.CatalogRules`, Blueprint's) or else the pack's ``constraint()``; a pack
    without one keeps to the grammar alone (level "syntax")."""

    def __init__(self, tokenizer, vocab_size: int | None = None, level: str = "syntax", rules=None,
                 pack=None, unknown_nodes: str = "error"):
        import llguidance
        import llguidance.hf

        if level not in ("syntax", "catalog"):
            raise ValueError(f"constraint level {level!r}: expected syntax or catalog")
        self.rules = rules
        self._checker = None  # factory of fresh catalog checkers
        if level == "catalog" and rules is not None:
            self._checker = lambda: ConstraintState(self.rules)
        elif level == "catalog":
            self._checker = (pack or load(DEFAULT_LANGUAGE)).constraint(unknown_nodes)
            if self._checker is None:
                level = "syntax"
        self.level = level
        self.pieces = _piece_cache(tokenizer)
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size or len(tokenizer)
        self.ll_tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=self.vocab_size)
        self.grammar = llguidance.grammar_from("lark", grammar_text(pack))
        self._template = llguidance.LLMatcher(self.ll_tokenizer, self.grammar)
        if self._template.is_error():
            raise ValueError(f"the {(pack.name if pack else 'blueprint')} grammar is not usable for constrained "
                             f"decoding: {self._template.get_error()}")

    def matcher(self):
        """A fresh matcher: a copy of a compiled template (~1 µs) rather than a new compile (~1 ms)."""
        if self.level == "catalog":
            return CatalogMatcher(self._template.deep_copy(), self._checker(), self.piece)
        return self._template.deep_copy()

    @property
    def mask_words(self) -> int:
        return (self.vocab_size + 31) // 32

    def piece(self, token: int) -> str:
        text = self.pieces.get(token)
        if text is None:
            text = self.pieces[token] = self.tokenizer.decode([token], skip_special_tokens=False)
        return text


class CatalogMatcher:
    """An llguidance matcher and a catalog check, asked together (the decoder sees one matcher).

    The grammar's token mask is a superset of what the catalog allows, so the decoder walks the
    masked candidates in score order and takes the first that ``validate_tokens`` accepts."""

    __slots__ = ("grammar", "state", "piece")
    catalog = True

    def __init__(self, grammar_matcher, state, piece: Callable[[int], str]):
        self.grammar = grammar_matcher
        self.state = state
        self.piece = piece

    def validate_tokens(self, tokens: list[int]) -> int:
        n = self.grammar.validate_tokens(tokens)
        if n < len(tokens) or not tokens:
            return n
        return n if self.state.allows("".join(self.piece(t) for t in tokens)) else 0

    def is_accepting(self) -> bool:
        return self.grammar.is_accepting() and self.state.can_end()

    def consume_token(self, token: int) -> bool:
        if not self.grammar.consume_token(token):
            return False
        self.state.advance(self.piece(token))
        return True

    def is_stopped(self) -> bool:
        return self.grammar.is_stopped()

    def unsafe_compute_mask_ptr(self, ptr: int, size: int) -> None:
        self.grammar.unsafe_compute_mask_ptr(ptr, size)


_BITS: dict[Any, Any] = {}


def _bit_positions(device=None):
    import torch

    key = str(device or "cpu")
    if key not in _BITS:
        _BITS[key] = torch.arange(32, dtype=torch.int32, device=device)
    return _BITS[key]


def apply_bitmask(logits, bitmask) -> None:
    """Set logits of disallowed tokens to -inf, in place (plain torch, any device, one masked fill)."""
    bitmask = bitmask.to(logits.device, non_blocking=True)
    bits = (bitmask.unsqueeze(-1) >> _bit_positions(bitmask.device)) & 1
    allowed = bits.reshape(bitmask.shape[0], -1)
    vocab = logits.shape[-1]
    if allowed.shape[1] < vocab:  # tokens past the mask's words are never allowed
        logits[:, allowed.shape[1]:] = float("-inf")
        logits = logits[:, : allowed.shape[1]]
    logits.masked_fill_(allowed[:, :vocab] == 0, float("-inf"))


def cut_last_line(text: str) -> str:
    """Drop a trailing partial line (generation stopped mid-line)."""
    if text.endswith("\n"):
        return text
    cut = text.rfind("\n")
    return text[: cut + 1] if cut >= 0 else ""


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    config: GenConfig | None = None,
    constraint: GrammarConstraint | None = None,
    on_result: Callable[[GenResult], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[GenResult]:
    """Generate for rendered ``prompts`` in batches; ``on_result`` fires as each row completes.

    ``should_stop`` is checked between batches: results already delivered stay delivered.
    """
    config = config or GenConfig()
    if config.constrained and constraint is None:
        constraint = GrammarConstraint(tokenizer, _vocab_size(model, tokenizer), level=config.constraint)
    mode = decode_mode(model, config)
    order = list(range(len(prompts)))
    lengths = None
    if mode != "compact" or config.batch_size <= 0:
        lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    if mode != "compact":  # bucket by length: a batch pads to its longest prompt, and graphs see few shapes
        order.sort(key=lambda i: lengths[i])
    batch = config.batch_size if config.batch_size > 0 else auto_batch_size(model, lengths or [0],
                                                                             config.max_new_tokens)
    run = _generate_batch if mode == "compact" else _generate_batch_overlapped
    results: list[GenResult] = []
    for start in range(0, len(prompts), max(1, batch)):
        if should_stop and should_stop():
            break
        chunk = order[start : start + batch]
        if mode == "compact":
            results.extend(run(model, tokenizer, prompts, chunk, config, constraint, on_result))
        else:
            results.extend(run(model, tokenizer, prompts, chunk, config, constraint, on_result, mode))
    results.sort(key=lambda r: r.index)
    return results


def decode_mode(model, config: GenConfig) -> str:
    """The decode strategy for ``model``'s device (GenConfig.mode; "auto": compact on CPU, static on CUDA)."""
    if config.mode != "auto":
        if config.mode not in ("compact", "overlap", "static"):
            raise ValueError(f"GenConfig.mode {config.mode!r}: choose auto, compact, overlap or static")
        return config.mode

    if input_device(model).type != "cuda":
        return "compact"
    split = len({str(d) for d in (getattr(model, "hf_device_map", None) or {}).values()}) > 1
    quantized = bool(getattr(model, "is_quantized", False) or getattr(model, "is_loaded_in_8bit", False)
                     or getattr(model, "is_loaded_in_4bit", False))
    # CUDA graphs want one device and plain weights; bitsandbytes kernels and cross-card hops run eagerly
    return "overlap" if split or quantized else "static"


def auto_batch_size(model, prompt_lengths: Sequence[int], max_new_tokens: int, free_bytes: int | None = None,
                    cap: int = 256, cpu_default: int = 16) -> int:
    """Rows per batch from free GPU memory: each row holds its KV cache (longest prompt + answer) and
    a float32 logits row; 80 % of the free memory is spent. On a CPU, ``cpu_default``."""

    device = input_device(model)
    if free_bytes is None:
        if device.type != "cuda":
            return cpu_default
        import torch

        free_bytes = int(torch.cuda.mem_get_info(device)[0])
    return batch_rows(model.config, max(prompt_lengths or [0]) + max_new_tokens, free_bytes,
                      _param_bytes(model), cap)


def batch_rows(cfg, seq_len: int, free_bytes: int, dtype_bytes: int = 2, cap: int = 256) -> int:
    """How many rows of ``seq_len`` tokens fit in ``free_bytes`` (pure: KV cache + logits per row)."""
    layers = int(getattr(cfg, "num_hidden_layers", 1))
    heads = int(getattr(cfg, "num_attention_heads", 1))
    kv_heads = int(getattr(cfg, "num_key_value_heads", heads) or heads)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
    kv = 2 * layers * kv_heads * head_dim * dtype_bytes * seq_len
    logits = int(getattr(cfg, "vocab_size", 32000)) * 4 * 3  # logits, mask, argmax scratch
    act = int(getattr(cfg, "intermediate_size", 4 * cfg.hidden_size)) * dtype_bytes * 4
    rows = int(0.8 * free_bytes // max(1, kv + logits + act))
    return max(1, min(cap, rows))


def _param_bytes(model) -> int:
    try:
        return max(1, next(model.parameters()).element_size())
    except StopIteration:
        return 2


def _vocab_size(model, tokenizer) -> int:
    return max(len(tokenizer), int(getattr(model.config, "vocab_size", 0) or 0))


def _generate_batch(model, tokenizer, prompts, indices, config, constraint, on_result) -> list[GenResult]:
    import torch


    device = input_device(model)
    enc = _encode_left(tokenizer, [prompts[i] for i in indices])
    input_ids = enc["input_ids"].to(device)
    attention = enc["attention_mask"].to(device)
    eos_ids = _eos_ids(model, tokenizer)
    constrained = bool(config.constrained and constraint is not None)
    matchers = [constraint.matcher() for _ in indices] if constrained else None
    bitmask = torch.full((len(indices), constraint.mask_words), -1, dtype=torch.int32) if constrained else None

    start = time.perf_counter()
    rows = _Rows(len(indices), tokenizer, config)
    generated, line_counts = rows.generated, rows.line_counts
    mask_time = [0.0] * len(indices)
    alive = list(range(len(indices)))  # positions (into indices) still decoding, in cache row order
    out: list[GenResult] = []

    def finish(pos: int, reason: str) -> None:
        raw = tokenizer.decode(generated[pos], skip_special_tokens=True)
        text = raw if reason in ("eos", "grammar") else cut_last_line(raw)
        if any(n > 1 for n in line_counts[pos].values()):  # a repeated line is never meant: keep the first
            text = _drop_repeated_lines(text)
        res = GenResult(
            index=indices[pos],
            text=text,
            raw_text=raw,
            n_tokens=len(generated[pos]),
            stop_reason=reason,
            time_seconds=time.perf_counter() - start,
            constrained=constrained,
            mask_seconds=mask_time[pos],
            constraint=(constraint.level if constrained else "free"),
            extra={"mode": "compact", "batch": len(indices), "batch_id": indices[0]},
        )
        out.append(res)
        if on_result:
            on_result(res)

    position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        outputs = model(input_ids=input_ids, attention_mask=attention, position_ids=position_ids, use_cache=True)
        cache = outputs.past_key_values
        logits = outputs.logits[:, -1, :].float()
        next_pos = position_ids[:, -1:] + 1
        for step in range(config.max_new_tokens + 1):
            chosen = logits.argmax(dim=-1).tolist()
            if constrained:
                # Greedy under a grammar = argmax over the allowed tokens. When the plain argmax is
                # allowed (nearly always, for a trained model) it *is* that token, so the full mask
                # is only computed for rows whose first choice the grammar refuses.
                t0 = time.perf_counter()
                refused = [row for row, pos in enumerate(alive) if not _allowed(matchers[pos], chosen[row], eos_ids)]
                # next best candidates in score order: the first one the grammar allows is the answer
                hard = []
                if refused:
                    tops = logits.index_select(0, torch.tensor(refused, device=logits.device)).topk(
                        min(_TOP_K, logits.shape[-1]), dim=-1).indices.tolist()
                    for row, cands in zip(refused, tops):
                        m = matchers[alive[row]]
                        pick = next((t for t in cands if _allowed(m, t, eos_ids)), None)
                        if pick is None:
                            hard.append(row)
                        else:
                            chosen[row] = pick
                if hard:  # none of the top candidates fits: the full token mask decides
                    for row in hard:
                        v = bitmask[row]
                        matchers[alive[row]].unsafe_compute_mask_ptr(v.data_ptr(), v.numel() * 4)
                    idx = torch.tensor(hard, device=logits.device)
                    sub = logits.index_select(0, idx)
                    apply_bitmask(sub, bitmask[hard])
                    dead = torch.isinf(sub).all(dim=-1)
                    if bool(dead.any()) and eos_ids:  # a matcher with nothing left to allow: end that row
                        sub[dead, next(iter(eos_ids))] = 0.0
                    if constraint.level == "catalog":
                        # the grammar's mask is a superset: the best masked candidate the catalog
                        # also allows; none among the top ones ends the row at its last whole line
                        tops = sub.topk(min(_CATALOG_K, sub.shape[-1]), dim=-1)
                        for row, vals, cands in zip(hard, tops.values.tolist(), tops.indices.tolist()):
                            m = matchers[alive[row]]
                            chosen[row] = next((t for v, t in zip(vals, cands)
                                                if v != float("-inf") and _allowed(m, t, eos_ids)), -1)
                    else:
                        for row, tok in zip(hard, sub.argmax(dim=-1).tolist()):
                            chosen[row] = tok
                dt = (time.perf_counter() - t0) / max(1, len(alive))
                for pos in alive:
                    mask_time[pos] += dt
            now = time.perf_counter() - start
            keep_rows: list[int] = []
            for row, pos in enumerate(alive):
                tok = chosen[row]
                if tok < 0:
                    reason = "constraint"  # nothing the catalog allows: cut at the last whole line
                elif tok in eos_ids:
                    reason = "eos"
                elif constrained and not _consume(matchers[pos], tok, mask_time, pos):
                    reason = "grammar"  # the matcher refused (should not happen under its own mask)
                else:
                    reason = rows.take(pos, tok, matchers[pos] if constrained else None, now)
                if reason:
                    finish(pos, reason)
                else:
                    keep_rows.append(row)
            if not keep_rows:
                break
            if len(keep_rows) < len(alive):
                sel = torch.tensor(keep_rows, device=device)
                cache.batch_select_indices(sel)
                attention = attention[sel]
                next_pos = next_pos[sel]
                chosen = [chosen[r] for r in keep_rows]
                alive = [alive[r] for r in keep_rows]
            step_ids = torch.tensor(chosen, device=device).unsqueeze(-1)
            attention = torch.cat([attention, torch.ones_like(step_ids)], dim=1)
            outputs = model(
                input_ids=step_ids,
                attention_mask=attention,
                position_ids=next_pos,
                past_key_values=cache,
                use_cache=True,
            )
            cache = outputs.past_key_values
            logits = outputs.logits[:, -1, :].float()
            next_pos = next_pos + 1
    out.sort(key=lambda r: r.index)
    return out


def _generate_batch_overlapped(model, tokenizer, prompts, indices, config, constraint, on_result,
                               mode: str = "overlap") -> list[GenResult]:
    """The GPU decode loop (module docstring): rows kept, masks overlapped with the forward, one sync per step."""
    import torch


    device = input_device(model)
    cuda = device.type == "cuda"
    enc = _encode_left(tokenizer, [prompts[i] for i in indices])
    n = len(indices)
    prompt_len = enc["input_ids"].shape[1]
    input_ids = enc["input_ids"].to(device, non_blocking=True)
    eos_ids = _eos_ids(model, tokenizer)
    eos = next(iter(sorted(eos_ids)), None)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or 0)
    constrained = bool(config.constrained and constraint is not None)
    matchers = [constraint.matcher() for _ in indices] if constrained else None
    catalog = constrained and constraint.level == "catalog"
    pin = cuda
    host_mask = (torch.full((n, constraint.mask_words), -1, dtype=torch.int32, pin_memory=pin)
                 if constrained else None)
    dev_mask = host_mask.to(device) if constrained else None
    executor = _executor() if constrained else None

    start = time.perf_counter()
    rows = _Rows(n, tokenizer, config)
    generated, line_counts = rows.generated, rows.line_counts
    mask_time = [0.0] * n
    alive = [True] * n
    out: list[GenResult] = []

    def finish(pos: int, reason: str) -> None:
        alive[pos] = False
        raw = tokenizer.decode(generated[pos], skip_special_tokens=True)
        text = raw if reason in ("eos", "grammar") else cut_last_line(raw)
        if any(c > 1 for c in line_counts[pos].values()):
            text = _drop_repeated_lines(text)
        res = GenResult(index=indices[pos], text=text, raw_text=raw, n_tokens=len(generated[pos]),
                        stop_reason=reason, time_seconds=time.perf_counter() - start, constrained=constrained,
                        mask_seconds=mask_time[pos], constraint=(constraint.level if constrained else "free"),
                        extra={"mode": mode, "batch": n, "batch_id": indices[0],
                                                            **({"compile_error": compile_error} if compile_error else {})})
        out.append(res)
        if on_result:
            on_result(res)

    def fill_masks() -> None:
        """Full masks for every live row into the pinned host buffer, then an async copy to the device."""
        t0 = time.perf_counter()
        live = [(getattr(matchers[pos], "grammar", matchers[pos]), pos) for pos in range(n) if alive[pos]]
        if live:
            import llguidance.torch as llt

            llt.fill_next_token_bitmask_par(executor, live, host_mask)
            dev_mask.copy_(host_mask, non_blocking=True)
        dt = (time.perf_counter() - t0) / max(1, len(live))
        for _m, pos in live:
            mask_time[pos] += dt

    attention = enc["attention_mask"].to(device, non_blocking=True)
    position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
    total = prompt_len + config.max_new_tokens + 1
    static = mode == "static"
    step_fn = model
    with torch.inference_mode():
        if static:
            from transformers import StaticCache

            total = _bucket(total)
            cache = StaticCache(config=model.config, max_cache_len=total)
            full_attention = torch.zeros((n, total), dtype=attention.dtype, device=device)
            full_attention[:, :prompt_len] = attention
            outputs = model(input_ids=input_ids, attention_mask=full_attention, position_ids=position_ids,
                            past_key_values=cache, cache_position=torch.arange(prompt_len, device=device),
                            use_cache=True, logits_to_keep=1)
            if cuda:
                step_fn = _compiled_step(model)
        else:
            outputs = model(input_ids=input_ids, attention_mask=attention, position_ids=position_ids, use_cache=True,
                            logits_to_keep=1)  # a prompt's logits would be batch x length x vocab floats
            cache = outputs.past_key_values
        if constrained:
            fill_masks()  # the first masks: the prompt's forward is already queued ahead of them
        logits = outputs.logits[:, -1, :].to(torch.float32, copy=True)
        next_pos = position_ids[:, -1:] + 1
        cache_pos = torch.tensor([prompt_len], device=device)
        compile_error = None
        for step in range(config.max_new_tokens + 1):
            if constrained:
                apply_bitmask(logits, dev_mask)
                if eos is not None:  # a matcher with nothing left to allow ends its row
                    dead = torch.isinf(logits).all(dim=-1)
                    logits[:, eos] = torch.where(dead, torch.zeros_like(logits[:, eos]), logits[:, eos])
            picked = logits.argmax(dim=-1)
            chosen = picked.tolist()  # the step's one host<->device sync
            now = time.perf_counter() - start
            t0 = time.perf_counter()
            if catalog:  # the grammar's mask is a superset: rows whose pick the catalog refuses try the next best
                refused = [pos for pos in range(n) if alive[pos] and not _allowed(matchers[pos], chosen[pos], eos_ids)]
                if refused:
                    tops = logits.index_select(0, torch.tensor(refused, device=logits.device)).topk(
                        min(_CATALOG_K, logits.shape[-1]), dim=-1)
                    for pos, vals, cands in zip(refused, tops.values.tolist(), tops.indices.tolist()):
                        chosen[pos] = next((t for v, t in zip(vals, cands)
                                            if v != float("-inf") and _allowed(matchers[pos], t, eos_ids)), -1)
            for pos in range(n):
                if not alive[pos]:
                    continue
                tok = chosen[pos]
                if tok < 0:
                    reason = "constraint"  # nothing the catalog allows: cut at the last whole line
                elif tok in eos_ids:
                    reason = "eos"
                elif constrained and not matchers[pos].consume_token(tok):
                    reason = "grammar"
                else:
                    reason = rows.take(pos, tok, matchers[pos] if constrained else None, now)
                if reason:
                    finish(pos, reason)
            if constrained:
                dt = (time.perf_counter() - t0) / max(1, n)
                for pos in range(n):
                    mask_time[pos] += dt
            if not any(alive):
                break
            # finished rows are fed a pad token and ignored: no cache reshuffle, static shapes
            step_ids = torch.tensor([[chosen[p] if alive[p] else pad] for p in range(n)], dtype=torch.long,
                                    pin_memory=pin).to(device, non_blocking=True)
            if static:
                full_attention.index_fill_(1, cache_pos, 1)
                kw = dict(input_ids=step_ids, attention_mask=full_attention, position_ids=next_pos,
                          past_key_values=cache, cache_position=cache_pos, use_cache=True)
                try:
                    outputs = step_fn(**kw)
                except Exception as exc:  # noqa: BLE001 - a graph that will not compile: decode eagerly, say so
                    if step_fn is model:
                        raise
                    compile_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                    _COMPILED[model] = step_fn = model
                    outputs = model(**kw)
                cache_pos = cache_pos + 1
            else:
                attention = torch.cat([attention, torch.ones_like(step_ids)], dim=1)
                outputs = model(input_ids=step_ids, attention_mask=attention, position_ids=next_pos,
                                past_key_values=cache, use_cache=True)
                cache = outputs.past_key_values
            if constrained:
                fill_masks()  # CPU work while the GPU runs the forward just queued
            logits = outputs.logits[:, -1, :].to(torch.float32, copy=True)  # a CUDA graph reuses its output
            next_pos = next_pos + 1
    out.sort(key=lambda r: r.index)
    return out


def _bucket(length: int, step: int = 128) -> int:
    """Static cache lengths come in steps, so a compiled graph is reused across batches."""
    return -(-length // step) * step


_COMPILED: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def _compiled_step(model):
    """The model's forward as CUDA graphs (torch.compile reduce-overhead); CUDA only, compiled once per model."""
    fn = _COMPILED.get(model)
    if fn is None:
        import torch

        fn = _COMPILED[model] = torch.compile(model.forward, mode="reduce-overhead", fullgraph=False)
    return fn


@lru_cache(maxsize=1)
def _executor():
    """llguidance's thread pool for computing many rows' masks at once (releases the GIL)."""
    import llguidance

    return llguidance.LLExecutor()


_PIECES: "weakref.WeakKeyDictionary[Any, dict[int, str]]" = weakref.WeakKeyDictionary()


def _piece_cache(tokenizer) -> dict[int, str]:
    """token id -> its text, per tokenizer (decoding one token at a time costs more than the model step)."""
    try:
        return _PIECES.setdefault(tokenizer, {})
    except TypeError:  # not weak-referenceable: no cache
        return {}


_TOP_K = 32
# masked candidates tried, best first, by the catalog check before a row is ended: a weak model can rank
# hundreds of grammar-valid identifier tokens above the one the catalog allows (256 cut 3 of 15 exam rows)
_CATALOG_K = 4096


def _consume(matcher, token: int, spent: list[float], pos: int) -> bool:
    t0 = time.perf_counter()
    ok = matcher.consume_token(token)
    spent[pos] += time.perf_counter() - t0
    return ok


def _allowed(matcher, token: int, eos_ids: set[int]) -> bool:
    if token in eos_ids:
        return matcher.is_accepting()
    return matcher.validate_tokens([token]) == 1


def _eos_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None) if gen is not None else None
    if isinstance(eos, int):
        ids.add(eos)
    elif isinstance(eos, (list, tuple)):
        ids.update(int(e) for e in eos)
    return ids


def _encode_left(tokenizer, texts: list[str]):
    """A batch left-padded (generation appends on the right), the tokenizer's own side restored."""
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = old_side


class _Rows:
    """What each row of a batch has written, and why it must end now (both decode loops share it)."""

    def __init__(self, n: int, tokenizer, config: GenConfig):
        self.generated: list[list[int]] = [[] for _ in range(n)]
        self.line_counts: list[dict[str, int]] = [{} for _ in range(n)]
        self.line_start: list[int] = [0] * n  # char offset where the current line starts
        self.texts: list[str] = [""] * n
        self.pieces = _piece_cache(tokenizer)
        self.tokenizer = tokenizer
        self.config = config

    def take(self, pos: int, tok: int, matcher, now: float) -> str | None:
        """Append a consumed token to row ``pos``; the reason the row ends here, or None."""
        config = self.config
        self.generated[pos].append(tok)
        piece = self.pieces.get(tok)
        if piece is None:
            piece = self.pieces[tok] = self.tokenizer.decode([tok], skip_special_tokens=False)
        text = self.texts[pos] = self.texts[pos] + piece
        if matcher is not None and matcher.is_stopped():
            return "grammar"
        if "\n" in piece and _repeated_line(text, self.line_start, pos, self.line_counts[pos], config):
            return "repetition"
        if len(text) - self.line_start[pos] > config.max_line_chars:
            return "repetition"  # one line growing without end is a loop too
        if len(self.generated[pos]) >= config.max_new_tokens:
            return "max_tokens"
        if now >= config.time_budget_s:
            return "time_budget"
        return None


def _repeated_line(text: str, line_start: list[int], pos: int, counts: dict[str, int], config: GenConfig) -> bool:
    """Count the lines completed by the newest piece; True when one repeats too often."""
    repeated = False
    while True:
        nl = text.find("\n", line_start[pos])
        if nl < 0:
            break
        line = text[line_start[pos] : nl].strip()
        line_start[pos] = nl + 1
        if not line:
            continue
        counts[line] = counts.get(line, 0) + 1
        if counts[line] > config.max_repeat_lines:
            repeated = True
    return repeated


def _drop_repeated_lines(text: str) -> str:
    """Keep each non-blank line's first occurrence only."""
    seen: set[str] = set()
    kept = []
    for line in text.splitlines(keepends=True):
        key = line.strip()
        if key and key in seen:
            continue
        seen.add(key)
        kept.append(line)
    return "".join(kept)
