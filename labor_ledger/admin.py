"""The ledger in Django's admin: read-only. Nobody adds, changes or deletes an entry here."""

from django.contrib import admin

from annotation.admin import ProjectAdmin
from annotation.models import InstructionReading, Project

from .models import Balance, ChainHead, LedgerEntry, PayPolicy, Settlement


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["project", "seq", "annotator", "kind", "time_category", "amount", "currency", "period_start"]
    list_filter = ["kind", "time_category", "project"]
    search_fields = ["annotator__username", "idempotency_key", "entry_hash"]
    list_select_related = ["project", "annotator"]


@admin.register(PayPolicy)
class PayPolicyAdmin(ReadOnlyAdmin):
    list_display = [
        "project",
        "version",
        "effective_from",
        "piece_rate",
        "hourly_rate",
        "floor_hourly_rate",
        "currency",
    ]


@admin.register(Settlement)
class SettlementAdmin(ReadOnlyAdmin):
    list_display = ["project", "period", "annotator", "gross", "top_up", "rounding", "payable", "currency"]
    list_filter = ["project", "period"]


admin.site.register([Balance, ChainHead, InstructionReading], ReadOnlyAdmin)


class LedgerProjectAdmin(ProjectAdmin):
    """The project's admin page, with what the ledger fixes: once it has entries, the currency
    (every amount is in it), the label mode and the slug (entries and exports name it) are
    read-only here too, as in the console."""

    def fixed_fields(self, obj) -> set[str]:
        fixed = super().fixed_fields(obj)
        if obj is not None and LedgerEntry.objects.filter(project=obj).exists():
            fixed |= {"currency", "label_mode", "slug"}
        return fixed


admin.site.unregister(Project)
admin.site.register(Project, LedgerProjectAdmin)
