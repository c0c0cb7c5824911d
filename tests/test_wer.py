"""WER is scored on normalised text: formatting differences are not recognition errors."""

from __future__ import annotations

import pytest

from voice_assets.speech.wer import normalise, word_error_rate


@pytest.mark.parametrize(("reference", "hypothesis"), [
    ("Call two nine three four zero now.", "call 29340 now"),
    ("It costs twenty dollars.", "It costs $20"),
    ("Mr. Smith painted it grey.", "Mister Smith painted it gray"),
    ("I'm done, aren't you?", "I am done. Are not you"),
])
def test_formatting_is_not_an_error(reference, hypothesis):
    assert word_error_rate(reference, hypothesis) == 0.0


def test_real_errors_still_count_and_lines_join_in_order():
    assert word_error_rate(["The bus is late.", "As usual."],
                           ["the bus was late", "as usual"]) == pytest.approx(1 / 6)
    assert word_error_rate("Hello there.", "") == 1.0
    assert word_error_rate("", "") == 0.0


def test_japanese_is_scored_per_character_without_spaces_or_punctuation():
    assert normalise("おはよう、ございます。「行くぞ！」", "ja") == "おはようございます行くぞ"
    assert word_error_rate("おはようございます。", "おはよう ございます", "ja") == 0.0
    assert word_error_rate("今日はいい天気", "今日は良い天気", "ja-JP") == pytest.approx(1 / 7)
