"""Two tenants with every kind of object, built so that a leak is easy to see.

Project A is the victim: every string of it carries the marker `zzsecreta`, and every row of
it has an id in a band of its own (bump_ids moves each table's sequence). Project B is the
attacker's: its users may call anything with A's slugs and ids, and nothing they get back
may contain the marker or an integer in A's bands.

Inside A, the annotator "owner" has private work (attempts, annotations, ledger entries, a
reading, a settlement) in a second band and the marker `zzowner` in their name: the other
annotator of A must never see either.
"""

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.apps import apps
from django.db import connection
from django.utils import timezone

from annotation import services as annotation_services
from annotation.models import Annotation, Attempt, Example, ImportBatch, Membership
from labor_ledger import services as ledger_services
from labor_ledger import settlement
from tests.factories import UserFactory, add_examples, add_member, make_project
from tests.support.annotators import work

MARK_A = "zzsecreta"
MARK_OWNER = "zzowner"
BAND = 10**6


def _sequences() -> list[tuple[str, str]]:
    out = []
    for model in apps.get_models():
        pk = model._meta.pk
        if model._meta.managed and pk.get_internal_type() in ("AutoField", "BigAutoField", "SmallAutoField"):
            out.append((model._meta.db_table, pk.column))
    return out


def max_sequence_value() -> int:
    with connection.cursor() as cur:
        top = 0
        for table, column in _sequences():
            cur.execute(f'SELECT COALESCE(MAX("{column}"), 0) FROM "{table}"')  # noqa: S608
            top = max(top, cur.fetchone()[0])
            cur.execute("SELECT pg_get_serial_sequence(%s, %s)", [table, column])
            seq = cur.fetchone()[0]
            if seq:
                cur.execute(f"SELECT last_value FROM {seq}")  # noqa: S608
                top = max(top, cur.fetchone()[0])
    return top


def bump_ids(start: int) -> None:
    """Every table's next id is `start` (PostgreSQL sequences; not rolled back with the test)."""
    with connection.cursor() as cur:
        for table, column in _sequences():
            cur.execute("SELECT setval(pg_get_serial_sequence(%s, %s), %s, false)", [table, column, start])


@dataclass
class World:
    a: object
    b: object
    users: dict  # actor name -> user (None: anonymous)
    roles: dict  # actor name -> role in A ("admin", "auditor", "owner", "annotator") or None
    a_band: tuple[int, int]  # every id of A's rows
    owner_band: tuple[int, int]  # the owner's private rows
    ids: dict = field(default_factory=dict)  # path parameter -> A's value
    b_ids: dict = field(default_factory=dict)


def build(*, model_store) -> World:
    """B first (ordinary ids), then A in its bands. `model_store` is a tmp dir for weights."""
    from training import services as training_services
    from training.models import TrainingRun
    from training.pipeline import execute_run

    now = timezone.now()
    base = (max_sequence_value() // BAND + 2) * BAND

    # --- B: the attacker's tenant ---
    b_admin = UserFactory(username="b-admin")
    b = make_project(admin=b_admin, name="Bravo", labels=["yes", "no"])
    b_annotator = add_member(b, Membership.Role.ANNOTATOR, UserFactory(username="b-annotator"))
    b_auditor = add_member(b, Membership.Role.AUDITOR, UserFactory(username="b-auditor"))
    add_examples(b, [f"bravo text {i}" for i in range(4)])
    b_policy_start = now - timedelta(days=3)
    ledger_services.pay_policy_create(
        project=b, created_by=b_admin, piece_rate=Decimal("0.05"), effective_from=b_policy_start, now=b_policy_start
    )
    work(b, b_annotator, start=now - timedelta(seconds=40), active_seconds=10)
    b_claim = annotation_services.claim_next(project=b, annotator=b_annotator)
    loner = UserFactory(username="loner")
    staff_loner = UserFactory(username="staff-loner", is_staff=True)

    # --- A: the victim ---
    bump_ids(base)
    a_admin = UserFactory(username=f"a-admin-{MARK_A}")
    a = make_project(
        admin=a_admin,
        name=f"Alpha {MARK_A}",
        labels=[f"pos-{MARK_A}", f"neg-{MARK_A}"],
        instructions=f"Instructions {MARK_A}",
    )
    a_auditor = add_member(a, Membership.Role.AUDITOR, UserFactory(username=f"a-auditor-{MARK_A}"))
    a_other = add_member(a, Membership.Role.ANNOTATOR, UserFactory(username=f"a-other-{MARK_A}"))
    owner = add_member(a, Membership.Role.ANNOTATOR, UserFactory(username=f"a-{MARK_OWNER}-{MARK_A}"))
    add_examples(a, [f"alpha {MARK_A} {'good' if i % 2 else 'bad'} text {i}" for i in range(12)])
    pos, neg = list(a.labels.order_by("order"))
    policy_start = now - timedelta(days=3)
    ledger_services.pay_policy_create(
        project=a,
        created_by=a_admin,
        piece_rate=Decimal("0.10"),
        floor_hourly_rate=Decimal("12"),
        client_price_per_example=Decimal("0.25"),
        note=f"policy {MARK_A}",
        effective_from=policy_start,
        now=policy_start,
    )
    batch = ImportBatch.objects.create(
        project=a, created_by=a_admin, source_name=f"{MARK_A}.csv", file_format="csv", status="succeeded"
    )
    # the other annotator works today (its period is open: never settled here)
    for i in range(2):
        work(a, a_other, start=now - timedelta(seconds=60 - 20 * i), active_seconds=10, label=pos if i else neg)

    # --- the owner's private work, in its own band ---
    bump_ids(base + BAND)
    two_days_ago = (now - timedelta(days=2)).replace(hour=12, minute=0, second=0, microsecond=0)
    owner_annotations = []
    for i in range(4):
        _, annotation = work(
            a, owner, start=two_days_ago + timedelta(minutes=i), active_seconds=10, label=pos if i % 2 else neg
        )
        owner_annotations.append(annotation)
    settlement.settle_due(project=a, now=now)
    dispute = ledger_services.time_dispute_create(
        project=a,
        annotator=owner,
        claimed_seconds=Decimal("600"),
        note=f"I read the instructions first {MARK_OWNER}",
        day=two_days_ago.date(),
        now=now,
    )
    annotation_services.instructions_heartbeat(project=a, annotator=owner, now=now - timedelta(seconds=5))
    owner_claim = annotation_services.claim_next(project=a, annotator=owner)

    # --- A's model: a trained version, predictions, a manifest (it names the owner's annotations) ---
    bump_ids(base + BAND // 2)
    training_services.config_update(project=a, model_kind="hashed", min_labels=2, holdout_share=0.0)
    run = TrainingRun.objects.create(project=a, requested_by=a_admin, trigger=TrainingRun.Trigger.ADMIN)
    version_id = execute_run(run_id=run.pk)
    assert version_id is not None, TrainingRun.objects.get(pk=run.pk).error
    run.refresh_from_db()

    bump_ids(base + 2 * BAND)  # whatever the tests create from here on
    users = {
        "anonymous": None,
        "loner": loner,
        "staff-loner": staff_loner,
        "b-admin": b_admin,
        "b-auditor": b_auditor,
        "b-annotator": b_annotator,
        "a-other": a_other,
        "a-auditor": a_auditor,
        "a-admin": a_admin,
        "a-owner": owner,
    }
    roles = {"a-other": "annotator", "a-auditor": "auditor", "a-admin": "admin", "a-owner": "owner"}
    world = World(
        a=a,
        b=b,
        users=users,
        roles=roles,
        a_band=(base, base + 2 * BAND),
        owner_band=(base + BAND, base + BAND + BAND // 2),
    )
    world.ids = {
        "slug": a.slug,
        "attempt_id": owner_claim.pk,
        "batch_id": batch.pk,
        "run_id": run.pk,
        "sequence": run.model_version.sequence,
        "example_id": owner_claim.example_id,
        "annotation_id": owner_annotations[0].pk,
        "label_id": pos.pk,
        "dispute_id": dispute.pk,
        "disputed_day": two_days_ago.date().isoformat(),
    }
    world.b_ids = {"slug": b.slug, "attempt_id": b_claim.pk, "label_id": b.labels.first().pk}
    assert Attempt.objects.filter(pk=owner_claim.pk, status="claimed").exists()
    assert Example.objects.filter(project=a).count() == 12
    assert Annotation.objects.filter(project=a).count() == 6
    return world
