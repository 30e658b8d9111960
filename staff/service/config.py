"""The course's settings for the checking service: a TOML file (--config) and a data directory.

Every key is optional; the README has a commented example. The web server,
the dispatcher and the workers read the same file, so they agree on the
points table, the limits and the deadlines.
"""
import os
import secrets
import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from staff import sandbox
from staff.cli import UsageError

CONFIG_ENV, DATA_ENV = 'NN_SERVICE_CONFIG', 'NN_SERVICE_DATA'
DEFAULT_DATA = Path('service-data')


class ConfigError(UsageError):
    """A bad course.toml: the message names the key."""


@dataclass(frozen=True)
class Config:
    data: Path                       # submissions/, the SQLite database, the secret key
    points: str = 'standard'         # a points table's name in staff/points/, or a CSV path
    hidden: str | None = None        # the hidden fixture set
    isolation: str = 'auto'
    gradebook: str = 'last'          # 'last' on-time submission, or 'best'
    time: float = 60.0               # seconds per ordinary section
    memory: str = '2G'
    threads: int = 1
    training_time: float | None = None
    training_memory: str = '6G'
    timezone: str = 'UTC'
    soft_deadline: datetime | None = None
    hard_deadline: datetime | None = None
    uploads_per_hour: int = 20
    training_per_day: int = 1
    engine: str = 'local'            # 'local' or 'dask'
    scheduler: str = ''              # the Dask scheduler's address
    slots: int = 0                   # sections graded at a time by the local engine (0: the cores)
    database_url: str = ''
    secret_key: str = ''
    allowed_hosts: tuple = ('127.0.0.1', 'localhost')
    lease: float = 60.0              # seconds a dispatcher's claim lasts without a heartbeat
    heartbeat: float = 10.0
    max_failures: int = 3            # lost attempts (killed worker, expired lease) before 'error'
    path: Path | None = None         # the TOML file, if any

    @property
    def submissions_dir(self):
        return self.data / 'submissions'

    @property
    def database(self):
        """Django's DATABASES['default'] for database_url (default: SQLite in --data)."""
        url = self.database_url or os.environ.get('DATABASE_URL', '')
        if not url:
            return sqlite(self.data / 'service.sqlite3')
        if url.startswith('sqlite:///'):
            return sqlite(Path(url.removeprefix('sqlite:///')))
        if url.startswith(('postgres://', 'postgresql://')):
            return postgres(url)
        raise ConfigError(f"database_url {url!r}: give sqlite:///PATH or postgresql://USER@HOST/NAME")

    def deadlines(self, extension_hours=0):
        """(soft, hard) for a student with an extension; None where there is none."""
        extra = timedelta(hours=extension_hours)
        return tuple(deadline + extra if deadline else None
                     for deadline in (self.soft_deadline, self.hard_deadline))


def sqlite(path):
    return {'ENGINE': 'django.db.backends.sqlite3', 'NAME': str(path),
            'OPTIONS': {'transaction_mode': 'IMMEDIATE', 'timeout': 30,
                        'init_command': 'PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;'}}


def postgres(url):
    from urllib.parse import unquote, urlsplit
    parts = urlsplit(url)
    return {'ENGINE': 'django.db.backends.postgresql', 'NAME': parts.path.lstrip('/'),
            'USER': unquote(parts.username or ''), 'PASSWORD': unquote(parts.password or ''),
            'HOST': parts.hostname or '', 'PORT': str(parts.port or ''),
            'CONN_MAX_AGE': 60}


SECTIONS = {'course': ('points', 'hidden', 'isolation', 'gradebook'),
            'limits': ('time', 'memory', 'threads', 'training_time', 'training_memory'),
            'deadlines': ('timezone', 'soft', 'hard'),
            'quotas': ('uploads_per_hour', 'training_per_day'),
            'service': ('engine', 'scheduler', 'slots', 'database_url', 'secret_key',
                        'allowed_hosts', 'lease', 'heartbeat', 'max_failures')}


def parse_deadline(text, zone, key):
    try:
        return datetime.fromisoformat(str(text)).replace(tzinfo=zone)
    except ValueError:
        raise ConfigError(f"deadlines.{key} = {text!r}: give a date and time such as "
                          f"\"2026-12-20 23:59\"") from None


def load(path=None, data=None):
    """The Config of a TOML file (None: the defaults) with its data directory."""
    values = {}
    if path:
        try:
            document = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"{path}: {error}") from None
        for table, body in document.items():
            if table not in SECTIONS or not isinstance(body, dict):
                raise ConfigError(f"{path}: unknown table [{table}]; known: {', '.join(SECTIONS)}")
            for key, value in body.items():
                if key not in SECTIONS[table]:
                    raise ConfigError(f"{path}: unknown key {table}.{key}; known: "
                                      f"{', '.join(SECTIONS[table])}")
                values[key] = value
    try:
        zone = ZoneInfo(values.get('timezone', 'UTC'))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"deadlines.timezone {values['timezone']!r}: not a time zone "
                          f"such as Europe/Moscow") from None
    for key in ('soft', 'hard'):
        if key in values:
            values[f"{key}_deadline"] = parse_deadline(values.pop(key), zone, key)
    if values.get('gradebook', 'last') not in ('last', 'best'):
        raise ConfigError("course.gradebook: 'last' (the last on-time submission) or 'best'")
    if values.get('isolation', 'auto') not in ('auto', 'bwrap', 'unshare'):
        raise ConfigError("course.isolation: 'auto', 'bwrap' or 'unshare' (without a sandbox a "
                          "submission could read every student's files)")
    if values.get('engine', 'local') not in ('local', 'dask'):
        raise ConfigError("service.engine: 'local' or 'dask'")
    if values.get('engine') == 'dask' and not values.get('scheduler'):
        raise ConfigError("service.engine = 'dask' needs service.scheduler, the Dask "
                          "scheduler's address, e.g. \"tcp://10.0.0.5:8786\"")
    if 'allowed_hosts' in values:
        values['allowed_hosts'] = tuple(values['allowed_hosts'])
    config = Config(data=Path(data or DEFAULT_DATA).resolve(), path=path and Path(path).resolve(),
                    **values)
    check_data_directory(config.data)
    return config


def check_data_directory(data):
    """The data directory holds every student's submission: a sandboxed
    submission must not see it, so it may not sit where the sandbox shows
    (the system's and Python's directories)."""
    if inside := sandbox.shown(data):
        raise ConfigError(f"--data {data}: inside {inside}, which submissions can read; "
                          f"choose another directory")


def from_environment():
    """The Config that `./run.py serve` handed its processes through the environment."""
    return load(os.environ.get(CONFIG_ENV) or None, os.environ.get(DATA_ENV) or None)


def secret_key(config):
    """The configured SECRET_KEY, or one made on first start and kept in the data directory."""
    if config.secret_key:
        return config.secret_key
    path = config.data / 'secret_key'
    if not path.exists():
        config.data.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, 'w') as file:
            file.write(secrets.token_urlsafe(50))
        os.link(temporary, path) if not path.exists() else None
        temporary.unlink()
    return path.read_text().strip()
