"""./run.py serve: the checking service (web server, dispatcher).

    ./run.py serve                         everything on this machine: http://127.0.0.1:8000/
    ./run.py serve web --host 0.0.0.0      only the web server (waitress)
    ./run.py serve dispatcher              only the dispatcher (it grades on the engine)
    ./run.py serve manage import_roster roster.csv passwords.csv
                                           a Django management command (createsuperuser, ...)

Every process takes the same --data DIR (SQLite database, stored submissions;
created with its schema on first start) and --config course.toml, given
before the process name. SIGTERM or
Ctrl-C stops the service within 10 s; running sections go back to the queue.
"""
import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from staff.service import config as course

STOP_GRACE = 8.0  # seconds a process gets to stop before it is killed
INSTRUCTOR = 'instructor'


def add_arguments(parser):
    parser.description = __doc__.split('\n\n', 1)[1]
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument('process', nargs='?', default='all',
                        choices=('all', 'web', 'dispatcher', 'manage'),
                        help='which process to run (default: all of them)')
    parser.add_argument('arguments', nargs=argparse.REMAINDER,
                        help='manage: the command and its arguments')
    parser.add_argument('--host', default='127.0.0.1',
                        help='web server address (default %(default)s)')
    parser.add_argument('--port', type=int, default=8000,
                        help='web server port (default %(default)s)')
    parser.add_argument('--data', type=Path, default=course.DEFAULT_DATA, metavar='DIR',
                        help='the data directory (default: %(default)s)')
    parser.add_argument('--config', type=Path, metavar='FILE', help="the course's settings (TOML)")
    parser.add_argument('--runs', choices=('all', 'ordinary', 'training'), default='all',
                        help='dispatcher: which runs it takes (default: all; training runs '
                             'take the machine alone, so they may get a machine of their own)')


def setup(args):
    """Loads the config into this process's environment and Django; migrates the database."""
    config = course.load(args.config, args.data)
    config.data.mkdir(parents=True, exist_ok=True)
    os.environ[course.DATA_ENV] = str(config.data)
    if config.path:
        os.environ[course.CONFIG_ENV] = str(config.path)
    os.environ['DJANGO_SETTINGS_MODULE'] = 'staff.service.settings'
    try:
        import django
    except ImportError:
        raise course.ConfigError("the service needs its packages: python3 -m pip install -r "
                                 "requirements.txt (./install.sh)") from None
    django.setup()
    from django.core.management import call_command
    call_command('migrate', verbosity=0)
    return config


def first_instructor(config):
    """Creates the first instructor account on first start; returns how to log in."""
    from django.contrib.auth.models import User

    from staff.service.management.commands.import_roster import initial_password
    from staff.service.models import Profile
    file = config.data / 'instructor-password.txt'
    if not User.objects.filter(is_superuser=True).exists():
        password = initial_password()
        user = User.objects.create_superuser(INSTRUCTOR, '', password)
        Profile.objects.create(user=user, name='Instructor')
        descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, 'w') as handle:
            handle.write(password + '\n')
    if file.exists():
        return (f"log in as '{INSTRUCTOR}' with the password in {file} (you choose your own at "
                f"first login); import students with: ./run.py serve --data {config.data} manage "
                f"import_roster roster.csv passwords.csv")
    return "log in with an instructor account (./run.py serve manage createsuperuser makes one)"


def web(args, config):
    from django.core.management import call_command
    from waitress.server import create_server
    call_command('collectstatic', interactive=False, verbosity=0)  # before whitenoise looks
    from staff.service.wsgi import application
    try:
        server = create_server(application, host=args.host, port=args.port, threads=8,
                               max_request_body_size=8 << 20, ident='nn-kit')
    except OSError as error:
        raise course.ConfigError(f"--host {args.host} --port {args.port}: {error.strerror}; "
                                 f"is the service running already?") from None
    print(f"web server: http://{args.host}:{args.port}/", flush=True)
    server.run()
    return 0


def child_command(process, args):
    command = [sys.executable, str(Path(__file__).resolve().parents[2] / 'run.py'), 'serve',
               '--host', args.host, '--port', str(args.port), '--data', str(args.data),
               '--runs', args.runs]
    return command + (['--config', str(args.config)] if args.config else []) + [process]


def everything(args, config):
    """The web server and the dispatcher as child processes, stopped together."""
    print(first_instructor(config), flush=True)
    children = {name: subprocess.Popen(child_command(name, args), stdin=subprocess.DEVNULL)
                for name in ('web', 'dispatcher')}
    print(f"checking service at http://{args.host}:{args.port}/ (data: {config.data}); "
          f"Ctrl-C stops it", flush=True)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    try:
        while not stopping and all(child.poll() is None for child in children.values()):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    failed = [name for name, child in children.items() if child.poll() not in (None, 0)]
    stop(children.values())
    if failed:
        print(f"./run.py serve: the {' and '.join(failed)} process stopped; the service is down",
              file=sys.stderr)
        return 1
    return 0


def stop(children):
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for child in children:
        try:
            child.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main(args):
    config = setup(args)
    if args.process == 'manage':
        from django.core.management import execute_from_command_line
        execute_from_command_line(['./run.py serve manage', *args.arguments])
        return 0
    if args.process == 'web':
        return web(args, config)
    if args.process == 'dispatcher':
        from staff.service import dispatcher
        return dispatcher.main(config, args.runs)
    return everything(args, config)
