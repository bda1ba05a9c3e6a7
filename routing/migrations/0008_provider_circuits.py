import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('routing', '0007_route_strategy_without_choices'),
    ]

    operations = [
        migrations.AddField(
            model_name='provider',
            name='circuit_failures',
            field=models.PositiveSmallIntegerField(default=3, help_text="Retryable failures (429, 5xx, overloaded, timeouts, streams cut short) within the window that open a model's circuit: it is skipped by every route and worker until its cooldown ends.", validators=[django.core.validators.MinValueValidator(1)], verbose_name='failures that open a circuit'),
        ),
        migrations.AddField(
            model_name='provider',
            name='circuit_window_seconds',
            field=models.FloatField(default=60.0, help_text='How far back failures count towards opening a circuit.', validators=[django.core.validators.MinValueValidator(0.1)], verbose_name='failure window (seconds)'),
        ),
        migrations.AddField(
            model_name='provider',
            name='circuit_cooldown_seconds',
            field=models.FloatField(default=30.0, help_text="How long an open circuit stays open (longer when the provider's retry-after says so); then one probe call decides whether it closes or opens again.", validators=[django.core.validators.MinValueValidator(0.1)], verbose_name='circuit cooldown (seconds)'),
        ),
    ]
