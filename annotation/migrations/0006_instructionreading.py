# InstructionReading moves from labor_ledger to annotation (annotation owns the work records).
# The model joins annotation's state over the existing table, which is then renamed; the
# labor_ledger migration that follows drops it from labor_ledger's state only. No row moves.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0005_example_project_id_index"),
        ("labor_ledger", "0003_version_labor_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="InstructionReading",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("started_at", models.DateTimeField()),
                        ("last_active_at", models.DateTimeField()),
                        ("ended_at", models.DateTimeField(blank=True, null=True)),
                        ("active_seconds", models.DecimalField(decimal_places=3, default=0, max_digits=12)),
                        ("wall_seconds", models.DecimalField(blank=True, decimal_places=3, max_digits=12, null=True)),
                        ("heartbeat_count", models.PositiveIntegerField(default=0)),
                        (
                            "annotator",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "project",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="annotation.project",
                            ),
                        ),
                    ],
                    options={
                        "ordering": ["id"],
                        "db_table": "labor_ledger_instructionreading",
                        "constraints": [
                            models.UniqueConstraint(
                                condition=models.Q(("ended_at__isnull", True)),
                                fields=("project", "annotator"),
                                name="reading_one_open_per_annotator",
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.AlterModelTable(name="instructionreading", table=None),
    ]
