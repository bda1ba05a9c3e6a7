import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('routing', '0008_provider_circuits'),
    ]

    operations = [
        migrations.AddField(
            model_name='route',
            name='retry_attempts',
            field=models.PositiveSmallIntegerField(default=0, help_text='How many times a model that failed before its first token (rate limited, overloaded, timed out, unavailable) is tried again before the call moves down the chain; 0: never.', validators=[django.core.validators.MaxValueValidator(5)], verbose_name='retries per model'),
        ),
        migrations.AddField(
            model_name='route',
            name='retry_base_delay_seconds',
            field=models.FloatField(default=0.5, help_text="Retry n waits a random time up to this × 2^(n-1) (and at least the provider's retry-after), always within the call's deadline.", validators=[django.core.validators.MinValueValidator(0.0)], verbose_name='retry base delay (seconds)'),
        ),
    ]
