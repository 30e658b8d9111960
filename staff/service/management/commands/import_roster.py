"""python -m django import_roster ROSTER.csv PASSWORDS.csv [--staff]

Creates an account per line of a roster CSV (student_id,name,email) with a
random initial password, changed at first login, and writes the initial
passwords to a CSV (student_id,name,email,password) for the instructor to
hand out. Students already there are left as they are (not in the output).
"""
import csv
import os
import secrets
from pathlib import Path

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from staff.service.models import Profile

COLUMNS = ('student_id', 'name', 'email')


def initial_password():
    return '-'.join(secrets.token_hex(3) for _ in range(3))


def read_roster(path):
    try:
        with open(path, newline='', encoding='utf-8-sig') as file:
            rows = list(csv.DictReader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise CommandError(f"{path}: {error}") from None
    if rows and not set(COLUMNS) <= set(rows[0]):
        raise CommandError(f"{path}: the header must be {','.join(COLUMNS)}")
    for line, row in enumerate(rows, 2):
        if not (row['student_id'] or '').strip():
            raise CommandError(f"{path}:{line}: no student_id")
    return rows


class Command(BaseCommand):
    help = __doc__.split('\n\n')[1]

    def add_arguments(self, parser):
        parser.add_argument('roster', type=Path)
        parser.add_argument('passwords', type=Path)
        parser.add_argument('--staff', action='store_true', help='the accounts are TAs (staff)')

    def handle(self, roster, passwords, staff, **options):
        created = []
        with transaction.atomic():
            for row in read_roster(roster):
                username = row['student_id'].strip()
                if User.objects.filter(username=username).exists():
                    continue
                password = initial_password()
                user = User.objects.create_user(username, row['email'].strip(), password,
                                                is_staff=staff)
                Profile.objects.create(user=user, name=row['name'].strip())
                created.append([username, row['name'].strip(), row['email'].strip(), password])
        descriptor = os.open(passwords, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, 'w', newline='') as file:
            writer = csv.writer(file)
            writer.writerow([*COLUMNS, 'password'])
            writer.writerows(created)
        self.stdout.write(f"{len(created)} accounts created; their initial passwords are in "
                          f"{passwords}")
