"""Tally-side setup the benchmark does not time: users with API tokens, and (only when this
build has no import API) examples seeded straight into the database.

Run by the harness as `python -m bench.peers.tally_setup users --annotators N` (prints JSON;
`members` adds the annotators to a project)
with DJANGO_SETTINGS_MODULE=bench.peers.settings and the run's DATABASE_URL.
"""

import argparse
import csv
import json
import os
import sys

import django


def create_users(annotators: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from rest_framework.authtoken.models import Token

    from core.roles import ADMINS_GROUP

    User = get_user_model()

    def user_with_token(username: str) -> dict:
        user, created = User.objects.get_or_create(username=username, defaults={"email": f"{username}@bench.invalid"})
        if created:
            user.set_unusable_password()  # API tokens only: no password exists to leak
            user.save()
        token, _ = Token.objects.get_or_create(user=user)
        return {"username": username, "token": token.key}

    admin = user_with_token("bench-admin")
    User.objects.get(username="bench-admin").groups.add(Group.objects.get(name=ADMINS_GROUP))
    return {"admin": admin, "annotators": [user_with_token(f"bench-annotator-{i}") for i in range(annotators)]}


def seed_examples(slug: str, path: str) -> dict:
    """Fallback for builds without the import API: the rows go in with bulk_create, untimed."""
    from annotation.models import Example, Project
    from annotation.services import text_hash

    project = Project.objects.get(slug=slug)
    labels = dict(project.labels.values_list("name", "id"))
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    Example.objects.bulk_create(
        (
            Example(
                project=project,
                text=row["text"],
                text_hash=text_hash(row["text"]),
                gold_label_id=labels.get(row["label"]),
            )
            for row in rows
        ),
        batch_size=1000,
        ignore_conflicts=True,
    )
    return {"examples": Example.objects.filter(project=project).count()}


def add_members(slug: str, usernames: list[str]) -> dict:
    """The annotators join the project. The members API takes no usernames (people join by
    invitation, so adding one cannot probe which names exist): the benchmark uses the service."""
    from django.contrib.auth import get_user_model

    from annotation import services
    from annotation.models import Membership, Project

    project = Project.objects.get(slug=slug)
    for user in get_user_model().objects.filter(username__in=usernames):
        services.membership_set(project=project, user=user, role=Membership.Role.ANNOTATOR)
    return {"members": project.memberships.count()}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    users = sub.add_parser("users")
    users.add_argument("--annotators", type=int, required=True)
    seed = sub.add_parser("seed")
    seed.add_argument("--project", required=True)
    seed.add_argument("--file", required=True)
    members = sub.add_parser("members")
    members.add_argument("--project", required=True)
    members.add_argument("usernames", nargs="+")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.peers.settings")
    django.setup()
    if args.command == "users":
        result = create_users(args.annotators)
    elif args.command == "members":
        result = add_members(args.project, args.usernames)
    else:
        result = seed_examples(args.project, args.file)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
