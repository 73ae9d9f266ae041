"""Members: role changes and removal close a person's open work (with the ledger told), the
last admin stays, invitations work once, and the operator's tally_user command."""

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from annotation import selectors, services
from annotation.models import Attempt, Invitation, Membership
from core.errors import Conflict, NotFound, ValidationFailed
from labor_ledger.models import LedgerEntry
from tests.factories import UserFactory, add_member

T0 = timezone.now().replace(microsecond=0)


def at(seconds: float):
    return T0 + timedelta(seconds=seconds)


def _working(project, annotator):
    """A claim shown at 0 s with heartbeats to 10 s, and a prefetched one never shown."""
    shown = services.claim_next(project=project, annotator=annotator, now=at(0))
    services.attempt_heartbeat(attempt_id=shown.pk, annotator=annotator, now=at(0))
    services.attempt_heartbeat(attempt_id=shown.pk, annotator=annotator, now=at(5))
    services.attempt_heartbeat(attempt_id=shown.pk, annotator=annotator, now=at(10))
    prefetched = services.claim_next(project=project, annotator=annotator, exclude_attempt_ids=[shown.pk], now=at(10))
    return shown, prefetched


@pytest.mark.parametrize("how", ["demote", "remove"])
def test_demoting_or_removing_closes_open_claims_with_time_up_to_the_last_activity(project, examples, annotator, how):
    shown, prefetched = _working(project, annotator)
    if how == "demote":
        services.member_set_role(project=project, user=annotator, role=Membership.Role.AUDITOR, now=at(300))
        assert Membership.objects.get(project=project, user=annotator).role == Membership.Role.AUDITOR
    else:
        services.member_remove(project=project, user=annotator, now=at(300))
        assert not Membership.objects.filter(project=project, user=annotator).exists()
    shown.refresh_from_db()
    prefetched.refresh_from_db()
    assert shown.status == prefetched.status == Attempt.Status.REVOKED
    assert shown.wall_seconds == Decimal("10.000") and shown.active_seconds == Decimal("10.000")  # not 300 s
    assert shown.finished_at == at(300)
    # the ledger heard of both through annotation's hooks, in the same transaction
    entries = LedgerEntry.objects.filter(project=project, annotator=annotator, attempt__in=[shown, prefetched])
    assert set(entries.values_list("attempt_id", flat=True)) == {shown.pk, prefetched.pk}
    assert set(entries.values_list("time_category", flat=True)) == {"revoked"}


def test_a_change_between_labeling_roles_keeps_claims(project, examples, annotator):
    shown, _ = _working(project, annotator)
    services.member_set_role(project=project, user=annotator, role=Membership.Role.ADMIN, now=at(20))
    shown.refresh_from_db()
    assert shown.status == Attempt.Status.CLAIMED


def test_an_open_instruction_reading_is_closed_too(project, annotator):
    services.instructions_heartbeat(project=project, annotator=annotator, now=at(0))
    services.instructions_heartbeat(project=project, annotator=annotator, now=at(4))
    services.member_remove(project=project, user=annotator, now=at(100))
    assert not selectors.open_claims(annotator=annotator, project=project, now=at(100)).exists()
    entry = LedgerEntry.objects.get(project=project, annotator=annotator, reading__isnull=False)
    assert entry.active_seconds == Decimal("4.000") and entry.wall_seconds == Decimal("4.000")


def test_the_last_admin_can_be_neither_demoted_nor_removed(project, admin_user):
    with pytest.raises(Conflict):
        services.member_set_role(project=project, user=admin_user, role=Membership.Role.ANNOTATOR)
    with pytest.raises(Conflict):
        services.member_remove(project=project, user=admin_user)
    second = add_member(project, Membership.Role.ADMIN)
    services.member_set_role(project=project, user=admin_user, role=Membership.Role.AUDITOR)
    with pytest.raises(Conflict):
        services.member_remove(project=project, user=second)


def test_changing_someone_outside_the_project_is_not_found(project):
    with pytest.raises(NotFound):
        services.member_set_role(project=project, user=UserFactory(), role=Membership.Role.ANNOTATOR)


def test_an_invitation_works_once_for_a_new_account(project, admin_user):
    invitation, token = services.invitation_create(project=project, role=Membership.Role.AUDITOR, created_by=admin_user)
    assert invitation.token_hash != token and token not in str(Invitation.objects.values().get())
    user = services.invitation_signup(token=token, username="newbie", password="a long passphrase 42")
    assert user.check_password("a long passphrase 42")
    assert Membership.objects.get(project=project, user=user).role == Membership.Role.AUDITOR
    with pytest.raises(NotFound):
        services.invitation_signup(token=token, username="second", password="a long passphrase 42")
    assert not get_user_model().objects.filter(username="second").exists()
    assert selectors.invitation_open(token=token) is None


def test_an_invitation_for_an_existing_account_and_its_refusals(project, admin_user):
    someone = UserFactory(username="someone")
    _, token = services.invitation_create(project=project, role=Membership.Role.ANNOTATOR, created_by=admin_user)
    with pytest.raises(ValidationFailed):  # weak password: nothing is created, the link stays open
        services.invitation_signup(token=token, username="weak", password="123")
    with pytest.raises(ValidationFailed):
        services.invitation_signup(token=token, username="someone", password="a long passphrase 42")
    services.invitation_accept(token=token, user=someone)
    assert Membership.objects.get(project=project, user=someone).role == Membership.Role.ANNOTATOR
    _, again = services.invitation_create(project=project, role=Membership.Role.ADMIN, created_by=admin_user)
    with pytest.raises(Conflict):
        services.invitation_accept(token=again, user=someone)


def test_withdrawn_and_expired_invitations_do_not_open(project, admin_user):
    withdrawn, token = services.invitation_create(project=project, role="annotator", created_by=admin_user)
    services.invitation_revoke(project=project, invitation_id=withdrawn.pk)
    assert selectors.invitation_open(token=token) is None
    _, old = services.invitation_create(project=project, role="annotator", created_by=admin_user, now=at(-8 * 86400))
    assert selectors.invitation_open(token=old) is None
    with pytest.raises(NotFound):
        services.invitation_accept(token=old, user=UserFactory())


def test_tally_user_command(project, examples):
    out = StringIO()
    call_command("tally_user", "add", "casey", "--project", project.slug, "--role", "annotator", stdout=out)
    password = out.getvalue().split("(shown once; change it after logging in): ")[1].strip()
    casey = get_user_model().objects.get(username="casey")
    assert casey.check_password(password) and len(password) >= 16
    assert Membership.objects.get(project=project, user=casey).role == "annotator"
    services.claim_next(project=project, annotator=casey)
    call_command("tally_user", "set-role", "casey", "--project", project.slug, "--role", "auditor", stdout=StringIO())
    assert Membership.objects.get(project=project, user=casey).role == "auditor"
    assert not Attempt.objects.filter(annotator=casey, status=Attempt.Status.CLAIMED).exists()
    call_command("tally_user", "remove", "casey", "--project", project.slug, stdout=StringIO())
    assert not Membership.objects.filter(project=project, user=casey).exists()
    with pytest.raises(CommandError):
        call_command("tally_user", "add", "casey", stdout=StringIO())
    out = StringIO()
    call_command("tally_user", "invite", "--project", project.slug, "--role", "annotator", stdout=out)
    assert "/invitations/" in out.getvalue()


def test_members_api_never_tells_which_usernames_exist(api, project, admin_user, annotator):
    """People join by invitation; the API changes members' roles and answers alike for a
    username that does not exist, an inactive account and an account outside the project."""
    UserFactory(username="outsider")
    UserFactory(username="sleeper", is_active=False)
    client = api(admin_user)
    url = f"/api/projects/{project.slug}/members/"
    answers = [
        client.post(url, {"username": name, "role": "annotator"}, format="json")
        for name in ("nobody-by-this-name", "outsider", "sleeper")
    ]
    assert {r.status_code for r in answers} == {400}
    assert len({r.content for r in answers}) == 1
    assert not Membership.objects.filter(project=project, user__username__in=["outsider", "sleeper"]).exists()
    changed = client.post(url, {"username": annotator.username, "role": "auditor"}, format="json")
    assert changed.status_code == 200 and changed.data["role"] == "auditor"
    last_admin = client.post(url, {"username": admin_user.username, "role": "annotator"}, format="json")
    assert last_admin.status_code == 409
