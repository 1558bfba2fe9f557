"""The item-pooled T5 encoder (``model.encoder=item_pooled``): one encoder position per history item.

The claims: the encoder stack runs on ``offset + ceil((S - offset) / D)`` positions, each item's position is the sum
of its SID token embeddings (a user token and the eos keep positions of their own, padding adds nothing), the decoder
attends the item states as it would attend each state repeated at its item's token positions, beam search shares them
across beams (and finds what transformers' ``generate`` finds), right-padding and batching change nothing, left-padding is refused, and the model
trains through the recipe, decodes real items and reloads as itself (the ``t5_pooled`` run of
``tests/test_pipeline.py::test_run_and_its_bundle_recommend_the_recipe_ranking``).
"""

from __future__ import annotations

import pytest
import torch
from transformers.models.t5.modeling_t5 import T5Stack

from genrec.decoding import PrefixTrie, constrained_beam_search, make_prefix_allowed_tokens_fn
from genrec.models.t5 import T5RecConfig, build_t5
from genrec.vocab import SIDVocab

pytestmark = pytest.mark.usefixtures("single_thread", "fresh_accelerator_state")

TINY = dict(d_model=32, num_layers=2, num_decoder_layers=2, num_heads=2, d_kv=16, d_ff=64, dropout_rate=0.0)


def _model(num_user_tokens: int, seed: int = 0):
    torch.manual_seed(seed)
    vocab = SIDVocab((4, 4, 3), num_user_tokens=num_user_tokens)
    return vocab, build_t5(vocab, T5RecConfig(**TINY, encoder="item_pooled")).eval()


def _prompt(vocab: SIDVocab, items: list[tuple[int, int, int]], user: int | None) -> list[int]:
    """``[user] + SID tokens of items + eos`` as the recipe builds it."""
    tokens = vocab.codes_to_tokens(torch.tensor(items)).reshape(-1).tolist()
    return ([vocab.user_token(user)] if user is not None else []) + tokens + [vocab.eos_id]


def _batch(rows: list[list[int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = torch.tensor(row)
        mask[r, : len(row)] = 1
    return ids, mask


@pytest.mark.parametrize("num_user_tokens", [0, 5])
def test_the_encoder_stack_runs_on_one_position_per_item(num_user_tokens):
    vocab, model = _model(num_user_tokens)
    assert (model.config.genrec_item_depth, model.config.genrec_item_offset) == (3, 1 if num_user_tokens else 0)
    user = 2 if num_user_tokens else None
    rows = [_prompt(vocab, [(1, 2, 0), (3, 0, 1), (0, 1, 2)], user), _prompt(vocab, [(2, 2, 2)], user)]
    ids, mask = _batch(rows, width=len(rows[0]) + 3)  # extra padding, as pad_to_multiple_of adds
    seen = []
    model.encoder.block[0].register_forward_pre_hook(lambda module, args, kwargs: seen.append(args[0].shape), with_kwargs=True)
    with torch.no_grad():
        states = model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    offset = model.config.genrec_item_offset
    assert seen == [torch.Size([2, offset + -(-(ids.shape[1] - offset) // 3), 32])]
    assert states.shape == (2, offset + -(-(ids.shape[1] - offset) // 3), 32)


@pytest.mark.parametrize("num_user_tokens", [0, 5])
def test_an_item_position_is_the_sum_of_its_token_embeddings(num_user_tokens):
    vocab, model = _model(num_user_tokens, seed=1)
    user = 4 if num_user_tokens else None
    items = [(1, 2, 0), (3, 0, 1)]
    row = _prompt(vocab, items, user)
    ids, mask = _batch([row], width=len(row) + 2)
    embed = model.shared.weight
    expected_positions = ([embed[row[0]]] if user is not None else [])
    expected_positions += [embed[vocab.codes_to_tokens(torch.tensor([item]))[0]].sum(0) for item in items]
    expected_positions.append(embed[vocab.eos_id])  # eos alone in its block: padding adds nothing
    pooled = torch.stack(expected_positions)[None]
    with torch.no_grad():
        reference = T5Stack.forward(model.encoder, inputs_embeds=pooled, attention_mask=torch.ones(pooled.shape[:2])).last_hidden_state
        states = model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(states[:, :pooled.shape[1]], reference)
    assert states.shape[1] == pooled.shape[1]  # the padding shares the eos block


@pytest.mark.parametrize("num_user_tokens", [0, 5])
def test_the_decoder_attends_each_item_as_at_its_token_positions(num_user_tokens):
    """Reference: the decoder cross-attending every token position, each holding its item's state (the eos and a
    user token their own), under the token mask: the item-pooled model computes the same with D times fewer keys."""
    vocab, model = _model(num_user_tokens, seed=3)
    user = 1 if num_user_tokens else None
    rows = [_prompt(vocab, [(1, 2, 0), (3, 0, 1), (0, 1, 2)], user), _prompt(vocab, [(2, 2, 2)], user)]
    ids, mask = _batch(rows, width=len(rows[0]) + 2)
    labels = vocab.codes_to_tokens(torch.tensor([(3, 3, 0), (1, 0, 2)]))
    offset = model.config.genrec_item_offset
    with torch.no_grad():
        states = model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        at_tokens = torch.cat([states[:, :offset], states[:, offset:].repeat_interleave(3, dim=1)], 1)[:, :ids.shape[1]]
        decoded = model.decoder(input_ids=model._shift_right(labels), encoder_hidden_states=at_tokens,
                                encoder_attention_mask=mask).last_hidden_state
        reference = model.lm_head(decoded * model.model_dim ** -0.5 if model.config.scale_decoder_outputs else decoded)
        logits = model(input_ids=ids, attention_mask=mask, labels=labels).logits
    torch.testing.assert_close(logits, reference, rtol=1e-5, atol=1e-5)


def test_beam_search_shares_the_item_states_across_beams_and_equals_generate():
    vocab, model = _model(0, seed=4)
    catalogue = torch.tensor([(a, b, c) for a in range(4) for b in range(4) for c in range(3)])[::3]
    trie = PrefixTrie.from_codes(catalogue, vocab.codebook_sizes)
    rows = [_prompt(vocab, [(1, 2, 0), (3, 0, 1)], None), _prompt(vocab, [(2, 2, 2)], None)]
    ids, mask = _batch(rows, width=len(rows[0]) + 1)
    shared = constrained_beam_search(model, ids, mask, trie, num_beams=6, vocab=vocab)
    copied = constrained_beam_search(model, ids, mask, trie, num_beams=6, vocab=vocab, share_cross_attention=False)
    assert torch.equal(shared[0], copied[0])
    torch.testing.assert_close(shared[1], copied[1])
    # transformers' generate (encoder outputs and token mask expanded per beam by generate itself) finds the same beams
    out = model.generate(input_ids=ids, attention_mask=mask, num_beams=6, num_return_sequences=6, max_new_tokens=3,
                         do_sample=False, output_scores=True, return_dict_in_generate=True,
                         prefix_allowed_tokens_fn=make_prefix_allowed_tokens_fn(trie, vocab))
    codes = (out.sequences[:, 1:] - torch.tensor(vocab.level_offsets)).reshape(-1, 3)
    assert torch.equal(trie.leaf_items(trie.walk(codes)).view(2, 6), shared[0])
    torch.testing.assert_close(out.sequences_scores.view(2, 6) * 3, shared[1], rtol=1e-5, atol=1e-5)


def test_padding_and_batching_change_no_users_loss():
    vocab, model = _model(5, seed=2)
    histories = [[(1, 2, 0), (3, 0, 1), (0, 1, 2), (2, 3, 1)], [(2, 2, 2)], [(0, 0, 0), (1, 1, 1)]]
    targets = vocab.codes_to_tokens(torch.tensor([(3, 3, 0), (1, 0, 2), (2, 1, 1)]))
    rows = [_prompt(vocab, h, user) for user, h in enumerate(histories)]
    ids, mask = _batch(rows, width=max(map(len, rows)) + 5)
    with torch.no_grad():
        together = model(input_ids=ids, attention_mask=mask, labels=targets).logits
        for r, row in enumerate(rows):
            alone = model(input_ids=torch.tensor([row]), attention_mask=torch.ones(1, len(row), dtype=torch.long),
                          labels=targets[r:r + 1]).logits
            torch.testing.assert_close(together[r], alone[0], rtol=1e-5, atol=1e-5)


def test_left_padding_is_refused():
    vocab, model = _model(0)
    row = _prompt(vocab, [(1, 2, 0)], None)
    ids, mask = _batch([row], width=len(row) + 2)
    with pytest.raises(ValueError, match="right-padded"):
        model.get_encoder()(input_ids=ids.flip(1), attention_mask=mask.flip(1))


def test_the_encoder_kind_is_checked():
    with pytest.raises(ValueError, match="model.encoder must be one of"):
        T5RecConfig(encoder="pooled")
    with pytest.raises(ValueError, match="needs model.encoder=causal"):
        T5RecConfig(encoder="item_pooled", train_targets="every_item")
