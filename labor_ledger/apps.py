from django.apps import AppConfig


class LaborLedgerConfig(AppConfig):
    name = "labor_ledger"
    verbose_name = "Labor ledger"
