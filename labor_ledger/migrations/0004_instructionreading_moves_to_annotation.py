# The other half of annotation.0006: the ledger's entries point at annotation's
# InstructionReading, and labor_ledger forgets its own (state only; the table was renamed).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0006_instructionreading"),
        ("labor_ledger", "0003_version_labor_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="ledgerentry",
                    name="reading",
                    field=models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="annotation.instructionreading",
                    ),
                ),
                migrations.DeleteModel(name="InstructionReading"),
            ],
            database_operations=[],
        ),
    ]
