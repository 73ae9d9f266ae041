"""The ledger in Django's admin: read-only. Nobody adds, changes or deletes an entry here."""

from django.contrib import admin

from annotation.models import InstructionReading

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
