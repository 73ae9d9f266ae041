"""Fixtures for the ledger tests: a project with a pay policy, on the clock of util.at()."""

from decimal import Decimal

import pytest

from labor_ledger import services

from .util import at


@pytest.fixture
def policy(project, admin_user):
    """Piece rate 0.10 per example, floor 12.00 per hour worked, client pays 0.25 per example;
    rejected work unpaid (pay_rejected_work off: these tests follow a reversal through the
    books; test_rejected_work_pay.py covers the default, which keeps it paid)."""
    return services.pay_policy_create(
        project=project,
        created_by=admin_user,
        effective_from=at(-3600),
        now=at(-3600),
        piece_rate=Decimal("0.10"),
        floor_hourly_rate=Decimal("12.00"),
        client_price_per_example=Decimal("0.25"),
        pay_rejected_work=False,
    )
