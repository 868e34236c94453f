"""The dashboard's sites page: the widget sites serving a project, suspected bots, and
rotating a site's secret. Same conventions as :mod:`labeling.dashboard.views`."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from labeling.dashboard import selectors
from labeling.dashboard.views import _context, _project
from labeling.services.sites import site_secret_rotate


@login_required
def sites(request, slug):
    project = _project(request, slug)
    site_rows = selectors.project_sites(project)
    for site in site_rows:
        site.pass_rate = site.challenges_passed / site.challenges_issued if site.challenges_issued else None
        site.may_rotate = _may_rotate(request.user, site)
    bots = selectors.suspected_bots(project)
    for worker in bots:
        worker.display_name = selectors.worker_name(worker)
    return render(
        request,
        "dashboard/sites.html",
        _context(request, project, "sites", sites=site_rows, bots=bots),
    )


def _may_rotate(user, site):
    return user.is_staff or site.owner_id == user.pk


@login_required
@require_POST
@never_cache
def site_rotate(request, slug, site_id):
    project = _project(request, slug)
    site = next((s for s in selectors.project_sites(project) if s.pk == site_id), None)
    if site is None or not _may_rotate(request.user, site):
        messages.error(request, "Only the site's owner or staff can rotate its secret.")
        return redirect("dashboard:sites", slug=project.slug)
    secret = site_secret_rotate(site)
    # The secret is shown once, in this response, and never stored in a cookie or session.
    response = render(
        request,
        "dashboard/site_secret.html",
        _context(request, project, "sites", site=site, secret=secret),
    )
    response["Cache-Control"] = "no-store"
    return response
