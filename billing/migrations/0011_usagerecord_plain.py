from django.db import migrations, models
from django.db.models import F, Q


def mark_plain(apps, schema_editor):
    """The plain calls among those booked before (billing.models.plain_call, as it stood when this was written)."""
    UsageRecord = apps.get_model("billing", "UsageRecord")
    UsageRecord.objects.filter(
        ~(Q(cost_usd__isnull=True) & ~Q(model="")),
        needs="",
        output_tokens__lte=2_048,
        input_tokens__lte=8_192 - F("output_tokens"),
    ).update(plain=True)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0010_usage_day_rollups"),
    ]

    operations = [
        migrations.AddField(
            model_name="usagerecord",
            name="plain",
            field=models.BooleanField(
                default=False,
                help_text=(
                    "Any model with PLAIN_CONTEXT tokens of context and PLAIN_OUTPUT of output could have served it: "
                    "booked with a price, its needs recorded and none, within those limits."
                ),
            ),
        ),
        migrations.RunPython(mark_plain, migrations.RunPython.noop, elidable=True),
        migrations.AddIndex(
            model_name="usagerecord",
            index=models.Index(
                condition=models.Q(plain=False),
                fields=[
                    "team",
                    "created_at",
                    "plain",
                    "model",
                    "route",
                    "user",
                    "api_key",
                    "needs",
                    "cost_usd",
                    "input_tokens",
                    "output_tokens",
                    "cached_input_tokens",
                    "cache_write_tokens",
                ],
                name="record_team_unplain",
            ),
        ),
    ]
