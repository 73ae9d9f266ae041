"""Roles, defined once. A person's rights in a project come from their Membership's role;
the Django groups say who may do site-level things and show roles in Django's admin."""

from django.db import models


class Role(models.TextChoices):
    ANNOTATOR = "annotator", "Annotator"
    ADMIN = "admin", "Admin"
    AUDITOR = "auditor", "Auditor"


ANY_ROLE = frozenset(Role.values)
# Who reads everything in a project (auditors read and never write).
READERS = frozenset({Role.ADMIN, Role.AUDITOR})
ADMINS = frozenset({Role.ADMIN})
# Who may claim, heartbeat and submit texts in a project.
LABELERS = frozenset({Role.ANNOTATOR, Role.ADMIN})

ADMINS_GROUP = "Tally admins"
ANNOTATORS_GROUP = "Annotators"
AUDITORS_GROUP = "Auditors"

GROUP_PERMISSIONS = {
    ADMINS_GROUP: ["annotation.add_project", "annotation.change_project", "annotation.view_project"],
    ANNOTATORS_GROUP: [],
    AUDITORS_GROUP: ["annotation.view_project"],
}
