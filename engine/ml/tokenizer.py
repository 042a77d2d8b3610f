"""The tiny profile's tokenizer: byte-level BPE trained on the workspace's own text.

Byte-level BPE can spell any string (so exams never hit an unknown token) and,
trained on the DSL, gives its keywords and node names short codes. The chat
template is stored on the tokenizer so the tiny model and a real Llama go through
one prompt path (``tokenizer.apply_chat_template``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
SYSTEM, USER, ASSISTANT = "<|system|>", "<|user|>", "<|assistant|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, SYSTEM, USER, ASSISTANT]

# One message per turn; the generation prompt ends exactly on the <|assistant|> special
# token — a hard token boundary — so prompt and prompt+completion tokenize alike (trl
# derives the completion mask from their common prefix; a trailing "\n" would merge
# into the answer's first piece and differ between training and inference).
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}<|system|>\n{{ message['content'] }}\n"
    "{% elif message['role'] == 'user' %}<|user|>\n{{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}<|assistant|>{{ message['content'] }}{{ eos_token }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


# CamelCase / snake_case identifiers (node, pin and param names): split out as pieces of their own
# so a name spells the same tokens in a prompt ("calls ArrayRemoveIndex with 2") as in the DSL
# ("NODE n3: ArrayRemoveIndex"); glued to their neighbours they tokenize differently in each place
# and the model cannot copy the name it was given
IDENTIFIER = r"\b[A-Za-z][A-Za-z0-9]*(?:[A-Z_][A-Za-z0-9]*)+"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096, max_token_length: int = 16,
                    isolate_identifiers: bool = False):
    """Train a byte-level BPE on ``texts`` and wrap it as a fast HF tokenizer.

    Pieces may span spaces but never a line break (each line starts a new piece):
    DSL lines are formulaic, so ``NODE n2: PrintString [InString`` becomes a few
    tokens instead of a dozen — about 3x shorter sequences than GPT-2-style
    splitting, which is 3x faster training and generation on a CPU.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    steps = [pre_tokenizers.Split(Regex(r"\n"), "merged_with_next")]
    if isolate_identifiers:
        steps.append(pre_tokenizers.Split(Regex(IDENTIFIER), "isolated"))
    steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        max_token_length=max_token_length,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return wrap(tok)


def add_node_tokens(tokenizer, names: Iterable[str]) -> int:
    """One token per catalog node name, matched as a whole word only.

    BPE splits long names into pieces (ForEachLoop | WithBreak), and a lesson that drills one name
    then teaches its pieces: after a ForLoopWithBreak drill the model continued "ForEachLoop" with
    "WithBreak" (ForEachLoop -10.5 points). A name that is one token is copied or not, never grown.
    The grammar-constrained decoder sees these tokens like any other (llguidance reads their bytes).
    """
    from tokenizers import AddedToken

    return tokenizer.add_tokens([AddedToken(name, single_word=True, normalized=False) for name in sorted(set(names))])


def wrap(tok):
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[SYSTEM, USER, ASSISTANT],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 4096
    return fast


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if not getattr(tok, "chat_template", None):
        tok.chat_template = CHAT_TEMPLATE
    return tok
