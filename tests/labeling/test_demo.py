import os
import socket
import stat
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from PIL import Image

from labeling.bridge import digit_png
from labeling.models import EvaluationTruth, Item, ItemStatus, KnownLabel, Split
from labeling.services.demo import (
    PortBusy,
    demo_admin_create,
    demo_passwords_path,
    demo_worker_create,
    port_check,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _data_dir(settings, tmp_path):
    """The demo remembers its passwords under the data folder: a folder of each test's own."""
    settings.DATA_DIR = tmp_path


@pytest.fixture
def busy_port():
    """A port on which something listens, as a demo left running would."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        yield server.getsockname()[1]


def test_demo_no_serve_creates_the_digits_project_with_gold_and_evaluation_truth(capsys):
    from sklearn.datasets import load_digits

    call_command("demo", "--no-serve")
    out = capsys.readouterr().out
    assert "Admin account: admin / " in out
    password = out.split("Admin account: admin / ")[1].split()[0]
    assert get_user_model().objects.get(username="admin").check_password(password)

    items = Item.objects.filter(project__slug="digits")
    assert items.count() == 1797
    assert items.filter(split=Split.POOL).count() == 1400
    assert items.filter(split=Split.HOLDOUT).count() == 397
    assert EvaluationTruth.objects.filter(item__project__slug="digits").count() == 1797

    gold = KnownLabel.objects.filter(item__project__slug="digits").select_related("item", "label")
    assert len(gold) == 30
    assert all(k.item.split == Split.POOL and k.item.status == ItemStatus.LABELED for k in gold)
    per_class = {}
    for known in gold:
        per_class[known.label.name] = per_class.get(known.label.name, 0) + 1
        assert known.item.evaluation_truth.label_id == known.label_id
    assert per_class == {str(k): 3 for k in range(10)}

    # Row order is kept: the source name says which load_digits row an item is.
    digits = load_digits()
    item = items.get(source_name="load_digits[1500]")
    assert item.split == Split.HOLDOUT
    assert item.evaluation_truth.label.name == str(digits.target[1500])
    assert Image.open(item.image.path).size == (32, 32)


def test_running_the_demo_twice_adds_nothing_and_keeps_the_admin_password(capsys):
    call_command("demo", "--no-serve")
    call_command("demo", "--no-serve")
    out = capsys.readouterr().out
    assert "Admin account 'admin' exists" in out
    assert Item.objects.count() == 1797 and KnownLabel.objects.count() == 30


def test_a_digit_renders_dark_ink_on_white_and_downsamples_back_exactly():
    import io

    import numpy as np
    from sklearn.datasets import load_digits

    values = load_digits().images[7]
    image = Image.open(io.BytesIO(digit_png(values)))
    assert image.mode == "L" and image.size == (32, 32)
    back = np.asarray(image.resize((8, 8), Image.Resampling.BOX), dtype=float)
    assert np.allclose(16 - back * 16 / 255, values, atol=0.05)


def test_a_busy_port_stops_the_demo_before_it_prepares_or_announces_anything(busy_port, capsys):
    with pytest.raises(CommandError, match=f"port {busy_port} on 127.0.0.1 is already in use.*--port {busy_port + 1}"):
        call_command("demo", "--port", str(busy_port))
    assert capsys.readouterr().out == ""
    assert not get_user_model().objects.exists() and not Item.objects.exists()


def test_the_demo_command_exits_non_zero_with_the_reason_on_a_busy_port(busy_port, tmp_path):
    env = {**os.environ, "CROWDLOOP_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(django_settings.BASE_DIR / "manage.py"), "demo", "--port", str(busy_port)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode != 0
    assert f"The demo cannot start: port {busy_port} on 127.0.0.1 is already in use" in done.stderr
    assert "running" not in done.stdout


def test_the_port_check_passes_a_free_port_and_names_what_is_wrong_otherwise(busy_port):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    port_check("127.0.0.1", free)
    for host, port, message in (
        ("127.0.0.1", busy_port, "already in use"),
        ("127.0.0.1", 0, "not a TCP port"),
        ("127.0.0.1", 70000, "not a TCP port"),
        ("no-such-host.invalid", 8000, "cannot listen on 'no-such-host.invalid'"),
    ):
        with pytest.raises(PortBusy, match=message):
            port_check(host, port)


def test_the_demo_passwords_can_be_printed_again_and_reset(capsys):
    _, admin_password = demo_admin_create()
    worker_password = demo_worker_create()
    assert stat.S_IMODE(demo_passwords_path().stat().st_mode) == 0o600

    call_command("demo", "--passwords")
    out = capsys.readouterr().out
    assert f"Admin account: admin / {admin_password}" in out and f"Worker account: worker / {worker_password}" in out

    call_command("demo_passwords", "--reset")
    out = capsys.readouterr().out
    new_admin = out.split("Admin account: admin / ")[1].split()[0]
    new_worker = out.split("Worker account: worker / ")[1].split()[0]
    users = {user.username: user for user in get_user_model().objects.all()}
    assert users["admin"].check_password(new_admin) and not users["admin"].check_password(admin_password)
    assert users["worker"].check_password(new_worker) and new_worker != worker_password
    call_command("demo_passwords")
    assert f"admin / {new_admin}" in capsys.readouterr().out


def test_a_password_changed_by_hand_is_reported_unknown_not_printed_wrong(capsys):
    admin, _ = demo_admin_create()
    admin.set_password("chosen-by-hand-1")
    admin.save()
    call_command("demo_passwords")
    out = capsys.readouterr().out
    assert "Admin account: admin / (unknown" in out and "--reset" in out
    assert "Worker account" not in out


def test_demo_passwords_before_the_demo_says_to_run_it_first(capsys):
    call_command("demo_passwords")
    assert "run `./crowdloop demo` first" in capsys.readouterr().out
