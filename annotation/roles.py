"""Site-wide Django groups. Per-project rights come from Membership; these say who may do
site-level things (an admin creates projects) and make roles visible in Django's admin."""

ADMINS_GROUP = "Tally admins"
ANNOTATORS_GROUP = "Annotators"
AUDITORS_GROUP = "Auditors"

GROUP_PERMISSIONS = {
    ADMINS_GROUP: ["annotation.add_project", "annotation.change_project", "annotation.view_project"],
    ANNOTATORS_GROUP: [],
    AUDITORS_GROUP: ["annotation.view_project"],
}
