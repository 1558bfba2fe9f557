"""SID tokens inside Hugging Face text tokenizers (a locally trained SentencePiece model, no Hub) and model resizing."""

from __future__ import annotations

import io

import pytest
import sentencepiece as spm
import torch
from tokenizers import Tokenizer, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
    T5Tokenizer,
)
from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

from genrec.models.lora import resize_model_embeddings
from genrec.tokenizer.text_tokens import add_sid_tokens, sid_to_text, text_to_sid

SENTENCES = ["the quick brown fox jumps over the lazy dog", "a moisturising lipstick for dry lips",
             "trail running shoes with a grippy sole", "shampoo and conditioner gift set",
             "a cooperative board game for the whole family", "<a> tags and b_3 look like sid tokens but are not"]
SIZES = (4, 3, 2)


@pytest.fixture(scope="module")
def spiece_model(tmp_path_factory) -> str:
    """A tiny SentencePiece unigram model trained here, with T5's special ids (pad 0, eos 1, unk 2)."""
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(SENTENCES * 10), model_writer=buffer, vocab_size=80,
                                   model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False,
                                   minloglevel=2)
    path = tmp_path_factory.mktemp("spiece") / "spiece.model"
    path.write_bytes(buffer.getvalue())
    return str(path)


def t5_tokenizer(spiece_model: str) -> T5Tokenizer:
    # transformers 5 converts a .model file through protobuf (not installed): build the same Unigram model from the
    # SentencePiece model's pieces and scores instead.
    sp = spm.SentencePieceProcessor(model_file=spiece_model)
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def sentencepiece_tokenizer(spiece_model: str) -> SentencePieceBackend:
    """The slow tokenizer: runs the .model file itself through the sentencepiece library."""
    return SentencePieceBackend(vocab_file=spiece_model, eos_token="</s>", unk_token="<unk>", pad_token="<pad>")


def word_level_tokenizer() -> PreTrainedTokenizerFast:
    words = sorted({w for s in SENTENCES for w in s.split()})
    backend = Tokenizer(WordLevel({w: i for i, w in enumerate(["[UNK]", *words])}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()  # would split "<a_1>" into "<", "a_1", ">"
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


def test_sid_text_round_trip_and_errors():
    assert sid_to_text((12, 3, 0)) == "<a_12><b_3><c_0>"
    assert text_to_sid("<a_12><b_3><c_0>") == (12, 3, 0)
    assert text_to_sid(" <a_12> <b_3>\n<c_0> ", num_levels=3) == (12, 3, 0)
    assert text_to_sid(sid_to_text((1, 2), fmt="[{level}{code}]"), fmt="[{level}{code}]") == (1, 2)
    with pytest.raises(ValueError, match="out of order"):
        text_to_sid("<b_3><a_12>")
    with pytest.raises(ValueError, match="not a SID token at position 6"):
        text_to_sid("<a_12>hello")
    with pytest.raises(ValueError, match="has 2 SID levels, expected 3"):
        text_to_sid("<a_1><b_2>", num_levels=3)
    with pytest.raises(ValueError, match="no SID tokens"):
        text_to_sid("  ")
    with pytest.raises(ValueError, match="must contain"):
        sid_to_text((1,), fmt="<{code}>")


@pytest.mark.parametrize("kind", ["t5", "sentencepiece", "word_level"])
def test_add_sid_tokens_to_any_tokenizer(tmp_path, spiece_model, kind):
    tok = {"t5": lambda: t5_tokenizer(spiece_model), "sentencepiece": lambda: sentencepiece_tokenizer(spiece_model),
           "word_level": word_level_tokenizer}[kind]()
    base = len(tok)
    sentence = "a lipstick for dry lips"
    before = tok(sentence, add_special_tokens=False)["input_ids"]
    mapping = add_sid_tokens(tok, SIZES)
    assert len(mapping) == sum(SIZES) and len(tok) == base + sum(SIZES)
    assert sorted(mapping.values()) == list(range(base, base + sum(SIZES)))
    assert tok.convert_ids_to_tokens(mapping[(0, 3)]) == "<a_3>" and tok.convert_ids_to_tokens(mapping[(2, 1)]) == "<c_1>"

    sid = (3, 0, 1)
    ids = tok(sid_to_text(sid), add_special_tokens=False)["input_ids"]
    assert ids == [mapping[(level, code)] for level, code in enumerate(sid)]  # one token per level, never split
    assert text_to_sid(tok.decode(ids), num_levels=3) == sid
    assert text_to_sid(tok.decode(ids, skip_special_tokens=True)) == sid  # not special: survives generation decoding
    mixed = tok(f"{sentence} {sid_to_text(sid)}", add_special_tokens=False)["input_ids"]
    assert mixed[-3:] == ids and mixed[:-3] == before  # surrounding text tokenises as before

    assert add_sid_tokens(tok, SIZES) == mapping and len(tok) == base + sum(SIZES)  # idempotent
    grown = add_sid_tokens(tok, SIZES[:-1] + (3,))  # a dedup level that grew: one new token, old ids kept
    assert len(tok) == base + sum(SIZES) + 1 and all(grown[k] == v for k, v in mapping.items())

    tok.save_pretrained(tmp_path / "tok")
    reloaded = type(tok).from_pretrained(tmp_path / "tok") if kind != "t5" else T5Tokenizer.from_pretrained(tmp_path / "tok")
    assert reloaded(sid_to_text(sid), add_special_tokens=False)["input_ids"] == ids


def test_add_sid_tokens_rejects_bad_formats(spiece_model):
    tok = t5_tokenizer(spiece_model)
    with pytest.raises(ValueError, match="level before the code"):
        add_sid_tokens(tok, SIZES, fmt="<{code}_{level}>")
    with pytest.raises(ValueError, match="at most 26 levels"):
        add_sid_tokens(tok, (2,) * 27)
    assert len(tok) == len(t5_tokenizer(spiece_model))  # nothing was added


def tiny_t5(vocab_size: int) -> T5ForConditionalGeneration:
    """T5 ties input and output embeddings (transformers 5 always does for T5)."""
    torch.manual_seed(0)
    config = T5Config(vocab_size=vocab_size, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2,
                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    return T5ForConditionalGeneration(config).eval()


def tiny_llama(vocab_size: int) -> LlamaForCausalLM:
    """A decoder-only LM with an untied output layer."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, tie_word_embeddings=False, pad_token_id=0)
    return LlamaForCausalLM(config).eval()


def forward(model, tok, text: str) -> torch.Tensor:
    ids = tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return model(input_ids=ids, labels=ids).logits


@pytest.mark.parametrize("arch", ["t5", "llama"])
def test_resize_model_embeddings_mean_init(spiece_model, arch):
    tok = t5_tokenizer(spiece_model)
    model = {"t5": tiny_t5, "llama": tiny_llama}[arch](len(tok))
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    logits_before = forward(model, tok, "a lipstick for dry lips")

    mapping = add_sid_tokens(tok, SIZES)
    rows = resize_model_embeddings(model, tok)
    assert rows == sorted(mapping.values())
    new_in, new_out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert (new_in is new_out) == (arch == "t5")
    assert new_in.shape[0] == new_out.shape[0] == len(tok) == model.config.vocab_size
    assert torch.equal(new_in[: len(old_in)], old_in) and torch.equal(new_out[: len(old_out)], old_out)  # old rows kept
    assert torch.allclose(new_in[rows], old_in.mean(dim=0).expand(len(rows), -1))
    assert torch.allclose(new_out[rows], old_out.mean(dim=0).expand(len(rows), -1))
    # Text without SID tokens scores the old vocabulary exactly as before; SID text runs through the model.
    assert torch.allclose(forward(model, tok, "a lipstick for dry lips")[..., : len(old_out)], logits_before, atol=1e-6)
    assert forward(model, tok, sid_to_text((3, 0, 1))).isfinite().all()


def test_resize_with_spare_rows_and_sampled_init(spiece_model):
    tok = t5_tokenizer(spiece_model)
    spare = len(tok) + sum(SIZES) + 5  # like T5 checkpoints: more rows than tokens
    model = tiny_t5(spare)
    old = model.get_input_embeddings().weight.detach().clone()
    mapping = add_sid_tokens(tok, SIZES)
    assert resize_model_embeddings(model, tok) == []  # nothing added, nothing touched
    assert torch.equal(model.get_input_embeddings().weight, old)
    token_ids = list(mapping.values())
    assert resize_model_embeddings(model, tok, token_ids=token_ids) == sorted(token_ids)
    weight = model.get_input_embeddings().weight
    others = torch.ones(spare, dtype=torch.bool)
    others[token_ids] = False
    assert weight.shape[0] == spare and torch.allclose(weight[token_ids], old[others].mean(dim=0).expand(len(token_ids), -1))

    model = tiny_llama(len(tok) - sum(SIZES))
    rows = resize_model_embeddings(model, tok, init="sampled")
    assert len(rows) == sum(SIZES) and model.get_input_embeddings().weight.shape[0] == len(tok)
    with pytest.raises(ValueError, match="only initialises rows added by the resize"):
        resize_model_embeddings(model, tok, init="sampled", token_ids=[0])
    with pytest.raises(ValueError, match="init must be"):
        resize_model_embeddings(model, tok, init="zeros")
