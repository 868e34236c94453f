import pytest

from labeling.models import PseudoLabel
from labeling.services.demo import demo_project_create
from labeling.services.semisupervised import project_semisupervised

pytestmark = pytest.mark.django_db


def test_with_three_labels_per_class_no_pseudo_label_is_accepted():
    project, _ = demo_project_create()
    run = project_semisupervised(project)
    assert run.result["human_labels"] == 30 and run.result["accepted"] == 0
    assert not PseudoLabel.objects.filter(item__project=project, accepted=True).exists()
    assert PseudoLabel.objects.filter(item__project=project).count() == 1370
