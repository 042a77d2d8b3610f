"""The tiny tokenizer: a node name must spell the same tokens in a prompt as in the DSL."""
from __future__ import annotations

import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

from dsl.catalog import default_catalog  # noqa: E402
from engine.ml.base import catalog_vocabulary  # noqa: E402
from engine.ml.tokenizer import train_tokenizer  # noqa: E402
from engine.dataset.synthetic import generate  # noqa: E402


@pytest.fixture(scope="module")
def texts():
    rows = generate(300, seed=5)
    return [" ".join(catalog_vocabulary(default_catalog()))] * 4 + [t for r in rows for t in (r["instruction"], r["output"])]


def _pieces_of(tok, text: str, name: str) -> list[str]:
    """The tokens that spell ``name`` inside ``text`` (by character offsets)."""
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
    start = text.index(name)
    end = start + len(name)
    return [text[a:b] for a, b in enc["offset_mapping"] if a < end and b > start]


@pytest.mark.parametrize("name", ["ArrayRemoveIndex", "GetPlayerController", "Event_ActorBeginOverlap",
                                  "SetActorHiddenInGame", "ForLoopWithBreak"])
def test_identifiers_tokenize_alike_in_prompt_and_dsl(texts, name):
    tok = train_tokenizer(texts, vocab_size=1024, isolate_identifiers=True)
    in_prompt = _pieces_of(tok, f"Make a Blueprint that calls {name} with 2 when play begins.", name)
    in_dsl = _pieces_of(tok, f"NODE n3: {name} [Index=7]", name)
    assert in_prompt == in_dsl
    assert "".join(in_dsl) == name  # no piece reaches outside the name


def test_isolation_still_round_trips(texts):
    tok = train_tokenizer(texts, vocab_size=1024, isolate_identifiers=True)
    for text in texts[4:40]:
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_node_names_are_whole_tokens_and_the_grammar_accepts_them(texts):
    from engine.ml.generate import GrammarConstraint
    from engine.ml.tokenizer import add_node_tokens

    tok = train_tokenizer(texts, vocab_size=1024, isolate_identifiers=True)
    names = sorted(default_catalog().nodes)
    assert add_node_tokens(tok, names) == len(names)
    # one token each, in a prompt and in the DSL; a shorter name never matches inside a longer one
    assert _pieces_of(tok, "calls ForEachLoop with 2", "ForEachLoop") == ["ForEachLoop"]
    assert _pieces_of(tok, "NODE n3: ForEachLoopWithBreak", "ForEachLoopWithBreak") == ["ForEachLoopWithBreak"]
    assert _pieces_of(tok, "BLUEPRINT: BP_ArrayGet24", "BP_ArrayGet24") != ["BP_", "ArrayGet", "24"]
    # the constrained decoder may write the whole-name token where the grammar expects a node type
    constraint = GrammarConstraint(tok)
    matcher = constraint.matcher()
    prefix = "BLUEPRINT: BP_X\nPARENT: Actor\nGRAPH: EventGraph\nNODE n1: "
    for t in tok(prefix, add_special_tokens=False)["input_ids"]:
        assert matcher.consume_token(t)
    assert matcher.validate_tokens([tok.convert_tokens_to_ids("Event_BeginPlay")]) == 1
