from django.contrib.admin.apps import AdminConfig


class TallyAdminConfig(AdminConfig):
    """django.contrib.admin with the superusers-only site (config/admin.py)."""

    default_site = "config.admin.TallyAdminSite"
