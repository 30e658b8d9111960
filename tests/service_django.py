"""Django set up for in-process tests of the checking service: a fresh data
directory (SQLite), or the PostgreSQL database of DATABASE_URL when it is set."""
import os
import tempfile

import pytest

django = pytest.importorskip('django', reason='the checking service needs Django: ./install.sh')


def setup():
    """Configures Django once per test process; returns the data directory."""
    from django.apps import apps
    if not apps.ready:
        os.environ['NN_SERVICE_DATA'] = tempfile.mkdtemp(prefix='nn-service-test-')
        os.environ.pop('NN_SERVICE_CONFIG', None)
        os.environ['DJANGO_SETTINGS_MODULE'] = 'staff.service.settings'
        os.mkdir(os.path.join(os.environ['NN_SERVICE_DATA'], 'static'))  # served by whitenoise
        django.setup()
        from django.core.management import call_command
        call_command('migrate', verbosity=0)
    return os.environ['NN_SERVICE_DATA']
