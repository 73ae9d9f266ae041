"""Redis and PostgreSQL go away while annotators submit through gunicorn (make test-faults).

Redis (a server of the test's own, no persistence) restarts: every accepted submission is in
PostgreSQL, once, paid once; the queued run whose message died with Redis is re-sent by the
sweeper and executed exactly once. PostgreSQL (behind a TCP proxy the test cuts) goes away
for a few seconds: the clients retry with the same idempotency keys and nothing is lost or
paid twice.
"""

import threading
import time
from decimal import Decimal

import pytest
from django.db.models import Count
from rest_framework.authtoken.models import Token

from annotation.models import Annotation, Attempt, Label, Membership
from labor_ledger.models import LedgerEntry
from tests.factories import UserFactory, add_examples, add_member
from tests.support.annotators import Annotator, run_annotators
from training import services as training_services
from training.models import ModelVersion, TrainingRun

from .harness import Gunicorn, OwnRedis, TcpProxy, Worker, env_for, wait_for, wait_for_other_sessions_to_end
from .toy import ledger_totals, make_toy_project

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def procs():
    started = []
    yield started
    for proc in reversed(started):
        proc.stop() if hasattr(proc, "stop") else proc.close()
    wait_for_other_sessions_to_end()


def annotators_for(project, n, base_url, stop, **kwargs):
    label_ids = list(Label.objects.filter(project=project).values_list("id", flat=True))
    out = []
    for i in range(n):
        user = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username=f"crowd-{i}"))
        token = Token.objects.create(user=user)
        out.append(
            Annotator(
                base_url=base_url, token=token.key, slug=project.slug, label_ids=label_ids, stop=stop, seed=i, **kwargs
            )
        )
    return out


def assert_every_acknowledged_submission_is_stored_and_paid_once(project, annotators):
    acknowledged = {}
    for a in annotators:
        assert not a.tally.gave_up, a.tally.gave_up
        acknowledged.update(a.tally.accepted)
    assert acknowledged, "no submission went through"
    users = [Token.objects.get(key=a.token).user for a in annotators]
    stored = dict(Annotation.objects.filter(project=project, annotator__in=users).values_list("idempotency_key", "id"))
    assert stored == acknowledged  # none lost, none extra, each key once
    assert not Attempt.objects.filter(
        project=project, annotator__in=users, status="submitted", annotation=None
    ).exists()
    pay = (
        LedgerEntry.objects.filter(annotation_id__in=stored.values(), kind=LedgerEntry.Kind.PIECE_PAY)
        .values("annotation_id")
        .annotate(n=Count("id"))
    )
    assert {row["annotation_id"]: row["n"] for row in pay} == {i: 1 for i in stored.values()}
    totals = ledger_totals(project)  # verifies the chain, balances and settlements
    for user in users:
        n_user = Annotation.objects.filter(annotator=user).count()
        if n_user:
            assert totals[user.pk][1] >= Decimal("0.10") * n_user
    return acknowledged


def test_redis_restart_while_annotators_submit(admin_user, toy, model_store, procs, tmp_path):
    project, _ = make_toy_project(admin_user, toy)
    training_services.config_update(project=project, enabled=True, retrain_every_n_labels=1, min_labels=4)
    redis = OwnRedis(tmp_path)
    procs.append(redis)
    env = dict(
        REDIS_URL=redis.url,
        CACHE_KEY_PREFIX="security-faults",
        TALLY_MODEL_STORE=model_store,
        TALLY_TRAINING_DEVICE="cpu",
    )
    web = Gunicorn(tmp_path, env_for(**env), workers=2, threads=4)
    procs.append(web)
    stop = threading.Event()
    crowd = annotators_for(project, 4, web.url, stop, pause=(0.05, 0.2))
    queued_before_restart = {}

    def restart_redis():
        run = wait_for(
            lambda: TrainingRun.objects.filter(project=project, status="queued", enqueued_at__isnull=False).first(),
            30,
            what="a queued run whose message is in Redis",
        )
        queued_before_restart["run"] = run.pk
        assert redis.client().llen("training") >= 1
        redis.restart(down_seconds=2.0)  # the queue dies with it
        queued_before_restart["empty_after"] = redis.client().llen("training") == 0

    run_annotators(crowd, seconds=10, during=restart_redis)
    statuses = {}
    for a in crowd:
        for code, n in a.tally.statuses.items():
            statuses[code] = statuses.get(code, 0) + n
    assert not [code for code in statuses if code >= 500 or code == 0], statuses
    assert_every_acknowledged_submission_is_stored_and_paid_once(project, crowd)

    # the message of the run queued before the restart is gone; only the sweeper can save it
    assert queued_before_restart["empty_after"]
    lost = TrainingRun.objects.get(pk=queued_before_restart["run"])
    assert lost.status == "queued"
    worker = Worker(
        "sweeping",
        tmp_path,
        env_for(**env, TALLY_TRAINING_RESEND_AFTER_SECONDS=3, TALLY_TRAINING_SWEEP_SECONDS=1),
        beat=True,
    )
    procs.append(worker)
    wait_for(
        lambda: not TrainingRun.objects.filter(project=project, status__in=["queued", "running"]).exists(),
        120,
        what="every run to finish",
    )
    runs = list(TrainingRun.objects.filter(project=project))
    assert all(r.status == "succeeded" for r in runs), [(r.pk, r.status, r.error) for r in runs]
    assert all(r.attempts == 1 for r in runs), [(r.pk, r.attempts) for r in runs]  # each executed once
    assert ModelVersion.objects.filter(project=project).count() == len(runs)
    assert "Re-sent" in worker.output()


def test_database_outage_during_submissions_loses_and_double_pays_nothing(
    admin_user, toy, model_store, procs, tmp_path, settings
):
    project, _ = make_toy_project(admin_user, toy)
    # Enough texts that the crowd is still working when the database goes away (hand-outs are
    # fast: the toy pool alone is used up before the first outage).
    add_examples(project, [f"filler text {i} for the outage test" for i in range(3000)])
    db = settings.DATABASES["default"]
    proxy = TcpProxy(db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432))
    procs.append(proxy)
    url = f"postgres://{db.get('USER') or 'postgres'}@127.0.0.1:{proxy.port}/{db['NAME']}"
    web = Gunicorn(tmp_path, env_for(DATABASE_URL=url, CACHE_KEY_PREFIX="security-faults"), workers=2, threads=4)
    procs.append(web)
    stop = threading.Event()
    crowd = annotators_for(project, 6, web.url, stop, pause=(0.0, 0.05))

    def outages():
        for _ in range(2):
            time.sleep(2.5)
            proxy.cut()  # every open connection dropped, new ones refused
            time.sleep(3.0)
            proxy.restore()

    run_annotators(crowd, seconds=16, during=outages)
    assert proxy.cuts == 2
    statuses = {}
    for a in crowd:
        for code, n in a.tally.statuses.items():
            statuses[code] = statuses.get(code, 0) + n
    assert statuses.get(500, 0) + statuses.get(0, 0) > 0, f"the outage was not felt: {statuses}"
    assert sum(a.tally.retries for a in crowd) > 0
    acknowledged = assert_every_acknowledged_submission_is_stored_and_paid_once(project, crowd)
    assert len(acknowledged) > 20
