from django.apps import AppConfig


class LabelingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "labeling"
    verbose_name = "Crowdloop labeling"

    def ready(self):
        from labeling.services.hot import invalidation_connect

        invalidation_connect()
