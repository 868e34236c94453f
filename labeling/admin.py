from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import reverse

from labeling import models
from labeling.services import owner_tokens, sites, workers
from labeling.services.consensus import items_consensus_update, project_aggregate_enqueue

admin.site.site_header = "Crowdloop administration"
admin.site.site_title = "Crowdloop administration"
admin.site.index_title = "Projects, workers and sites"
admin.site.site_url = "/"


class DerivedAdmin(admin.ModelAdmin):
    """Rows the services derive (answers, consensus, known labels, items, predictions,
    runs): shown, never added, edited or deleted here, since a change made beside the
    services would skip the consensus, the counts and the item statuses that follow."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class LabelClassInline(admin.TabularInline):
    model = models.LabelClass
    extra = 0


# --- Crowd workers: admission, rules, status changes (always through the service) ------------


class ProjectMembershipInline(admin.TabularInline):
    model = models.ProjectMembership
    extra = 0
    raw_id_fields = ["worker"]
    readonly_fields = ["created_at"]


class QualityRulesInline(admin.StackedInline):
    model = models.QualityRules
    extra = 0
    max_num = 1


class WorkerDecisionInline(admin.TabularInline):
    model = models.WorkerDecision
    fk_name = "worker"
    extra = 0
    can_delete = False
    fields = [
        "created_at", "project", "previous_status", "new_status", "reason", "automatic", "decided_by", "reversed_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


def _workers_set_status(modeladmin, request, queryset, status):
    changed = 0
    for worker in queryset:
        decision = workers.worker_status_change(
            worker, status, reason=f"set to {status} by an administrator", automatic=False, by=request.user
        )
        changed += decision is not None
    modeladmin.message_user(request, f"{changed} worker(s) now {status}.", messages.SUCCESS)


@admin.action(description="Ban selected workers (their answers stop counting)")
def workers_ban(modeladmin, request, queryset):
    _workers_set_status(modeladmin, request, queryset, models.WorkerStatus.BANNED)


@admin.action(description="Pause selected workers")
def workers_pause(modeladmin, request, queryset):
    _workers_set_status(modeladmin, request, queryset, models.WorkerStatus.PAUSED)


@admin.action(description="Reinstate selected workers (active; answers count again)")
def workers_reinstate(modeladmin, request, queryset):
    _workers_set_status(modeladmin, request, queryset, models.WorkerStatus.ACTIVE)


@admin.action(description="Re-run truth inference for the selected projects")
def projects_aggregate(modeladmin, request, queryset):
    for project in queryset:
        project_aggregate_enqueue(project.pk)
    modeladmin.message_user(request, f"Truth inference queued for {queryset.count()} project(s).", messages.SUCCESS)


@admin.register(models.Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "data_kind", "owner", "answers_per_item", "gold_share", "consensus_threshold", "created_at"]
    list_filter = ["data_kind"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [LabelClassInline, QualityRulesInline, ProjectMembershipInline]
    actions = [projects_aggregate]


@admin.register(models.LabelClass)
class LabelClassAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "position"]
    list_filter = ["project"]


@admin.action(description="Recompute the consensus of the selected items from their answers")
def items_consensus_recompute(modeladmin, request, queryset):
    ids = list(queryset.values_list("pk", flat=True))
    items_consensus_update(ids)
    modeladmin.message_user(request, f"Consensus recomputed for {len(ids)} item(s).", messages.SUCCESS)


@admin.register(models.Item)
class ItemAdmin(DerivedAdmin):
    list_display = ["id", "project", "status", "split", "answer_count", "source_name", "created_at"]
    list_filter = ["project", "status", "split"]
    search_fields = ["source_name", "checksum", "text"]
    list_select_related = ["project"]
    actions = [items_consensus_recompute]


@admin.register(models.KnownLabel)
class KnownLabelAdmin(DerivedAdmin):
    list_display = ["item", "label", "source", "created_by", "created_at"]
    list_filter = ["source", "item__project"]
    raw_id_fields = ["item"]
    list_select_related = ["label", "created_by"]


@admin.register(models.EvaluationTruth)
class EvaluationTruthAdmin(admin.ModelAdmin):
    list_display = ["item", "label"]
    list_filter = ["item__project"]
    raw_id_fields = ["item"]
    list_select_related = ["label"]


@admin.register(models.Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "user", "status", "answer_total", "control_total", "control_correct", "skill", "last_seen_at"]
    list_filter = ["kind", "status"]
    search_fields = ["user__username"]
    list_select_related = ["user"]
    # Status changes go through the actions (logged, consensus recomputed), not the form.
    readonly_fields = ["status", "answer_total", "control_total", "control_correct", "skill", "last_seen_at"]
    actions = [workers_ban, workers_pause, workers_reinstate]
    inlines = [WorkerDecisionInline]


@admin.register(models.Answer)
class AnswerAdmin(DerivedAdmin):
    list_display = ["id", "worker", "item", "label", "source", "is_control", "time_taken_ms", "created_at"]
    list_filter = ["source", "is_control", "item__project"]
    raw_id_fields = ["worker", "item"]
    list_select_related = ["worker", "label"]


@admin.register(models.Consensus)
class ConsensusAdmin(DerivedAdmin):
    list_display = ["item", "label", "confidence", "n_answers", "method", "updated_at"]
    list_filter = ["method", "item__project"]
    raw_id_fields = ["item"]
    list_select_related = ["label"]


@admin.register(models.PseudoLabel)
class PseudoLabelAdmin(DerivedAdmin):
    list_display = ["item", "label", "confidence", "source", "accepted", "updated_at"]
    list_filter = ["source", "accepted", "item__project"]
    raw_id_fields = ["item"]
    list_select_related = ["label"]


@admin.register(models.TrainingRun)
class TrainingRunAdmin(DerivedAdmin):
    list_display = ["id", "project", "status", "device", "epoch", "n_epochs", "created_at", "finished_at"]
    list_filter = ["status", "project", "device"]


@admin.register(models.Prediction)
class PredictionAdmin(DerivedAdmin):
    list_display = ["item", "run", "label", "confidence"]
    list_filter = ["run__project"]
    raw_id_fields = ["item", "run"]
    list_select_related = ["label"]


@admin.register(models.ProjectStats)
class ProjectStatsAdmin(DerivedAdmin):
    list_display = ["project", "items_total", "known_total", "answers_total", "refreshed_at"]


@admin.register(models.ImportJob)
class ImportJobAdmin(DerivedAdmin):
    list_display = ["id", "project", "source_name", "status", "processed", "total", "created_at", "finished_at"]
    list_filter = ["status", "project"]


# --- Widget sites ------------------------------------------------------------------------------


class SiteAdminForm(forms.ModelForm):
    allowed_hostnames = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), required=False,
        help_text="One per line: shop.example.com, or *.example.com for its subdomains. No scheme, no port.",
    )

    class Meta:
        model = models.Site
        fields = [
            "name", "owner", "projects", "allowed_hostnames", "mode", "difficulty_auto", "control_items", "pass_share",
            "min_solve_ms",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["allowed_hostnames"] = "\n".join(self.instance.allowed_hostnames or [])

    def clean_allowed_hostnames(self):
        return sites.hostnames_clean(self.cleaned_data.get("allowed_hostnames") or "")

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("mode") == models.SiteMode.NORMAL and not cleaned.get("allowed_hostnames"):
            self.add_error("allowed_hostnames", "A site needs at least one allowed hostname.")
        return cleaned


@admin.register(models.Site)
class SiteAdmin(admin.ModelAdmin):
    """Sites that embed the widget. A new secret is shown once, on the page that
    follows creating a site or rotating its secret; only its hash is stored."""

    form = SiteAdminForm
    list_display = [
        "name", "sitekey", "mode", "hostnames", "difficulty_auto", "control_items", "pass_share", "min_solve_ms",
        "challenges_issued", "challenges_passed", "pass_rate", "created_at", "secret_rotated_at",
    ]
    list_filter = ["mode", "projects", "created_at"]
    search_fields = ["name", "sitekey"]
    readonly_fields = ["sitekey", "challenges_issued", "challenges_passed", "created_at", "secret_rotated_at"]
    filter_horizontal = ["projects"]
    actions = ["rotate_secret"]

    @admin.display(description="allowed hostnames")
    def hostnames(self, site):
        return ", ".join(site.allowed_hostnames or []) or "—"

    @admin.display(description="pass rate")
    def pass_rate(self, site):
        if not site.challenges_issued:
            return "—"
        return f"{site.challenges_passed / site.challenges_issued:.0%}"

    def save_model(self, request, obj, form, change):
        """Through :func:`sites.site_update` / :func:`sites.site_create`; the projects
        follow in ``save_related``."""
        fields = {name: form.cleaned_data[name] for name in SiteAdminForm.Meta.fields if name != "projects"}
        if change:
            sites.site_update(obj, **fields)
            return
        site, secret = sites.site_create(**fields)
        vars(obj).update(vars(site))  # the admin goes on with ``obj``: make it the new row
        obj._new_secret = secret

    def response_add(self, request, obj, post_url_continue=None):
        return self._secrets_page(request, [(obj, obj._new_secret)], "Site created")

    @admin.action(description="Rotate the secret of the selected sites (the old one stops working at once)")
    def rotate_secret(self, request, queryset):
        normal = queryset.filter(mode=models.SiteMode.NORMAL)
        if normal.count() < queryset.count():
            self.message_user(request, "Test-key sites keep their documented secrets; they were left alone.", messages.WARNING)
        rotated = [(site, sites.site_secret_rotate(site)) for site in normal]
        if not rotated:
            return None
        return self._secrets_page(request, rotated, "New secrets")

    def _secrets_page(self, request, pairs, title):
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "pairs": pairs,
            "opts": self.model._meta,
            "changelist_url": reverse("admin:labeling_site_changelist"),
        }
        return TemplateResponse(request, "widget/admin_site_secrets.html", context)


# --- Crowd workers: decisions and rules --------------------------------------------------------


@admin.register(models.WorkerDecision)
class WorkerDecisionAdmin(admin.ModelAdmin):
    list_display = [
        "created_at", "worker", "project", "previous_status", "new_status", "automatic", "reason", "reversed_at",
    ]
    list_filter = ["automatic", "new_status", "project"]
    search_fields = ["worker__user__username", "reason"]
    list_select_related = ["worker__user", "project"]
    readonly_fields = [
        "worker", "project", "previous_status", "new_status", "reason", "automatic", "decided_by", "reversed_at",
        "created_at",
    ]
    actions = ["decisions_reverse"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Reverse selected decisions (the worker gets the previous status back)")
    def decisions_reverse(self, request, queryset):
        for decision in queryset.order_by("-created_at"):
            try:
                workers.worker_decision_reverse(decision, by=request.user)
            except workers.DecisionError as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                self.message_user(request, f"Decision {decision.pk} reversed.", messages.SUCCESS)


@admin.register(models.QualityRules)
class QualityRulesAdmin(admin.ModelAdmin):
    list_display = [
        "project", "control_window", "min_control_answers", "min_control_accuracy", "min_answer_ms", "max_fast_share",
        "max_skips_in_row", "action",
    ]


# --- Owners' API tokens: listed and revoked here, made by their owners -------------------------


@admin.register(models.OwnerToken)
class OwnerTokenAdmin(admin.ModelAdmin):
    """Tokens are made on the owner's token page or with ``token_create`` (the only
    moment the token is shown); here staff see and revoke them."""

    list_display = ["id", "user", "name", "prefix", "scoped", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["scoped", "revoked_at"]
    search_fields = ["user__username", "name", "prefix"]
    list_select_related = ["user"]
    readonly_fields = ["user", "name", "prefix", "scoped", "projects", "created_at", "last_used_at", "revoked_at"]
    exclude = ["key_hash"]
    actions = ["tokens_revoke"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke the selected tokens (they stop working at once)")
    def tokens_revoke(self, request, queryset):
        revoked = sum(owner_tokens.owner_token_revoke(token) for token in queryset)
        self.message_user(request, f"{revoked} token(s) revoked.", messages.SUCCESS)


@admin.register(models.AccessibilityPass)
class AccessibilityPassAdmin(admin.ModelAdmin):
    """Passes for visitors who cannot see the images; tick *revoked* to end one."""

    list_display = ("id", "created_at", "verified_at", "expires_at", "revoked")
    list_filter = ("revoked",)
    readonly_fields = ("id", "email_digest", "created_at", "verified_at", "expires_at")
    fields = (*readonly_fields, "revoked")
