"""The step encoder (decoding/encoding.py) equals the tokenizer's own ``__call__``."""

from __future__ import annotations

import os

import pytest

from pairscope.decoding.encoding import SERIAL_CHARS, Encoder, encoder, serial
from tests.conftest import CORPUS
from tests.families import FAMILIES, build

STRINGS = [
    "Question: Tom has 3 apples and buys 5 more.\nAnswer:",
    " 3 + 5 = 8",
    "",
    "  two  spaces\n\nnewlines\t tab",
    "ü é 漢字 🙂",
    "<|im_start|>user\nhi<|im_end|>",
    "</s> and <s> inside text",
    " don't",
]


@pytest.fixture(scope="module", params=FAMILIES)
def tok(request):
    return build(request.param, CORPUS)


def wrapper(tok, strings, add_special, offsets):
    enc = tok(list(strings), add_special_tokens=add_special, return_offsets_mapping=offsets)
    ids = [list(row) for row in enc["input_ids"]]
    starts = [[o[0] for o in row] for row in enc["offset_mapping"]] if offsets else None
    return ids, starts


@pytest.mark.parametrize("add_special", [False, True])
@pytest.mark.parametrize("offsets", [False, True])
def test_direct_encoding_equals_the_tokenizer_call(tok, add_special, offsets):
    enc = Encoder(tok)
    assert enc._direct() is not None  # every family fixture takes the direct path
    assert enc.encode(STRINGS, add_special, offsets) == wrapper(tok, STRINGS, add_special, offsets)
    for s in STRINGS:  # one string alone, as a prompt is encoded
        assert enc.encode([s], add_special, offsets) == wrapper(tok, [s], add_special, offsets)


def test_a_tokenizer_with_truncation_set_goes_through_its_call(tok):
    long = ["Tom has 3 apples and buys 5 more apples at the shop today"]
    full = wrapper(tok, long, False, True)
    tok.backend_tokenizer.enable_truncation(3)
    try:
        enc = Encoder(tok)
        assert enc._direct() is None
        # __call__ with no truncation argument does not truncate (it resets the backend).
        assert enc.encode(long, False, True) == full
        assert len(full[0][0]) > 3
    finally:
        tok.backend_tokenizer.no_truncation()


def test_split_special_tokens_goes_through_the_call(tok):
    tok.split_special_tokens = True
    try:
        enc = Encoder(tok)
        assert enc._direct() is None
        text = ["<|im_start|>user"]
        assert enc.encode(text, False, False) == wrapper(tok, text, False, False)
    finally:
        tok.split_special_tokens = False
        tok.backend_tokenizer.encode_special_tokens = False


def test_a_subclass_that_overrides_the_call_is_never_bypassed(tok):
    calls = []

    class Logged(type(tok)):
        def __call__(self, *args, **kwargs):
            calls.append(args)
            return super().__call__(*args, **kwargs)

    logged = Logged(tokenizer_object=tok.backend_tokenizer)
    enc = encoder(logged)
    assert enc._direct() is None
    assert enc.encode(STRINGS[:2], False, True) == wrapper(tok, STRINGS[:2], False, True)
    assert calls


def test_one_encoder_per_tokenizer(tok):
    assert encoder(tok) is encoder(tok)


def test_empty_batch():
    tok = build("bytelevel", CORPUS)
    assert Encoder(tok).encode([], False, True) == ([], [])
    assert Encoder(tok).encode([], False, False) == ([], None)


@pytest.mark.parametrize("before", [None, "true"])
def test_serial_sets_the_parallelism_flag_only_inside(monkeypatch, before):
    if before is None:
        monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    else:
        monkeypatch.setenv("TOKENIZERS_PARALLELISM", before)
    with serial():
        assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    assert os.environ.get("TOKENIZERS_PARALLELISM") == before
    with pytest.raises(KeyError), serial():
        raise KeyError
    assert os.environ.get("TOKENIZERS_PARALLELISM") == before


def test_short_batches_are_encoded_serially_and_long_ones_in_the_pool(monkeypatch):
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    tok = build("bytelevel", CORPUS)
    seen = []
    backend = tok.backend_tokenizer

    class Spy:
        truncation = padding = None
        encode_special_tokens = False

        def encode_batch(self, strings, **kwargs):
            seen.append(os.environ.get("TOKENIZERS_PARALLELISM"))
            return backend.encode_batch(strings, **kwargs)

    enc = Encoder(tok)
    enc._backend = Spy()
    short = ["a b c"] * 4
    long = ["x" * 100] * (SERIAL_CHARS // 100 + 1)
    assert enc.encode(short, False, False)[0] == wrapper(tok, short, False, False)[0]
    assert enc.encode(long, False, False)[0] == wrapper(tok, long, False, False)[0]
    assert seen == ["false", None]
