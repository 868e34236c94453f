"""The dashboard's forms: filters of the list pages and the inputs of its actions."""

from django import forms

from labeling.dashboard import aggregates, selectors
from labeling.models import ItemStatus, Split, WorkerKind, WorkerStatus


class WorkerFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "any status"), *WorkerStatus.choices], required=False)
    kind = forms.ChoiceField(choices=[("", "any kind"), *WorkerKind.choices], required=False)
    min_controls = forms.IntegerField(min_value=0, max_value=100000, required=False, label="min. control answers")
    q = forms.CharField(max_length=150, required=False, label="name or #id")
    sort = forms.ChoiceField(
        choices=[(f"{sign}{key}", key) for key in selectors.WORKER_SORTS for sign in ("-", "")], required=False
    )


class WorkerStatusForm(forms.Form):
    status = forms.ChoiceField(choices=WorkerStatus.choices)
    reason = forms.CharField(max_length=2000, widget=forms.TextInput, help_text="Kept on record with the decision.")
    everywhere = forms.BooleanField(required=False, label="platform-wide (every project; staff only)")


class ItemFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "any status"), *ItemStatus.choices], required=False)
    source = forms.ChoiceField(choices=[("", "any source"), *aggregates.SOURCES], required=False)
    split = forms.ChoiceField(choices=[("", "any split"), *Split.choices], required=False)
    min_confidence = forms.FloatField(min_value=0, max_value=1, required=False, label="confidence ≥")
    max_confidence = forms.FloatField(min_value=0, max_value=1, required=False, label="confidence ≤")
    disputed = forms.BooleanField(required=False, label="disputed only")
    q = forms.CharField(max_length=200, required=False, label="text, file or #id")
    sort = forms.ChoiceField(
        choices=[
            ("id", "oldest first"),
            ("-id", "newest first"),
            ("-answers", "most answers"),
            ("uncertain", "least certain"),
            ("-priority", "highest priority"),
        ],
        required=False,
    )


class LabelForm(forms.Form):
    label = forms.ModelChoiceField(queryset=None, empty_label=None)

    def __init__(self, project, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["label"].queryset = project.label_classes.order_by("position")


class TrainingForm(forms.Form):
    epochs = forms.IntegerField(min_value=1, max_value=500, required=False, help_text="Leave empty for the default.")
