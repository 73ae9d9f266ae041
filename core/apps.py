from django.apps import AppConfig


class CoreConfig(AppConfig):
    """What every app shares: domain errors, the API's error answers, roles, pagination,
    spreadsheet-safe cells, inline SVG figures and the typed hooks apps announce events by.
    It depends on no app of ours."""

    name = "core"
    verbose_name = "Core"
