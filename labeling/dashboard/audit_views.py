"""The label audit's dashboard page and the owner's actions on its decisions."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from labeling import selectors as core_selectors
from labeling.dashboard import audit_selectors, forms
from labeling.models import AuditAction, AuditOutcome
from labeling.services import audit as audit_services


def _context(request, project, **extra):
    return {"project": project, "tab": "audit", "live_url": reverse("dashboard:live", args=[project.slug]), **extra}


@login_required
@require_GET
def audit(request, slug):
    project = core_selectors.project_get_managed(request.user, slug)
    outcome = request.GET.get("outcome") if request.GET.get("outcome") in AuditOutcome.values else None
    return render(
        request,
        "dashboard/audit.html",
        _context(
            request, project,
            summary=audit_selectors.audit_summary(project),
            decisions=audit_selectors.audit_decisions(project, outcome=outcome),
            outcome=outcome, outcomes=AuditOutcome.choices, label_form=forms.LabelForm(project),
            pending=AuditOutcome.PENDING, suspended=AuditAction.SUSPENDED,
            max_share_pct=round(100 * audit_services.MAX_SHARE),
        ),
    )


@login_required
@require_POST
def audit_start(request, slug):
    project = core_selectors.project_get_managed(request.user, slug)
    audit_services.audit_queue(project)
    messages.success(request, "Audit round requested; it runs on the cpu queue when no other audit of this project runs.")
    return redirect("dashboard:audit", slug=project.slug)


@login_required
@require_POST
def audit_reverse(request, slug, decision_id):
    project = core_selectors.project_get_managed(request.user, slug)
    decision = audit_selectors.audit_decision_get(project, decision_id)
    try:
        audit_services.decision_reverse(decision, user=request.user)
    except audit_services.AuditRefused as exc:
        messages.error(request, f"Not changed: {exc}.")
    else:
        messages.success(request, f"Reversed: item #{decision.item_id} keeps its label “{decision.given_label.name}”.")
    return redirect("dashboard:audit", slug=project.slug)


@login_required
@require_POST
def audit_gold_resolve(request, slug, decision_id):
    project = core_selectors.project_get_managed(request.user, slug)
    decision = audit_selectors.audit_decision_get(project, decision_id)
    form = forms.LabelForm(project, request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the project's labels.")
        return redirect("dashboard:audit", slug=project.slug)
    try:
        decision = audit_services.gold_resolve(decision, form.cleaned_data["label"], user=request.user)
    except audit_services.AuditRefused as exc:
        messages.error(request, f"Not changed: {exc}.")
    else:
        messages.success(request, f"Gold item #{decision.item_id} {decision.get_outcome_display().lower()}; it serves as control again.")
    return redirect("dashboard:audit", slug=project.slug)
