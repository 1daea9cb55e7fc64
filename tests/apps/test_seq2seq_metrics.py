"""BLEU against published worked examples and hand-computed corpora; exact match; token accuracy."""
import math

import pytest

from rnnkit.apps.seq2seq.metrics import (corpus_bleu, exact_match, modified_precision,
                                         token_accuracy, tokenize_13a)

# Papineni et al. 2002, "BLEU: a method for automatic evaluation of machine translation",
# section 2.1, Example 1 (compared in lower case, without the final period, as in the paper)
REFS_1 = ["it is a guide to action that ensures that the military will forever heed party commands",
          "it is the guiding principle which guarantees the military forces always being under the "
          "command of the party",
          "it is the practical guide for the army always to heed the directions of the party"]
CAND_1 = "it is a guide to action which ensures that the military always obeys the commands of the party"
CAND_2 = "it is to insure the troops forever hearing the activity guidebook that party direction"


@pytest.mark.parametrize("cand,n,want", [(CAND_1, 1, (17, 18)), (CAND_2, 1, (8, 14)),
                                         (CAND_1, 2, (10, 17)), (CAND_2, 2, (1, 13))])
def test_bleu_paper_example_1(cand, n, want):
    assert modified_precision(cand.split(), [r.split() for r in REFS_1], n) == want


def test_bleu_paper_example_2_clipping():
    refs = ["the cat is on the mat", "there is a cat on the mat"]
    assert modified_precision("the the the the the the the".split(), [r.split() for r in refs], 1) == (2, 7)


def test_sacrebleu_documented_example():
    # sacrebleu's README example: BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944
    # hyp_len = 17 ref_len = 18); two reference streams, 13a tokenization
    refs = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
            ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]
    hyps = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    r = corpus_bleu(hyps, [list(x) for x in zip(*refs)])
    assert round(r["bleu"], 2) == 48.53
    assert [round(p, 1) for p in r["precisions"]] == [82.4, 50.0, 45.5, 37.5]
    assert (r["sys_len"], r["ref_len"]) == (17, 18)
    assert r["bp"] == pytest.approx(math.exp(1 - 18 / 17), rel=1e-15)


def test_hand_computed_corpus():
    # sentence 1: p1 5/6, p2 3/5, p3 1/4, p4 0/3;  sentence 2 (identical): 5/5, 4/4, 3/3, 2/2
    hyps = ["the cat sat on the mat", "a b c d e"]
    refs = ["the cat is on the mat", "a b c d e"]
    r = corpus_bleu(hyps, refs)
    p = [10 / 11, 7 / 9, 4 / 7, 2 / 5]
    assert r["precisions"] == pytest.approx([100 * x for x in p], rel=1e-14)
    assert r["bleu"] == pytest.approx(100 * (p[0] * p[1] * p[2] * p[3]) ** 0.25, rel=1e-13)
    assert r["bp"] == 1.0
    # alone, sentence 1 has no 4-gram match: BLEU 0 without smoothing
    assert corpus_bleu(hyps[:1], refs[:1])["bleu"] == 0.0


def test_brevity_penalty_and_closest_reference():
    r = corpus_bleu(["the cat sat on"], ["the cat sat on the mat"])
    assert r["bleu"] == pytest.approx(100 * math.exp(1 - 6 / 4), rel=1e-14)  # all p_n = 1
    # references of 3 and 6 words for a 4-word output: the closest (3) decides, so BP = 1
    r = corpus_bleu(["the cat sat on"], [["the cat sat on the mat", "the cat sat"]])
    assert r["ref_len"] == 3 and r["bp"] == 1.0
    # a tie (3 and 5 words around 4) takes the shorter reference
    assert corpus_bleu(["a b c d"], [["a b c d e", "a b c"]])["ref_len"] == 3


def test_degenerate_cases():
    assert corpus_bleu(["same words here ok"], ["same words here ok"])["bleu"] == pytest.approx(100.0)
    assert corpus_bleu([""], ["a b c d"])["bleu"] == 0.0
    assert corpus_bleu(["x y z w"], ["a b c d"])["bleu"] == 0.0
    with pytest.raises(ValueError, match="hypotheses"):
        corpus_bleu(["a"], [])


def test_13a_tokenizer():
    assert tokenize_13a("It wasn't 3.5, (really)!") == ["It", "wasn't", "3.5", ",", "(", "really", ")", "!"]
    assert tokenize_13a("quatre-vingt-dix") == ["quatre-vingt-dix"]
    assert tokenize_13a("1-2") == ["1", "-", "2"]


def test_exact_match_and_token_accuracy():
    assert exact_match(["a b", "c", "d "], ["a b", "x", "d"]) == pytest.approx(2 / 3)
    # position-wise: "abc" vs "abd" 2/3; "ab" vs "abc" 2/3 (a missing token is wrong); total 4/6
    assert token_accuracy([list("abc"), list("ab")], [list("abd"), list("abc")]) == pytest.approx(4 / 6)
    assert token_accuracy([list("xabc")], [list("abc")]) == 0.0  # a shift ruins every position
