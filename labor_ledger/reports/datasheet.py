"""The labor section of a model version's datasheet, generated from the ledger.

Datasheets for Datasets (Gebru et al., "Collection process") asks who was involved in
collecting the data and how they were compensated, and over what timeframe; CrowdWorkSheets
(Díaz et al., FAccT 2022) asks more about the annotators: who they were, how many, how they
were instructed, how they were paid (and whether above a minimum), what unpaid labor the task
took, how disagreements were handled. Each answer here is a figure of the version's Labor Card
(reports/card.py) or a read of the ledger and the pay policies that priced its labels; what the
ledger cannot know (demographics, consent, wellbeing support) is said to be unknown, never
guessed. Readers (admins, auditors) only; reads never write. docs/labor-card.md.

`datasheet()` returns a JSON-ready dict; `to_markdown()` writes it as a Markdown section that a
dataset's documentation can include as it is.
"""

from __future__ import annotations

from decimal import Decimal

from labor_ledger.models import LedgerEntry, PayPolicy
from training.models import ManifestEntry

from . import card as labor_card

DATASHEET_FORMAT_VERSION = 2


def _policy(p: PayPolicy) -> dict:
    return {
        "version": p.version,
        "effective_from": p.effective_from.isoformat(),
        "currency": p.currency,
        "piece_rate": str(p.piece_rate),
        "gold_piece_rate": str(p.gold_piece_rate) if p.gold_piece_rate is not None else None,
        "overlap_piece_rate": str(p.overlap_piece_rate) if p.overlap_piece_rate is not None else None,
        "hourly_rate": str(p.hourly_rate),
        "hourly_clock": p.hourly_clock,
        "floor_hourly_rate": str(p.floor_hourly_rate),
        "floor_clock": p.floor_clock,
        "floor_categories": list(p.floor_categories),
    }


def datasheet(*, version) -> dict:
    """The datasheet's labor section of one model version (training.ModelVersion)."""
    card = labor_card.labor_card(version=version)
    labels = ManifestEntry.objects.filter(version=version).values("annotation_id")
    on_labels = LedgerEntry.objects.filter(project_id=version.project_id, annotation_id__in=labels)
    span = on_labels.order_by("occurred_at").values_list("occurred_at", flat=True)
    first, last = span.first(), on_labels.order_by("-occurred_at").values_list("occurred_at", flat=True).first()
    policies = PayPolicy.objects.filter(pk__in=on_labels.values("policy_id")).order_by("version")
    s, labor, pay = card["scope"], card["labor"], card["pay"]
    wages = pay["effective_hourly_wage"]
    reading = next((u for u in labor["unpaid"] if u["category"] == "instruction_reading"), None)
    projected = Decimal(pay["projected_top_up"] or 0)
    return {
        "format_version": DATASHEET_FORMAT_VERSION,
        "project": card["project"],
        "model_version": s["version"],
        "manifest_hash": s["manifest_hash"],
        "ledger_head": card["ledger_head"],
        "ledger_checkpoint": card.get("ledger_checkpoint"),
        "generated_at": card["generated_at"],
        "annotator_names": card["annotator_names"],
        "who_labeled": {
            "annotators": s["annotators"],
            "human_labels": s["human_labels"],
            "machine_accepted_labels": s["machine_labels"],
            "texts": s["examples"],
            "annotators_listed": [
                {"annotator": a["annotator"], "labels": a["labels"], "active_hours": a["active_hours"]}
                for a in card["annotators"]
            ],
            "who_they_are": "Members of the project with the annotator role, each under their own account. "
            "Tally records no demographics, location or employment relationship: not known from the ledger.",
        },
        "timeframe": {
            "first_labor_at": first.isoformat() if first else None,
            "last_labor_at": last.isoformat() if last else None,
            "training_snapshot_at": s["snapshot_at"],
        },
        "how_time_was_measured": (
            "Active time from server-side heartbeats while a text was shown and the person active, one clock per "
            "person at a time; wall time from shown to finished. Hours worked (for the floor) are the policy's "
            "clock over the policy's categories."
        ),
        "labor": {
            "active_hours": labor["active_hours"],
            "wall_hours": labor["wall_hours"],
            "hours_worked": labor["hours_worked"],
            "unpaid_active_hours_before_training": labor["unpaid_active_hours"],
            "unpaid_by_category": labor["unpaid"],
            "instruction_reading_active_hours": reading["active_hours"] if reading else 0.0,
            "not_in_this_model": labor["not_used"],
        },
        "compensation": {
            "currency": pay["currency"],
            "policies": [_policy(p) for p in policies],
            "wage_bill": pay["wage_bill"],
            "booked_pay": pay["booked_pay"],
            "piece_pay": pay["piece_pay"],
            "hourly_pay": pay["hourly_pay"],
            "floor_top_up_settled": pay["floor_top_up"],
            "floor_top_up_projected": pay["projected_top_up"],
            "projected_note": pay["projected_label"] if projected else None,
            "bonus": pay["bonus"],
            "adjustment": pay["adjustment"],
            "floor_hourly_rate": pay["floor_hourly_rate"],
            "effective_hourly_wage": wages,
            "below_floor_before_top_up": pay["below_floor_before_top_up"],
            "topped_up_in_settlement": pay["topped_up_in_settlement"],
            "client_price": pay["client_price"],
            "client_share": pay["client_share"],
        },
        "wellbeing": card["wellbeing"],
        "disagreement": {
            "contested_labels": labor["not_used"]["contested"]["labels"],
            "outvoted_labels": labor["not_used"]["outvoted"]["labels"],
        },
        "not_known_from_the_ledger": [
            "annotators' demographics, location and employment relationship",
            "consent and the terms annotators agreed to beyond the pay policy",
            "wellbeing support beyond the project's support text (exposure and breaks: see wellbeing)",
        ],
    }


def _m(value, currency: str) -> str:
    return "–" if value is None else f"{Decimal(value):.2f} {currency}"


def to_markdown(sheet: dict) -> str:
    """The datasheet section as Markdown (money to the cent; the JSON keeps 6 places)."""
    cur = sheet["compensation"]["currency"]
    who, time, labor, comp = sheet["who_labeled"], sheet["timeframe"], sheet["labor"], sheet["compensation"]
    w = comp["effective_hourly_wage"]
    lines = [
        f"## Labor: who labeled {sheet['project']['name']} v{sheet['model_version']} and how they were paid",
        "",
        f"Generated from the labor ledger at entry #{sheet['ledger_head']['seq']} "
        f"(chain head `{sheet['ledger_head']['hash']}`), training-set manifest `{sheet['manifest_hash']}`.",
        _checkpoint_line(sheet.get("ledger_checkpoint")),
        "",
        "### Who was involved in labeling, and how many",
        "",
        f"- {who['annotators']} annotators gave {who['human_labels']} labels on {who['texts']} texts; "
        f"{who['machine_accepted_labels']} further labels were accepted from the model's predictions (no labor).",
        f"- {who['who_they_are']}",
    ]
    for a in who["annotators_listed"]:
        lines.append(f"  - {a['annotator']}: {a['labels']} labels, {a['active_hours']} active hours")
    lines += [
        "",
        "### Over what timeframe",
        "",
        f"- Labor on these labels from {time['first_labor_at'] or '–'} to {time['last_labor_at'] or '–'}; "
        f"training set read at {time['training_snapshot_at']}.",
        "",
        "### How time was measured, and how much",
        "",
        f"- {sheet['how_time_was_measured']}",
        f"- {labor['active_hours']} active hours ({labor['wall_hours']} wall hours) in the labels trained on; "
        f"{labor['hours_worked']} hours worked toward the floor.",
        f"- Unpaid time before training: {labor['unpaid_active_hours_before_training']} active hours "
        f"(reading the instructions: {labor['instruction_reading_active_hours']}).",
        "",
        "### How were they compensated",
        "",
    ]
    for p in comp["policies"]:
        hourly = f", hourly {p['hourly_rate']} ({p['hourly_clock']} time)" if Decimal(p["hourly_rate"]) else ""
        lines.append(
            f"- Pay policy v{p['version']} from {p['effective_from']}: piece rate {p['piece_rate']} {p['currency']} "
            f"per accepted text{hourly}; floor {p['floor_hourly_rate']} {p['currency']} per hour worked "
            f"({p['floor_clock']} time), topped up at each period's settlement."
        )
    if not comp["policies"]:
        lines.append("- No pay policy priced these labels.")
    projected = (
        f" (of which {_m(comp['floor_top_up_projected'], cur)} projected, period open)"
        if comp["projected_note"]
        else ""
    )
    lines += [
        f"- Wage bill: {_m(comp['wage_bill'], cur)}{projected}: piece pay {_m(comp['piece_pay'], cur)}, "
        f"hourly pay {_m(comp['hourly_pay'], cur)}, floor top-ups settled {_m(comp['floor_top_up_settled'], cur)}, "
        f"bonuses {_m(comp['bonus'], cur)}, adjustments {_m(comp['adjustment'], cur)}.",
        f"- Effective hourly wage over {w['annotators']} annotators: p10 {_m(w['p10'], cur)}, "
        f"median {_m(w['median'], cur)}, p90 {_m(w['p90'], cur)}; floor {comp['floor_hourly_rate'] or '–'} {cur}.",
        f"- {comp['below_floor_before_top_up']} annotators were paid below the floor before top-ups; "
        f"{comp['topped_up_in_settlement']} had a settled period topped up before training.",
        f"- The client's price: {_m(comp['client_price'], cur)}.",
        "",
        "### Exposure to sensitive content, and breaks",
        "",
        f"- {sheet['wellbeing']['exposure_hours']} active hours on texts marked sensitive, by "
        f"{sheet['wellbeing']['people_exposed']} people; highest daily exposure of one person "
        f"{sheet['wellbeing']['highest_daily_exposure_hours']} h.",
        *(f"  - {c['label']}: {c['hours']} h" for c in sheet["wellbeing"]["exposure_by_category"]),
        f"- {sheet['wellbeing']['breaks_taken']} breaks taken ({sheet['wellbeing']['break_hours_taken']} h), "
        f"{sheet['wellbeing']['break_hours_paid']} h of them paid.",
        "",
        "### Disagreement",
        "",
        f"- {sheet['disagreement']['contested_labels']} labels on texts where annotators disagreed, "
        f"{sheet['disagreement']['outvoted_labels']} of them outvoted; all were trained on.",
        "",
        "### Not known from the ledger",
        "",
        *(f"- {item}" for item in sheet["not_known_from_the_ledger"]),
        "",
    ]
    return "\n".join(lines)


def _checkpoint_line(cp: dict | None) -> str:
    if not cp:
        return "The ledger has no signed checkpoint yet."
    return f"Latest signed checkpoint: entry #{cp['seq']} at {cp['at']}, Ed25519 key `{cp['key_id']}`" + (
        f" (public key `{cp['public_key']}`)." if cp.get("public_key") else "."
    )
