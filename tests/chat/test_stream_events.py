"""Event text: written once, and exactly what the JSON encoder would write."""

from __future__ import annotations

import json

import pytest

from chat.stream.events import Event, encode_sse, make_event

AWKWARD = [
    "plain ", "", " ", "quote \" and backslash \\ ", "tab\tnewline\nreturn\r", "\x00\x1f\x7f",
    "caf\u00e9 \u2014 \u4e2d\u6587 ", "\U0001f680 ", "\u2028\u2029", "</script>", "\ud800",
]


@pytest.mark.parametrize("delta", AWKWARD)
def test_a_delta_is_written_as_the_encoder_writes_it(delta):
    event = make_event(7, "delta", message_id="msg_a\"b", thread_id="thr_\u00e9", delta=delta)
    expected = json.dumps(dict(event), ensure_ascii=False, separators=(", ", ": "))
    assert event.text() == expected
    assert json.loads(event.text()) == dict(event)


def test_other_events_and_odd_deltas_take_the_encoder():
    done = make_event(9, "done", message_id="msg_a", thread_id="thr_b", message={"content": "x\u00e9", "n": 1})
    odd = Event({"seq": 3, "type": "delta", "message_id": "msg_a", "thread_id": "thr_b", "delta": None,
                 "tool_call": None})
    for event in (done, odd):
        assert event.text() == json.dumps(dict(event), ensure_ascii=False, separators=(", ", ": "))


def test_the_sse_block_carries_id_type_and_the_text():
    event = make_event(2, "delta", message_id="msg_a", thread_id="thr_b", delta="Hi ")
    assert encode_sse(event) == (
        b'id: 2\nevent: delta\ndata: {"seq": 2, "type": "delta", "message_id": "msg_a", '
        b'"thread_id": "thr_b", "delta": "Hi ", "tool_call": null}\n\n'
    )
    assert Event.decode(event.text()) == event and Event.decode(event.text()).text() == event.text()


def test_text_that_cannot_travel_as_utf8_is_made_safe():
    from chat.stream.producer import utf8_safe

    assert utf8_safe("plain ") == "plain "
    assert utf8_safe("caf\u00e9 \U0001f680") == "caf\u00e9 \U0001f680"
    assert utf8_safe("a\ud800b") == "a?b"
    encode_sse(make_event(1, "delta", message_id="m", thread_id="t", delta=utf8_safe("\udfff")))
