"""Annotator welfare (issue 17): sensitive marks, exposure limits checked at claim time,
opt-outs and breaks. Writes, like services; docs/welfare.md explains every setting.

The claim-time check is `ClaimGate`: claim_next opens one at its start (`gate_for` the
policy it read) and passes the example its queue picked through `gate.screen`. For a project
that is not sensitive the gate is None and costs nothing beyond the policy's primary-key
lookup, which claim_next makes within its read of the open claims (PostgreSQL). For a sensitive one it locks the
person's ActivityClock row (the one-clock lock: every claim, heartbeat and credit of that
person queues on it, whatever the project or tab) before anything else in the claim, so two
claims of one person are counted one after the other and limits cannot be raced past. The
lock is taken before claim_next expires leases (which append to ledger chains), keeping the
order every other path uses: clock row, then chain head.
"""

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from core.errors import Conflict, NotFound, ValidationFailed
from core.roles import LABELERS

from . import hooks
from .models import ActivityClock, Attempt, Example, Membership, Project
from .models_welfare import Break, SensitiveCategory, SensitiveMark, WelfareOptOut, WelfarePolicy
from .queue import candidate_examples

CATEGORIES = tuple(SensitiveCategory.values)
# Import columns read for marks: a comma/semicolon/pipe separated list of categories, or a
# truthy flag ("1", "yes", "true") meaning "other".
IMPORT_COLUMNS = ("content_warnings", "sensitive")
_TRUTHY = {"1", "yes", "true", "y", "x"}
_FALSY = {"", "0", "no", "false", "n", "none"}
POLICY_FIELDS = {
    "sensitive",
    "categories",
    "max_texts_per_session",
    "max_minutes_per_session",
    "max_texts_per_day",
    "max_minutes_per_day",
    "session_gap_minutes",
    "break_after_minutes",
    "paid_break_minutes_per_hour",
    "support_text",
    "word_list",
}


class ExposureLimitReached(Conflict):
    """A claim that would hand a sensitive text past a limit (HTTP 409, code exposure_limit)."""

    code = "exposure_limit"


# --- policies and marks ------------------------------------------------------------------


def policy_of(project: Project) -> WelfarePolicy | None:
    return WelfarePolicy.objects.filter(project=project).first()


def _clean_categories(values, *, field: str = "categories") -> list[str]:
    if not isinstance(values, (list, tuple)):
        raise ValidationFailed(f"{field}: give a list of categories from {', '.join(CATEGORIES)}.")
    cleaned = [str(v).strip().lower() for v in values]
    bad = [v for v in cleaned if v not in CATEGORIES]
    if bad:
        raise ValidationFailed(f"{field}: unknown categories {', '.join(bad)}; use {', '.join(CATEGORIES)}.")
    return list(dict.fromkeys(cleaned))


def _clean_word_list(value) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        raise ValidationFailed("word_list: give {category: [word, ...]}.")
    _clean_categories(list(value), field="word_list")
    out = {}
    for category, words in value.items():
        if not isinstance(words, list) or any(not isinstance(w, str) for w in words):
            raise ValidationFailed(f"word_list: the words of {category} must be a list of strings.")
        kept = [w.strip() for w in words if w.strip()]
        if len(kept) > 500 or any(len(w) > 100 for w in kept):
            raise ValidationFailed("word_list: at most 500 words of at most 100 characters per category.")
        out[category.strip().lower()] = kept
    return out


@transaction.atomic
def policy_set(*, project: Project, **fields) -> WelfarePolicy:
    """Create or change the project's welfare policy (unnamed fields keep their value or default)."""
    unknown = set(fields) - POLICY_FIELDS
    if unknown:
        raise ValidationFailed(f"Unknown welfare settings: {', '.join(sorted(unknown))}.")
    if "categories" in fields:
        fields["categories"] = _clean_categories(fields["categories"])
    if "word_list" in fields:
        fields["word_list"] = _clean_word_list(fields["word_list"])
    WelfarePolicy.objects.get_or_create(project=project)
    policy = WelfarePolicy.objects.select_for_update().get(project=project)
    for key, value in fields.items():
        setattr(policy, key, value)
    try:
        policy.full_clean()
    except Exception as exc:  # django ValidationError
        messages = getattr(exc, "message_dict", {"policy": [str(exc)]})
        raise ValidationFailed("; ".join(f"{k}: {' '.join(v)}" for k, v in messages.items())) from exc
    policy.save()
    return policy


def _declare_sensitive(project_id: int) -> None:
    """Marking a text makes its project sensitive: a forgotten switch must not expose anyone."""
    policy, _ = WelfarePolicy.objects.get_or_create(project_id=project_id, defaults={"sensitive": True})
    if not policy.sensitive:
        WelfarePolicy.objects.filter(pk=policy.pk).update(sensitive=True)


def _add_marks(pairs: list[tuple[int, str]], *, source: str, set_by=None, detail: str = "") -> int:
    marks = [
        SensitiveMark(example_id=eid, category=cat, source=source, set_by=set_by, detail=detail[:200])
        for eid, cat in dict.fromkeys(pairs)
    ]
    if not marks:
        return 0
    before = SensitiveMark.objects.filter(example_id__in={eid for eid, _ in pairs}).count()
    SensitiveMark.objects.bulk_create(marks, ignore_conflicts=True, batch_size=1000)
    return SensitiveMark.objects.filter(example_id__in={eid for eid, _ in pairs}).count() - before


@transaction.atomic
def marks_set(
    *, project: Project, example_ids, categories, set_by, detail: str = "", source: str = SensitiveMark.Source.ADMIN
) -> int:
    """An admin marks texts of the project with categories (kept marks are left). Returns marks added."""
    categories = _clean_categories(categories)
    if not categories:
        raise ValidationFailed("Choose at least one category.")
    ids = list(Example.objects.filter(project=project, pk__in=list(example_ids)).values_list("pk", flat=True))
    if len(ids) != len(set(example_ids)):
        raise NotFound("Some of these texts are not in this project.")
    _declare_sensitive(project.pk)
    return _add_marks([(i, c) for i in ids for c in categories], source=source, set_by=set_by, detail=detail)


@transaction.atomic
def marks_clear(*, project: Project, example_ids, categories) -> int:
    """Take marks off texts (an admin judged them wrongly). Returns marks removed."""
    categories = _clean_categories(categories)
    deleted, _ = SensitiveMark.objects.filter(
        example__project=project, example_id__in=list(example_ids), category__in=categories
    ).delete()
    return deleted


def parse_import_value(value) -> list[str]:
    """The categories an import cell names: a list, or text split on , ; |; a truthy flag is 'other'."""
    if value is None:
        return []
    if isinstance(value, bool):
        return [SensitiveCategory.OTHER] if value else []
    if isinstance(value, (int, float)):
        return [SensitiveCategory.OTHER] if value else []
    items = value if isinstance(value, list) else re.split(r"[,;|]", str(value))
    out = []
    for item in items:
        word = str(item).strip().lower().replace("-", "_").replace(" ", "_")
        if word in _FALSY:
            continue
        if word in _TRUTHY:
            out.append(SensitiveCategory.OTHER.value)
        elif word in CATEGORIES:
            out.append(word)
        elif word in {"self_harm", "selfharm", "suicide"}:
            out.append(SensitiveCategory.SELF_HARM.value)
        elif word in {"sex", "sexual_content", "nsfw"}:
            out.append(SensitiveCategory.SEXUAL.value)
        else:
            out.append(SensitiveCategory.OTHER.value)
    return list(dict.fromkeys(out))


def marks_from_import(*, project_id: int, batch_id: int) -> int:
    """Inside the import's transaction: marks from the `content_warnings` / `sensitive` column
    of the batch's rows, and from the project's word list. Returns marks added."""
    has_column = Q()
    for column in IMPORT_COLUMNS:
        has_column |= Q(meta__has_key=column)
    pairs = []
    for pk, meta in Example.objects.filter(import_batch_id=batch_id).filter(has_column).values_list("pk", "meta"):
        for column in IMPORT_COLUMNS:
            pairs += [(pk, c) for c in parse_import_value(meta.get(column))]
    added = 0
    if pairs:
        _declare_sensitive(project_id)
        added += _add_marks(pairs, source=SensitiveMark.Source.IMPORT, detail=f"import batch {batch_id}")
    policy = WelfarePolicy.objects.filter(project_id=project_id).first()
    if policy is not None and policy.word_list:
        added += _apply_word_list(policy, Example.objects.filter(import_batch_id=batch_id))
    return added


def _word_pattern(words: list[str]) -> re.Pattern | None:
    if not words:
        return None
    return re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)


def _apply_word_list(policy: WelfarePolicy, examples) -> int:
    patterns = {c: p for c, words in policy.word_list.items() if (p := _word_pattern(words)) is not None}
    if not patterns:
        return 0
    pairs = []
    for pk, text in examples.values_list("pk", "text").iterator(chunk_size=2000):
        pairs += [(pk, c) for c, p in patterns.items() if p.search(text)]
    if pairs:
        _declare_sensitive(policy.project_id)
    return _add_marks(pairs, source=SensitiveMark.Source.WORD_LIST, detail="word list")


@transaction.atomic
def word_list_apply(*, project: Project) -> int:
    """Run the project's word list over all its texts now (on demand). Returns marks added
    (0 for a project without a word list)."""
    policy = policy_of(project)
    if policy is None or not policy.word_list:
        return 0
    return _apply_word_list(policy, Example.objects.filter(project=project))


# --- exposure, counted across all projects -------------------------------------------------


@dataclass
class Exposure:
    session_texts: int = 0
    session_seconds: Decimal = Decimal(0)
    day_texts: int = 0
    day_seconds: Decimal = Decimal(0)
    session_started_at: datetime | None = None
    last_work_at: datetime | None = None
    continuous_seconds: Decimal = Decimal(0)  # wall time since the session began


def day_start(now: datetime) -> datetime:
    local = timezone.localtime(now)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def next_day_start(now: datetime) -> datetime:
    return timezone.make_aware(datetime.combine(timezone.localtime(now).date() + timedelta(days=1), time.min))


def categories_of(example_id: int) -> list[str]:
    """The content warnings of one text, in a fixed order (the labeling page names them)."""
    found = set(SensitiveMark.objects.filter(example_id=example_id).values_list("category", flat=True))
    return [c for c in CATEGORIES if c in found]


def _marked(example_ref="example_id"):
    return Exists(SensitiveMark.objects.filter(example_id=OuterRef(example_ref)))


def exposure_of(user_id: int, *, now: datetime, session_gap: timedelta) -> Exposure:
    """The person's sensitive texts and minutes today and in their current session, over every
    project. A text counts from its claim (a prefetched one too: it will be shown); a claim that
    lapsed or was revoked unseen does not. Minutes are the active time the server credited."""
    since = min(day_start(now), now - timedelta(days=1))
    rows = list(
        Attempt.objects.filter(annotator_id=user_id, claimed_at__gte=since)
        .annotate(marked=_marked())
        .order_by("-claimed_at", "-id")
        .values(
            "example_id",
            "claimed_at",
            "last_active_at",
            "finished_at",
            "shown_at",
            "status",
            "active_seconds",
            "marked",
        )
    )
    breaks = list(Break.objects.filter(user_id=user_id, started_at__gte=since).values_list("started_at", "ended_at"))
    out = Exposure()
    today = day_start(now)
    boundary = now
    in_session = True
    session_texts, day_texts = set(), set()
    for r in rows:
        end = max(r["last_active_at"], r["finished_at"] or r["claimed_at"])
        if in_session and (
            end < boundary - session_gap
            or any(b_end and b_end - b_start >= session_gap and end <= b_start for b_start, b_end in breaks)
        ):
            in_session = False
        if in_session:
            boundary = min(boundary, r["claimed_at"])
            out.session_started_at = boundary
            out.last_work_at = max(out.last_work_at or end, end)
        unseen = r["status"] in (Attempt.Status.EXPIRED, Attempt.Status.REVOKED) and r["shown_at"] is None
        if not r["marked"] or unseen:
            continue
        # A text counts once however often it comes back (an undo hands it out again); its
        # minutes count every time they were spent.
        if in_session:
            session_texts.add(r["example_id"])
            out.session_seconds += r["active_seconds"]
        if r["claimed_at"] >= today:
            day_texts.add(r["example_id"])
            out.day_seconds += r["active_seconds"]
    out.session_texts, out.day_texts = len(session_texts), len(day_texts)
    if out.session_started_at is not None:
        out.continuous_seconds = Decimal((now - out.session_started_at).total_seconds()).quantize(Decimal("0.001"))
    return out


@dataclass
class Limits:
    """Which limits stop another sensitive text now, and when each lifts."""

    session: bool
    day: bool
    resume_at: datetime | None

    @property
    def reached(self) -> bool:
        return self.session or self.day


def limits_for(policy: WelfarePolicy, exposure: Exposure, now: datetime) -> Limits:
    p = policy
    day = (p.max_texts_per_day and exposure.day_texts >= p.max_texts_per_day) or (
        p.max_minutes_per_day and exposure.day_seconds >= p.max_minutes_per_day * 60
    )
    session = (p.max_texts_per_session and exposure.session_texts >= p.max_texts_per_session) or (
        p.max_minutes_per_session and exposure.session_seconds >= p.max_minutes_per_session * 60
    )
    if day:
        resume = next_day_start(now)
    elif session:
        resume = max(now, exposure.last_work_at or now) + timedelta(minutes=p.session_gap_minutes)
    else:
        resume = None
    return Limits(session=bool(session), day=bool(day), resume_at=resume)


def limit_message(limits: Limits) -> str:
    when = timezone.localtime(limits.resume_at).strftime("%Y-%m-%d %H:%M %Z")
    if limits.day:
        return (
            "Daily limit of sensitive texts reached; you can continue with non-sensitive work, "
            f"or with sensitive texts tomorrow at {when}."
        )
    return (
        "Session limit of sensitive texts reached; you can continue with non-sensitive work, "
        f"or with sensitive texts after a break, from {when}."
    )


def declined_categories(*, user_id: int, project: Project) -> set[str]:
    declined = set()
    for project_id, category in WelfareOptOut.objects.filter(user_id=user_id).values_list("project_id", "category"):
        if category:
            declined.add(category)
        elif project_id == project.pk:
            declined.update(CATEGORIES)
    return declined


def _lock_person(user_id: int, now: datetime) -> None:
    """The one-clock row lock (annotation.services._locked_clock): one person's claims, credits
    and breaks go one at a time, whatever project or tab they come from."""
    if not ActivityClock.objects.select_for_update().filter(pk=user_id).exists():
        ActivityClock.objects.bulk_create(
            [ActivityClock(user_id=user_id, credited_until=now - timedelta(days=1))], ignore_conflicts=True
        )
        ActivityClock.objects.select_for_update().get(pk=user_id)


class ClaimGate:
    def __init__(self, *, policy: WelfarePolicy, project: Project, annotator, now: datetime):
        self.policy, self.project, self.annotator, self.now = policy, project, annotator, now
        _lock_person(annotator.pk, now)

    def screen(self, example: Example | None) -> Example | None:
        """The queue's pick if this person may have it now; else the best text they may have
        (a non-sensitive one, or one outside the categories they declined); else None, or
        ExposureLimitReached when only sensitive texts are left and a limit stops them."""
        if example is None:
            return None
        marks = set(SensitiveMark.objects.filter(example=example).values_list("category", flat=True))
        if not marks:
            return example
        declined = declined_categories(user_id=self.annotator.pk, project=self.project)
        gap = timedelta(minutes=self.policy.session_gap_minutes)
        limits = limits_for(self.policy, exposure_of(self.annotator.pk, now=self.now, session_gap=gap), self.now)
        barred = set(CATEGORIES) if limits.reached else declined
        if not marks & barred:
            return example
        other = (
            candidate_examples(project=self.project, annotator=self.annotator, now=self.now)
            .exclude(Exists(SensitiveMark.objects.filter(example_id=OuterRef("pk"), category__in=barred)))
            .first()
        )
        if other is not None:
            return other
        if limits.reached:
            raise ExposureLimitReached(limit_message(limits))
        return None


def claim_gate(*, project: Project, annotator, now: datetime) -> ClaimGate | None:
    """None for a project that is not sensitive (one primary-key lookup); else a gate that has
    locked the person's clock row."""
    return gate_for(sensitive_policy(project), project=project, annotator=annotator, now=now)


def sensitive_policy(project: Project) -> WelfarePolicy | None:
    """The project's policy if the project is sensitive (claim_next reads it on PostgreSQL
    within its read of the open claims: SENSITIVE_POLICY_SQL)."""
    return WelfarePolicy.objects.filter(project=project, sensitive=True).first()


# What sensitive_policy reads, for claim_next's one statement: `w` is the policy row or NULLs.
SENSITIVE_POLICY_SQL = f"{WelfarePolicy._meta.db_table} AS w ON w.project_id = %s AND w.sensitive"  # noqa: S608


def gate_for(policy: WelfarePolicy | None, *, project: Project, annotator, now: datetime) -> ClaimGate | None:
    """claim_next's gate for the policy read at its start: None when the project is not
    sensitive, else a gate that has locked the person's clock row (before any lease expires)."""
    if policy is None:
        return None
    return ClaimGate(policy=policy, project=project, annotator=annotator, now=now)


def status_for(*, project: Project, user, now: datetime | None = None) -> dict:
    """What the labeling page shows of the person's own exposure and the project's policy."""
    now = now or timezone.now()
    policy = policy_of(project)
    if policy is None:
        return {"sensitive": False}
    exposure = exposure_of(user.pk, now=now, session_gap=timedelta(minutes=policy.session_gap_minutes))
    limits = limits_for(policy, exposure, now)
    return {
        "sensitive": policy.sensitive,
        "session_texts": exposure.session_texts,
        "session_minutes": float(round(exposure.session_seconds / 60, 1)),
        "day_texts": exposure.day_texts,
        "day_minutes": float(round(exposure.day_seconds / 60, 1)),
        "max_texts_per_session": policy.max_texts_per_session,
        "max_minutes_per_session": policy.max_minutes_per_session,
        "max_texts_per_day": policy.max_texts_per_day,
        "max_minutes_per_day": policy.max_minutes_per_day,
        "limit_reached": limits.reached,
        "limit_message": limit_message(limits) if limits.reached else "",
        "continuous_minutes": float(round(exposure.continuous_seconds / 60, 1)),
        "break_after_minutes": policy.break_after_minutes,
        "support_text": policy.support_text,
    }


# --- opt-outs --------------------------------------------------------------------------------


@transaction.atomic
def opt_outs_set(*, user, projects=(), categories=()) -> list[WelfareOptOut]:
    """Replace the person's opt-outs: sensitive texts of these projects, and these categories
    everywhere. Pay rates and access to other work never change."""
    categories = _clean_categories(list(categories))
    WelfareOptOut.objects.filter(user=user).delete()
    rows = [WelfareOptOut(user=user, project=p) for p in dict.fromkeys(projects)]
    rows += [WelfareOptOut(user=user, category=c) for c in categories]
    WelfareOptOut.objects.bulk_create(rows)
    return list(WelfareOptOut.objects.filter(user=user))


# --- breaks -------------------------------------------------------------------------------------


def _open_break(user) -> Break | None:
    return Break.objects.select_for_update().filter(user=user, ended_at__isnull=True).first()


@transaction.atomic
def break_start(*, project: Project, user, now: datetime | None = None) -> Break:
    """The person starts a break (idempotent: an open break is returned as it is)."""
    now = now or timezone.now()
    _lock_person(user.pk, now)
    existing = _open_break(user)
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return Break.objects.create(project=project, user=user, started_at=now)
    except IntegrityError:  # pragma: no cover - the person lock makes this unreachable
        return _open_break(user)


MAX_BREAK = timedelta(hours=1)


def worked_seconds_in_session(user_id: int, *, now: datetime, session_gap: timedelta) -> Decimal:
    """Active seconds credited to the person's attempts of the current session, all projects."""
    exposure = exposure_of(user_id, now=now, session_gap=session_gap)
    if exposure.session_started_at is None:
        return Decimal(0)
    return sum(
        Attempt.objects.filter(annotator_id=user_id, claimed_at__gte=exposure.session_started_at).values_list(
            "active_seconds", flat=True
        ),
        Decimal(0),
    )


@transaction.atomic
def break_end(*, user, now: datetime | None = None) -> Break:
    """End the person's break. Its time is credited on the one clock (only the part after the
    person's watermark, at most an hour), and the paid part, up to the policy's paid minutes per
    hour worked in the session less breaks already paid in it, goes to the ledger
    (hooks.break_closed)."""
    now = now or timezone.now()
    _lock_person(user.pk, now)
    brk = _open_break(user)
    if brk is None:
        raise Conflict("You are not on a break.", code="no_break")
    clock = ActivityClock.objects.get(pk=user.pk)
    start = max(brk.started_at, clock.credited_until)
    end = min(now, brk.started_at + MAX_BREAK)
    credited = Decimal(max((end - start).total_seconds(), 0)).quantize(Decimal("0.001"))
    if credited > 0:
        ActivityClock.objects.filter(pk=user.pk).update(credited_until=end)
    policy = policy_of(brk.project)
    paid = Decimal(0)
    if policy is not None and policy.paid_break_minutes_per_hour:
        gap = timedelta(minutes=policy.session_gap_minutes)
        worked = worked_seconds_in_session(user.pk, now=brk.started_at, session_gap=gap)
        session = exposure_of(user.pk, now=brk.started_at, session_gap=gap).session_started_at or brk.started_at
        already = sum(
            Break.objects.filter(user=user, ended_at__isnull=False, started_at__gte=session).values_list(
                "paid_seconds", flat=True
            ),
            Decimal(0),
        )
        allowance = worked * policy.paid_break_minutes_per_hour / 60 - already
        paid = max(min(credited, allowance), Decimal(0)).quantize(Decimal("0.001"))
    brk.ended_at = now
    brk.credited_seconds = credited
    brk.paid_seconds = paid
    brk.save(update_fields=["ended_at", "credited_seconds", "paid_seconds"])
    hooks.break_closed.send(hooks.BreakClosed(brk=brk))
    return brk


# --- the admin's view: who is approaching a limit -----------------------------------------------

NEAR_LIMIT = 0.8  # the console flags a person at 80 % of any limit


def people_near_limits(*, project: Project, now: datetime | None = None, threshold: float = NEAR_LIMIT) -> list[dict]:
    """The project's labelers whose exposure (over all projects) reached `threshold` of one of
    this project's limits, most exposed first. Only for admins and auditors of the project."""
    now = now or timezone.now()
    policy = policy_of(project)
    if policy is None or not policy.sensitive:
        return []
    gap = timedelta(minutes=policy.session_gap_minutes)
    out = []
    members = Membership.objects.filter(project=project, role__in=LABELERS).select_related("user")
    for membership in members.order_by("user__username"):
        exposure = exposure_of(membership.user_id, now=now, session_gap=gap)
        shares = {
            "session texts": (exposure.session_texts, policy.max_texts_per_session),
            "session minutes": (float(exposure.session_seconds) / 60, policy.max_minutes_per_session),
            "daily texts": (exposure.day_texts, policy.max_texts_per_day),
            "daily minutes": (float(exposure.day_seconds) / 60, policy.max_minutes_per_day),
        }
        ratios = {k: used / limit for k, (used, limit) in shares.items() if limit}
        if not ratios:
            continue
        which, ratio = max(ratios.items(), key=lambda kv: kv[1])
        if ratio >= threshold:
            out.append(
                {
                    "username": membership.user.username,
                    "limit": which,
                    "used": round(shares[which][0], 1),
                    "of": shares[which][1],
                    "percent": int(min(ratio, 9.99) * 100),
                    "reached": ratio >= 1,
                    "day_texts": exposure.day_texts,
                    "day_minutes": round(float(exposure.day_seconds) / 60, 1),
                }
            )
    return sorted(out, key=lambda r: -r["percent"])
