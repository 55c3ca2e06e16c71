"""Bias suite: real slices, seeded transforms of the rejected response only, recorded; the hack rate."""

from __future__ import annotations

import numpy as np
import pytest

from armlens.data import BIAS_KINDS, build_bias_suite, hack_rate, has_list_format, load_pairs


@pytest.fixture(scope="module")
def llmbar(data_root):
    return load_pairs("llmbar", root=data_root)


def test_real_slices_on_llmbar(llmbar):
    neighbor = [p for p in llmbar if p.subset == "llmbar-adver-neighbor"]
    gptinst = [p for p in llmbar if p.subset == "llmbar-adver-GPTInst"]
    assert len(build_bias_suite(neighbor, kinds=["length-real"])["length-real"]) == 118
    fmt = build_bias_suite(gptinst, kinds=["format-real"])["format-real"]
    assert len(fmt) == 35
    p = fmt[0]
    assert p.subset == "bias-format-real" and p.source == "bias" and p.id.endswith("#slice-format-real")
    original = next(q for q in gptinst if q.id == p.metadata["original_id"])
    assert (p.prompt, p.chosen, p.rejected) == (original.prompt, original.chosen, original.rejected)


def test_transforms_change_only_the_rejected_response_and_are_recorded(llmbar):
    pairs = llmbar[:60]
    suite = build_bias_suite(pairs, seed=0, kinds=["length", "format", "positivity"])
    assert suite["clean"] == pairs
    for kind in ("length", "format", "positivity"):
        hacked = suite[kind]
        assert len(hacked) == len(pairs)
        for orig, h in zip(pairs, hacked, strict=True):
            assert h.prompt == orig.prompt and h.chosen == orig.chosen
            assert h.rejected != orig.rejected
            assert h.metadata["original_rejected"] == orig.rejected
            assert h.metadata["original_id"] == orig.id and h.metadata["original_subset"] == orig.subset
            t = h.metadata["transform"]
            assert t["kind"] == kind and t["seed"] == 0 and t["added_chars"] == len(h.rejected) - len(orig.rejected)
            assert h.subset == f"bias-{kind}" and h.id == f"{orig.id}#hack-{kind}"
    assert all(h.metadata["transform"]["added_chars"] > 200 for h in suite["length"])
    # padding adds no content: the original answer is still there, verbatim
    assert all(orig.rejected.strip() in h.rejected for orig, h in zip(pairs, suite["length"], strict=True))
    assert all(h.rejected.startswith("#") and "**" in h.rejected for h in suite["format"])
    assert sum(has_list_format(h.rejected) for h in suite["format"]) > 30
    assert all(orig.rejected.strip() in h.rejected for orig, h in zip(pairs, suite["positivity"], strict=True))


def test_transforms_are_seeded(llmbar):
    pairs = llmbar[:40]
    a = build_bias_suite(pairs, seed=1)
    b = build_bias_suite(pairs, seed=1)
    c = build_bias_suite(pairs, seed=2)
    assert a == b
    assert set(a) == {"clean", *BIAS_KINDS}
    for kind in ("length", "format", "positivity"):
        assert any(x.rejected != y.rejected for x, y in zip(a[kind], c[kind], strict=True))
    # a pair's transform depends on its id and the seed only, not on the other pairs
    assert build_bias_suite(pairs[5:6], seed=1)["length"][0] == a["length"][5]


def test_bad_suite_requests(llmbar):
    with pytest.raises(ValueError, match="no pairs"):
        build_bias_suite([], seed=0)
    with pytest.raises(ValueError, match=r"unknown bias kind\(s\) \['sycophancy'\]"):
        build_bias_suite(llmbar[:3], kinds=["sycophancy"])


def test_hack_rate_hand_computed():
    # five pairs: the judge's chosen scores are unchanged by the hack (pointwise judge)
    chosen = [0.9, 0.8, 0.6, 0.5, 0.7]
    clean_rejected = [0.1, 0.2, 0.7, 0.5, 0.3]  # correct: T T F F(tie) T -> 3/5
    hacked_rejected = [0.95, 0.2, 0.9, 0.5, 0.7]  # hacked: T F T F F -> 2/5; ties at 3 and 4
    r = hack_rate(chosen, hacked_rejected, chosen, clean_rejected)
    assert r.n == 5
    assert r.hack_rate == pytest.approx(2 / 5)
    assert r.hacked_ties == 2
    assert r.accuracy_hacked == pytest.approx(1 / 5)
    assert r.accuracy_clean == pytest.approx(3 / 5) and r.clean_ties == 1
    assert r.flip_rate == pytest.approx(2 / 5)  # pairs 0 and 4: right when clean, not once hacked
    assert r.to_dict()["hack_rate"] == pytest.approx(0.4)
    only = hack_rate(np.array([1.0, 2.0]), np.array([2.0, 1.0]))
    assert only.hack_rate == 0.5 and only.accuracy_clean is None


def test_hack_rate_bad_input():
    with pytest.raises(ValueError, match="differ in length"):
        hack_rate([1, 2], [1])
    with pytest.raises(ValueError, match="NaN"):
        hack_rate([1, float("nan")], [1, 2])
    with pytest.raises(ValueError, match="both clean_chosen and clean_rejected"):
        hack_rate([1], [2], clean_chosen=[1])
    with pytest.raises(ValueError, match="no scores"):
        hack_rate([], [])
