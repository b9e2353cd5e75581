"""The runtime's thread settings and the photo check's measurements taken with the decoding."""

from __future__ import annotations

import pytest

from serve.grading import unchecked
from serve.runtime import stats_as_uploaded
from tests.support import small_photos
from vision.ort_options import session_options
from vision.photocheck import PhotoCheckConfig


def test_onnx_runtime_threads_sleep_unless_spinning_is_asked_for():
    for spinning, flag in ((False, "0"), (True, "1")):
        opts = session_options(2, spinning)
        assert opts.intra_op_num_threads == 2
        for pool in ("intra", "inter"):
            assert opts.get_session_config_entry(f"session.{pool}_op.allow_spinning") == flag


def test_measurements_taken_while_decoding_are_the_checks(grader, synth_dir):
    front, back = small_photos(synth_dir, 1)[0]
    plain = [grader.decode(front), grader.decode(back)]
    measured = [grader.decode(front, measured=True), grader.decode(back, measured=True)]
    assert all(p.stats is None for p in plain)
    for p, m in zip(plain, measured, strict=True):
        assert m.stats == stats_as_uploaded(p.image, p.size)
    checked = grader.check_photos(measured, ["front", "back"], PhotoCheckConfig())
    assert [v.stats for v in checked] == [m.stats for m in measured]
    assert [v.stats for v in unchecked(measured)] == [v.stats for v in unchecked(plain)]



def test_the_check_models_scores_taken_while_decoding_are_the_checks(synth_dir):
    from serve.runtime import Grader
    from serve.settings import SHIPPED_BUNDLE

    g = Grader(SHIPPED_BUNDLE, threads=1)  # the shipped bundle has the check's model
    front, back = small_photos(synth_dir, 1)[0]
    plain = [g.decode(front, measured=True), g.decode(back, measured=True)]
    scored = [g.decode(front, measured=True, scored=True),
              g.decode(back, measured=True, scored=True)]
    assert all(p.scores is None for p in plain)
    batched = g.side_scores(plain) or []
    for one, two in zip(scored, batched, strict=True):  # one photo at a time: the same scores
        assert one.scores is not None
        assert one.scores.phone == pytest.approx(two.phone, abs=1e-9)
        assert one.scores.back == pytest.approx(two.back, abs=1e-9)
    cfg = PhotoCheckConfig()
    with_scores = g.check_photos(scored, ["front", "back"], cfg)
    assert [v.scores for v in with_scores] == [p.scores for p in scored]  # not run again
    assert ([v.rejection for v in with_scores]
            == [v.rejection for v in g.check_photos(plain, ["front", "back"], cfg)])
