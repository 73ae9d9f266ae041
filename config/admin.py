"""Django's admin, for superusers only: the operators' tool. Project admins and auditors
run their projects in the console (frontend/console/), where every change goes through the
apps' services; staff who are not superusers are answered with the admin's login page."""

from django.contrib import admin


class TallyAdminSite(admin.AdminSite):
    site_header = "Tally operators"
    site_title = "Tally operators"

    def has_permission(self, request):
        return request.user.is_active and request.user.is_superuser
