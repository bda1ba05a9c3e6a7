from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.models import Team, TeamMembership
from billing.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for USERNAME (creating the user if needed); the key is printed alone on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--team", help="Slug of the team the key books to (created if needed).")
        parser.add_argument("--name", default="", help="A label for the key.")

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"].strip()
        if not username:
            raise CommandError("USERNAME must not be empty.")
        user, created = get_user_model().objects.get_or_create(username=username)
        if created:
            user.set_unusable_password()
            user.save()
            self.stdout.write(f"Created user {username} (no password; set one with `manage.py changepassword`).")
        team = None
        if options["team"]:
            team, _ = Team.objects.get_or_create(slug=options["team"], defaults={"name": options["team"]})
            TeamMembership.objects.get_or_create(team=team, user=user)
        key, raw = api_key_create(user=user, name=options["name"], team=team)
        where = f" for team {team.slug}" if team else ""
        self.stdout.write(f"API key {key.prefix}… created for {username}{where}. It is shown only once:")
        self.stdout.write(raw)
