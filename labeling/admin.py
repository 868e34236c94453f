from django.contrib import admin

from labeling import models


class LabelClassInline(admin.TabularInline):
    model = models.LabelClass
    extra = 0


@admin.register(models.Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "data_kind", "owner", "answers_per_item", "gold_share", "consensus_threshold", "created_at"]
    list_filter = ["data_kind"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [LabelClassInline]


@admin.register(models.LabelClass)
class LabelClassAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "position"]
    list_filter = ["project"]


@admin.register(models.Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "status", "split", "answer_count", "source_name", "created_at"]
    list_filter = ["project", "status", "split"]
    search_fields = ["source_name", "checksum", "text"]
    readonly_fields = ["checksum", "created_at"]
    list_select_related = ["project"]


@admin.register(models.KnownLabel)
class KnownLabelAdmin(admin.ModelAdmin):
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


@admin.register(models.Answer)
class AnswerAdmin(admin.ModelAdmin):
    list_display = ["id", "worker", "item", "label", "source", "is_control", "time_taken_ms", "created_at"]
    list_filter = ["source", "is_control", "item__project"]
    raw_id_fields = ["worker", "item"]
    list_select_related = ["worker", "label"]


@admin.register(models.Consensus)
class ConsensusAdmin(admin.ModelAdmin):
    list_display = ["item", "label", "confidence", "n_answers", "method", "updated_at"]
    list_filter = ["method", "item__project"]
    raw_id_fields = ["item"]
    list_select_related = ["label"]


@admin.register(models.PseudoLabel)
class PseudoLabelAdmin(admin.ModelAdmin):
    list_display = ["item", "label", "confidence", "source", "accepted", "updated_at"]
    list_filter = ["source", "accepted", "item__project"]
    raw_id_fields = ["item"]
    list_select_related = ["label"]


@admin.register(models.TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "status", "device", "epoch", "n_epochs", "created_at", "finished_at"]
    list_filter = ["status", "project", "device"]
    readonly_fields = ["history", "metrics", "heartbeat_at"]


@admin.register(models.Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ["item", "run", "label", "confidence"]
    list_filter = ["run__project"]
    raw_id_fields = ["item", "run"]
    list_select_related = ["label"]


@admin.register(models.ProjectStats)
class ProjectStatsAdmin(admin.ModelAdmin):
    list_display = ["project", "items_total", "known_total", "answers_total", "refreshed_at"]


@admin.register(models.ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "source_name", "status", "processed", "total", "created_at", "finished_at"]
    list_filter = ["status", "project"]
    readonly_fields = ["report", "error"]
