"""The one direction reader: every spelling the desk meets, and what it refuses."""

from __future__ import annotations

import pytest

from alphapulse_dagster.direction import direction_sign, normalise_direction
from alphapulse_dagster.sync.trade_id import parse_trade_id
from alphapulse_dagster.webhooks.webhook_payload import WebhookPayload


@pytest.mark.parametrize(
    ("sent", "direction", "sign"),
    [
        ("LONG", "LONG", 1),
        (" bullish ", "LONG", 1),
        ("Short", "SHORT", -1),
        ("BEARISH", "SHORT", -1),
    ],
)
def test_every_spelling_reads_the_same(sent: str, direction: str, sign: int) -> None:
    assert normalise_direction(sent) == direction
    assert direction_sign(sent) == sign


@pytest.mark.parametrize("sent", ["NONE", "", "BUY", None, 1, True])
def test_anything_else_is_no_direction(sent: object) -> None:
    assert normalise_direction(sent) is None


def test_sign_takes_plus_minus_one_and_refuses_the_rest() -> None:
    assert direction_sign(1) == 1 and direction_sign(-1) == -1
    for bad in (0, 2, True, "NEUTRAL", None):
        with pytest.raises(ValueError, match="direction must be LONG or SHORT"):
            direction_sign(bad)


def test_webhook_trade_id_and_fold_agree() -> None:
    """The webhook accepts exactly the spellings the reader knows and keeps the sent word;
    the trade id's direction reads through the same function."""
    base = {"event": "SIGNAL_CREATED", "trade_id": "t", "symbol": "BTCUSD", "time": 1.6e12}
    assert WebhookPayload.model_validate({**base, "direction": "bullish"}).direction == "BULLISH"
    with pytest.raises(ValueError, match="direction"):
        WebhookPayload.model_validate({**base, "direction": "BUY"})
    parsed = parse_trade_id("20250106_120000_bearish_BTCUSD")
    assert parsed is not None and parsed.direction == "SHORT"
