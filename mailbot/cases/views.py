"""Read-only views of cases for the command line (`cases list|show`, `--json` is stable)."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from mailbot.models import Attachment, Case, Event, FailingRecipient, Message, Round


def _iso(dt: Any) -> str | None:
    return dt.isoformat() if dt else None


def case_summary(case: Case) -> dict[str, Any]:
    return {
        "ref": case.ref, "brand": case.brand, "status": case.status, "category": case.category,
        "priority": case.priority, "tier": case.tier, "channel": case.channel,
        "subject": case.subject, "customer": {"name": case.customer_name, "email": case.customer_email},
        "received_at": _iso(case.received_at), "ack_due_at": _iso(case.ack_due_at),
        "due_at": _iso(case.due_at), "assignee": case.assignee,
    }


def case_detail(session: Session, case: Case) -> dict[str, Any]:
    msgs = session.exec(select(Message).where(Message.case_id == case.id).order_by(col(Message.id))).all()
    atts = session.exec(select(Attachment).where(col(Attachment.message_id).in_([m.id for m in msgs]))).all()
    by_msg: dict[int, list[dict[str, Any]]] = {}
    for a in atts:
        by_msg.setdefault(a.message_id, []).append(
            {"filename": a.filename, "content_type": a.content_type, "size": a.size,
             "kept": a.sha256 is not None, "dropped_reason": a.dropped_reason})
    events = session.exec(select(Event).where(Event.case_id == case.id).order_by(col(Event.id))).all()
    rounds = session.exec(select(Round).where(Round.case_id == case.id).order_by(col(Round.number))).all()
    linked = session.get(Case, case.linked_case_id) if case.linked_case_id else None
    failing = session.get(FailingRecipient, case.customer_email) if case.customer_email else None
    summary = case_summary(case)
    summary["customer"]["failing_since"] = _iso(failing.since) if failing else None
    return {
        **summary,
        "extracted": case.extracted,
        "acknowledged_at": _iso(case.acknowledged_at), "answered_at": _iso(case.answered_at),
        "closed_at": _iso(case.closed_at), "outcome": case.outcome,
        "linked_case": linked.ref if linked else None,
        "rounds": [
            {"number": r.number, "kind": r.kind, "received_at": _iso(r.received_at), "ack_due_at": _iso(r.ack_due_at),
             "acknowledged_at": _iso(r.acknowledged_at), "ack_via": r.ack_via, "promised_at": _iso(r.promised_at),
             "due_at": _iso(r.due_at), "cap_at": _iso(r.cap_at), "late_since": _iso(r.late_since),
             "answered_at": _iso(r.answered_at), "answer_via": r.answer_via, "outcome": r.outcome,
             "mediation_offered": r.mediation_offered}
            for r in rounds
        ],
        "messages": [
            {"direction": m.direction, "kind": m.kind, "message_id": m.message_id, "subject": m.subject,
             "from": m.from_addr, "at": _iso(m.sent_at or m.created_at),
             "routed_by": m.route_signal, "route_detail": m.route_detail,
             "attachments": by_msg.get(m.id or 0, [])}
            for m in msgs
        ],
        "events": [{"type": e.type, "at": _iso(e.at), "actor": e.actor, "data": e.data} for e in events],
    }


def format_case(detail: dict[str, Any]) -> str:
    """The human view of `cases show`: facts, threading decisions, timeline."""
    c = detail
    lines = [
        f"{c['ref']}  [{c['brand']}]  {c['status']}  priority={c['priority']}  tier={c['tier']}",
        f"  subject:   {c['subject']}",
        f"  customer:  {c['customer']['name']} <{c['customer']['email']}>"
        + (f"  (our mail bounced since {c['customer']['failing_since']})" if c['customer'].get('failing_since') else ""),
        f"  category:  {c['category']}   channel: {c['channel']}   assignee: {c['assignee'] or '-'}",
        f"  received:  {c['received_at']}",
        f"  ack due:   {c['ack_due_at']}   acknowledged: {c['acknowledged_at'] or '-'}",
        f"  answer due:{c['due_at']}   answered: {c['answered_at'] or '-'}",
    ]
    if c["linked_case"]:
        lines.append(f"  linked:    {c['linked_case']}")
    for r in c.get("rounds", []):
        late = f"  late since {r['late_since']}" if r["late_since"] else ""
        lines.append(f"  round {r['number']} ({r['kind']}): received {r['received_at']}, promised {r['promised_at']}"
                     f", due {r['due_at']}, legal cap {r['cap_at']}, answered {r['answered_at'] or '-'}{late}")
    ex = c["extracted"] or {}
    facts = {k: v for k, v in ex.items() if v and k not in ("language",)}
    if facts:
        lines.append("  extracted:")
        lines += [f"    {k}: {v}" for k, v in facts.items()]
    lines.append("  messages:")
    for m in c["messages"]:
        arrow = "<-" if m["direction"] == "in" else "->"
        lines.append(f"    {m['at']} {arrow} {m['kind']:<18} {m['from']}  {m['subject']}")
        if m["direction"] == "in":
            lines.append(f"        routed by {m['routed_by']}: {m['route_detail']}")
        for a in m["attachments"]:
            state = "kept" if a["kept"] else f"dropped: {a['dropped_reason']}"
            lines.append(f"        attachment {a['filename']} ({a['content_type']}, {a['size']} B, {state})")
    lines.append("  timeline:")
    for e in c["events"]:
        data = ", ".join(f"{k}={v}" for k, v in e["data"].items())
        lines.append(f"    {e['at']}  {e['type']:<20} by {e['actor']}  {data}")
    return "\n".join(lines)
