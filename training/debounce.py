"""The retraining debounce's counting, in Redis (issue 18 item 1: no database statement for
most label events).

Per project, Redis keeps what the debounce needs to decide without the database: the config's
`enabled`, `retrain_every_n_labels` (n) and deep period, whether the project can train at all
(a model exists, or `enough_labels` held), the label events counted since a run was queued,
and a "run pending" flag. A label event is one atomic script (`count`): it counts, and answers

- "skip": nothing to do (below n, a run is pending and will read this label, training off,
  or not enough labels for a first model yet, as far as Redis can tell);
- "queue" / "deep": the threshold is crossed and no run was pending; the flag is now set (SET
  NX semantics: one event of many wins) and the caller queues the run in the database;
- "fill": Redis has no (current) state for the project: the caller decides from the database
  and stores the state (`store`);
- "check": not enough labels for a first model at the last look, but this event may have made
  them enough (or changed labels it cannot see): the caller decides from the database.

The flag is cleared by the run when it is claimed, before it reads the labels
(training.runs.run_claim, then the snapshot), so a label that found the flag set is in that
run's snapshot, and one that found it clear queues the next run. The state is only a cache:
queueing always re-reads the config and the labels from the database, and what Redis may lose
or hold stale (a restart, a restored snapshot) can only delay a run, never queue a wrong one;
the periodic catch-up (training.tasks.runs_catch_up, with the sweeper) queues the runs a lost
count or a lost callback left out. Every key expires (STATE_TTL, PENDING_TTL). Redis down:
`count` returns None and the caller decides from the database (one run queued at most).

Config changes bump the project's generation (`invalidate`, after commit): a state written
under an older generation is ignored, so no stale `n` or `enabled` outlives a change.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

STATE_TTL = 3600  # seconds: a project's state lapses after this long without a label event
PENDING_TTL = 600  # a pending flag whose run never started (a lost clear) lapses after this

_COUNT = """
local gen = redis.call('GET', KEYS[2]) or '0'
if redis.call('HGET', KEYS[1], 'gen') ~= gen then return {'fill', gen, 0} end
if redis.call('HGET', KEYS[1], 'enabled') ~= '1' then return {'skip', gen, 0} end
redis.call('EXPIRE', KEYS[1], ARGV[3])
local count = redis.call('HINCRBY', KEYS[1], 'count', 1)
local deep = redis.call('HINCRBY', KEYS[1], 'deep', 1)
if redis.call('HGET', KEYS[1], 'ready') ~= '1' then
  local rows = tonumber(ARGV[2])
  if rows < 0 then return {'check', gen, count} end
  local need = redis.call('HINCRBY', KEYS[1], 'need', -rows)
  for i = 4, #ARGV do redis.call('SADD', KEYS[3], ARGV[i]) end
  redis.call('EXPIRE', KEYS[3], ARGV[3])
  if need > 0 or redis.call('SCARD', KEYS[3]) < 2 then return {'skip', gen, count} end
  return {'check', gen, count}
end
if count < tonumber(redis.call('HGET', KEYS[1], 'n')) then return {'skip', gen, count} end
local deep_n = tonumber(redis.call('HGET', KEYS[1], 'deep_n'))
local go_deep = deep_n > 0 and deep >= deep_n
if redis.call('SET', KEYS[4], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('HSET', KEYS[1], 'count', 0)
  if go_deep then
    redis.call('HSET', KEYS[1], 'deep', 0)
    return {'deep', gen, count}
  end
  return {'queue', gen, count}
end
redis.call('HSET', KEYS[1], 'count', 0)
if go_deep then
  redis.call('HSET', KEYS[1], 'deep', 0)
  return {'deep', gen, count}
end
return {'skip', gen, count}
"""

_STORE = """
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
local deep = (tonumber(redis.call('HGET', KEYS[1], 'deep')) or 0) + tonumber(ARGV[8])
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('HSET', KEYS[1], 'gen', ARGV[1], 'enabled', ARGV[2], 'n', ARGV[3], 'deep_n', ARGV[4],
  'ready', ARGV[5], 'need', ARGV[6], 'count', ARGV[7], 'deep', deep)
redis.call('EXPIRE', KEYS[1], ARGV[9])
for i = 11, #ARGV do redis.call('SADD', KEYS[3], ARGV[i]) end
redis.call('EXPIRE', KEYS[3], ARGV[9])
if ARGV[10] ~= '0' then redis.call('SET', KEYS[4], '1', 'EX', ARGV[10]) end
return 1
"""


@dataclass(frozen=True)
class Verdict:
    action: str  # skip, queue, deep, fill, check
    gen: str
    count: int  # label events counted since a run was queued, this one included


_client: redis.Redis | None = None


def client() -> redis.Redis:
    """The Redis of the shared cache, with short timeouts: a slow or absent Redis must not hold
    a submission that is already committed."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(
            settings.CACHES["default"]["LOCATION"], socket_connect_timeout=0.5, socket_timeout=0.5
        )
    return _client


def _keys(project_id: int) -> list[str]:
    base = f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:training:debounce:{project_id}"
    return [base, f"{base}:gen", f"{base}:classes", f"{base}:pending"]


def count(project_id: int, label_ids: Sequence[int] | None) -> Verdict | None:
    """Count one label event (`label_ids`: the labels it added; None when unknown, e.g. a
    status change). None when Redis cannot be reached: the caller decides from the database."""
    ids = list(dict.fromkeys(label_ids)) if label_ids is not None else None
    args = [PENDING_TTL, -1 if ids is None else len(ids), STATE_TTL, *(ids or [])]
    try:
        action, gen, counted = client().eval(_COUNT, 4, *_keys(project_id), *args)
    except redis.RedisError:
        logger.warning("Redis unavailable: the retraining debounce of project %s decides from the database", project_id)
        return None
    return Verdict(action.decode(), gen.decode(), int(counted))


def store(
    project_id: int,
    gen: str,
    *,
    enabled: bool,
    n: int,
    deep_n: int,
    ready: bool,
    need: int,
    classes: Sequence[int],
    counted: int,
    deep: int,
    pending: bool,
) -> None:
    """The state read from the database, kept unless the generation moved since `gen` was read.
    `deep` is added to the label events counted towards the deep loop (kept across refills)."""
    args = [
        gen,
        int(enabled),
        n,
        deep_n,
        int(ready),
        need,
        counted,
        deep,
        STATE_TTL,
        PENDING_TTL if pending else 0,
        *classes,
    ]
    try:
        client().eval(_STORE, 4, *_keys(project_id), *args)
    except redis.RedisError:
        logger.warning("Redis unavailable: the retraining debounce state of project %s is not kept", project_id)


def run_started(project_id: int) -> None:
    """A queued run was claimed and is about to read the labels: labels from now on queue the next."""
    try:
        client().delete(_keys(project_id)[3])
    except redis.RedisError:  # the flag lapses (PENDING_TTL), and the catch-up queues what it held back
        logger.warning("Redis unavailable: the pending-run flag of project %s stays until it lapses", project_id)


def deep_reset(project_id: int) -> None:
    """A deep run was queued on request: the deep loop's count starts again."""
    try:
        client().hset(_keys(project_id)[0], "deep", 0)
    except redis.RedisError:
        logger.warning("Redis unavailable: the deep-loop count of project %s is not reset", project_id)


def release(project_id: int) -> None:
    """The database refused a run the state promised (stale state): forget the state and the flag."""
    keys = _keys(project_id)
    try:
        client().delete(keys[0], keys[2], keys[3])
    except redis.RedisError:
        logger.warning("Redis unavailable: the debounce state of project %s lapses on its own", project_id)


def invalidate(project_id: int) -> None:
    """The config (or whether a model exists) changed: the state is re-read at the next label."""
    try:
        client().incr(_keys(project_id)[1])
    except redis.RedisError:
        logger.warning("Redis unavailable: the debounce state of project %s lapses on its own", project_id)


def forget_all() -> int:
    """Delete every project's debounce keys (tests: a new test database reuses project ids)."""
    prefix = f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:training:debounce:*"
    try:
        keys = list(client().scan_iter(match=prefix, count=1000))
        if keys:
            client().delete(*keys)
    except redis.RedisError:
        return 0
    return len(keys)
