"""The webhook's per-event fast check accepts nothing `EventSchema` refuses (whatever it does not accept goes
through the schema, which words the refusal), and accepts the ordinary events."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from data_manager.collectors.tickets.integration import EventAction, TicketEvent
from webhooks.app import _plainly_valid
from webhooks.schemas import EventSchema

_schema = EventSchema()
texts = st.one_of(
    st.text(max_size=520),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=500, max_size=520),
    st.sampled_from(["", "T1", "a\x00b", "x\x7f", "\ud800", "PROJ-1", "x" * 512, "x" * 513, "tab\there", "T1\n"]),
)


def _schema_accepts(event: TicketEvent) -> bool:
    try:
        _schema.load(
            {
                "ticket_id": event.ticket_id,
                "action": getattr(event.action, "value", event.action),
                "delivery_id": event.delivery_id,
            }
        )
    except ValidationError:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(
    ticket_id=texts,
    action=st.one_of(st.sampled_from(list(EventAction)), st.sampled_from(["upsert", "delete", "nope", ""])),
    delivery_id=st.one_of(st.none(), texts),
)
def test_the_fast_check_never_accepts_what_the_schema_refuses(
    ticket_id: str, action: object, delivery_id: str | None
) -> None:
    event = TicketEvent(ticket_id, action, delivery_id)  # type: ignore[arg-type]  # integrations can get it wrong
    if _plainly_valid(event):
        assert _schema_accepts(event)


def test_ordinary_events_take_the_fast_path() -> None:
    for event in (TicketEvent("T000001"), TicketEvent("PROJ-12", EventAction.DELETE, "delivery-1"), TicketEvent("42")):
        assert _plainly_valid(event) and _schema_accepts(event)
