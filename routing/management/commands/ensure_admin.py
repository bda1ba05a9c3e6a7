"""Create the first superuser, once, with a generated password shown only then."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

USERNAME = "admin"


def superuser_ensure(*, username: str = USERNAME) -> str | None:
    """Create superuser `username` with a random password if no superuser exists.

    Returns the plain password when it created one (the only moment it is
    known), None when a superuser already existed. Raises CommandError when
    `username` is taken by a user who is not a superuser.
    """
    user_model = get_user_model()
    with transaction.atomic():
        if user_model.objects.filter(is_superuser=True).exists():
            return None
        if user_model.objects.filter(username=username).exists():
            raise CommandError(
                f'No superuser exists and the username "{username}" is taken by a regular user: '
                "create one with `manage.py createsuperuser`."
            )
        password = secrets.token_urlsafe(18)
        user_model.objects.create_superuser(username=username, email="", password=password)
    return password


class Command(BaseCommand):
    help = "Create superuser 'admin' with a generated password, printed once, unless a superuser exists."

    def handle(self, *args: Any, **options: Any) -> None:
        password = superuser_ensure()
        if password is None:
            self.stdout.write("Log in with an existing superuser account.")
            self.stdout.write("Forgot its password? .venv/bin/python manage.py changepassword <username>")
            return
        self.stdout.write(f"username: {USERNAME}")
        self.stdout.write(f"password: {password}   (shown only this once; change it in the admin)")
