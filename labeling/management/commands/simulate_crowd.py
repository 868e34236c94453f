import json
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from labeling.crowd.accounts import crowd_accounts_provision, crowd_people
from labeling.crowd.clocks import Beat, RealClock, VirtualClock
from labeling.crowd.connectors import client_connector, http_connector
from labeling.crowd.evaluation import crowd_evaluate, format_report
from labeling.crowd.simulation import DEFAULT_SHARES, CrowdSpec, SiteAccess, crowd_run, shares_parse
from labeling.crowd.transport import ClientTransport, HttpTransport
from labeling.models import Project, Site
from labeling.services.demo import DEMO_SITEKEY, DEMO_SLUG, demo_site_secret

SITE_SERVER_ADDRESS = "192.0.2.10"


class Command(BaseCommand):
    help = (
        "Let a simulated crowd label a project through the HTTP API: registered workers through the "
        "worker API, visitors through the widget of a site (the demo site by default). Against a "
        "running server (--url), or in-process on a simulated clock with Celery eager (--in-process)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running server")
        parser.add_argument("--in-process", action="store_true",
                            help="no server: Django's test client, a simulated clock, Celery tasks run inline")
        parser.add_argument("--project", default=DEMO_SLUG)
        parser.add_argument("--budget", type=int, default=1000, help="answers the crowd gives in all")
        parser.add_argument("--workers", type=int, default=8, help="registered workers")
        parser.add_argument("--visitor-seats", type=int, default=4, help="widget visitors at a time (0: none)")
        parser.add_argument("--mix", default=",".join(f"{k}={v}" for k, v in DEFAULT_SHARES.items()),
                            help="shares of kinds: honest, spammer, same_answer, too_fast, colluder")
        parser.add_argument("--accuracy", default="0.6,0.95", help="range of honest people's accuracy")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--sitekey", default=None, help="widget site (default: the demo site)")
        parser.add_argument("--secret", default=None, help="that site's secret (the demo site's is derived)")
        parser.add_argument("--speed", type=float, default=1.0, help="real clock only: people wait N times less")
        parser.add_argument("--forwarded-for", action="store_true",
                            help="each person sends their own address in X-Forwarded-For (server behind a "
                                 "trusted proxy: CROWDLOOP_TRUSTED_PROXIES)")
        parser.add_argument("--max-minutes", type=float, default=None, help="stop after this much wall time")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, **options):
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"no project {options['project']!r} (run `manage.py demo --no-serve` for the demo)")
        low, _, high = options["accuracy"].partition(",")
        try:
            spec = CrowdSpec(
                budget=options["budget"], workers=options["workers"], visitor_seats=options["visitor_seats"],
                shares=shares_parse(options["mix"]), accuracy_range=(float(low), float(high or low)),
                seed=options["seed"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        site, access = self._site(options)
        workers = crowd_people(spec, run_tag=f"{options['seed']}")
        password = crowd_accounts_provision(project, workers)
        in_process = options["in_process"]
        if in_process:
            connect = client_connector()
            if access is not None:
                access.server = ClientTransport(remote_addr=SITE_SERVER_ADDRESS, user_agent="site-server")
            clock, beat = VirtualClock(), Beat(settings.CELERY_BEAT_SCHEDULE)
        else:
            connect = http_connector(options["url"], forwarded_for=options["forwarded_for"])
            if access is not None:
                access.server = HttpTransport(options["url"], user_agent="site-server")
            clock, beat = RealClock(speed=options["speed"]), None
        stop = threading.Event()
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
        try:
            with _celery_inline(in_process):
                ledger = crowd_run(
                    spec, slug=project.slug, site=access, connect=connect, clock=clock, workers=workers,
                    password=password, beat=beat, stop=stop,
                    max_wall_s=options["max_minutes"] * 60 if options["max_minutes"] else None,
                )
        finally:
            signal.signal(signal.SIGINT, previous)
        evaluation = crowd_evaluate(project, ledger.people, site)
        if options["json"]:
            self.stdout.write(json.dumps({"crowd": ledger.summary(), "evaluation": evaluation}, indent=2, default=str))
        else:
            self.stdout.write("\n".join(format_report(ledger, evaluation)))

    def _site(self, options):
        if options["visitor_seats"] <= 0:
            return None, None
        sitekey = options["sitekey"] or DEMO_SITEKEY
        site = Site.objects.filter(sitekey=sitekey).first()
        if site is None:
            raise CommandError(f"no site with key {sitekey!r}; give --visitor-seats 0 for workers only")
        secret = options["secret"] or (demo_site_secret() if sitekey == DEMO_SITEKEY else None)
        if not secret:
            raise CommandError("--secret is needed for a site other than the demo site")
        return site, SiteAccess(sitekey=sitekey, secret=secret)


class _celery_inline:
    """Run Celery tasks in this process while the crowd runs in-process."""

    def __init__(self, enabled):
        self.enabled = enabled

    def __enter__(self):
        from labeling.celery import app

        if self.enabled:
            self.previous = app.conf.task_always_eager
            app.conf.task_always_eager = True
        return self

    def __exit__(self, *exc):
        from labeling.celery import app

        if self.enabled:
            app.conf.task_always_eager = self.previous
