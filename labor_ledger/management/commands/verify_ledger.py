"""verify_ledger: check every project's ledger (labor_ledger/verification.py).

By default each project's chains are re-hashed from its latest signed `verified` checkpoint on
(a daily run reads only the new entries); --full re-hashes every entry. Either way the chain
is held to the latest signed checkpoint (truncation, rollback), and balances, settlements and
reversals are checked in full. A run that finds nothing wrong signs the head it verified (a
`verified` checkpoint) when a signing key is configured. --jobs checks seq ranges in parallel
threads, each with its own database connection: PostgreSQL encodes and sends each range in its
own backend (the fetch waits on the socket without the GIL). Threads, not forked processes: a
fork inherits the parent's open broker and cache sockets, and kombu's after-fork clean-up then
reads from a socket the parent still uses (a hang seen in the test suite).
"""

import os
import time
from concurrent.futures import ThreadPoolExecutor

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, connections, transaction

from annotation.models import Project
from labor_ledger import checkpoints, verification
from labor_ledger.models import ChainHead, LedgerEntry


def _verify_part(part: verification.ChainPart) -> verification.ChainPart:
    """In a worker thread: its own connection, its own transaction (server-side cursor)."""
    try:
        with transaction.atomic():
            return verification.verify_chain(part)
    finally:
        connections.close_all()  # this thread's connections only


class Command(BaseCommand):
    help = (
        "Verify every project's ledger: the hash and MAC chains, the latest signed checkpoints, "
        "balances and settlements. Names the first bad entry; exits non-zero when something does not verify."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", help="project slug (default: every project with a ledger)")
        parser.add_argument(
            "--full", action="store_true", help="re-hash every entry, not only those after the last verified checkpoint"
        )
        parser.add_argument(
            "--jobs",
            type=int,
            default=0,
            help="parallel threads for the chain check (default: the CPU count, 1 inside a transaction)",
        )
        parser.add_argument("--no-checkpoint", action="store_true", help="do not sign the verified head")

    def handle(self, *args, project=None, full=False, jobs=0, no_checkpoint=False, **options):
        if project:
            projects = list(Project.objects.filter(slug=project))
            if not projects:
                raise CommandError(f"No project with the slug {project!r}.")
        else:
            with_ledger = set(ChainHead.objects.values_list("project_id", flat=True)) | set(
                LedgerEntry.objects.values_list("project_id", flat=True).distinct()
            )
            projects = list(Project.objects.filter(pk__in=with_ledger).order_by("slug"))
        # Other connections cannot see an uncommitted transaction (e.g. a test's): one thread then.
        jobs = jobs or (os.cpu_count() or 1)
        if connection.in_atomic_block or connection.vendor != "postgresql":
            jobs = 1
        if checkpoints.signing_key() is None:
            self.stdout.write(self.style.WARNING(f"Note: {checkpoints.NOT_SIGNED}."))
        pool = None
        if jobs > 1:
            pool = ThreadPoolExecutor(jobs, thread_name_prefix="verify-ledger")
        broken = total = 0
        started = time.perf_counter()
        try:
            run_parts = (lambda parts: list(pool.map(_verify_part, parts))) if pool else None
            for p in projects:
                since = None if full else verification.resume_point(p)
                result = verification.verify_project(project=p, since=since, run_parts=run_parts, parts=jobs)
                total += result.entries - result.resumed_after
                self._report(p, result)
                if not result.ok:
                    broken += 1
                elif not no_checkpoint and result.head_seq > result.resumed_after:
                    checkpoints.checkpoint(project=p, reason=checkpoints.Reason.VERIFIED, seq=result.head_seq)
        finally:
            if pool:
                pool.shutdown()
        seconds = time.perf_counter() - started
        if broken:
            raise CommandError(f"The ledger of {broken} project(s) does not verify.")
        rate = f", {total / seconds:,.0f} entries/s" if seconds > 0 and total else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"{len(projects)} project ledger(s) verified: {total} entries re-hashed in {seconds:.2f} s{rate}."
            )
        )

    def _report(self, p, result: verification.Verification) -> None:
        cp = result.checkpoint
        held = f"; checkpoint #{cp.seq} of {cp.created_at.isoformat()} (key {cp.key_id}) holds" if cp else ""
        scope = f" (re-hashed after #{result.resumed_after})" if result.resumed_after else ""
        if result.ok:
            self.stdout.write(
                f"{p.slug}: ok, {result.entries} entries{scope}, head #{result.head_seq} {result.head_hash}{held}"
            )
        else:
            self.stdout.write(self.style.ERROR(f"{p.slug}: {len(result.problems)} problem(s)"))
            for text in result.problems:
                self.stdout.write(f"  {text}")
        for note in result.notes:
            self.stdout.write(f"  note: {note}")
