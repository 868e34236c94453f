"""Settings come from the environment; production refuses unsafe defaults."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_manage(args, env_extra, tmp_path):
    ignored = {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "CROWDLOOP_ENV", "CROWDLOOP_TRUST_PROXY_SSL_HEADER"}
    env = {k: v for k, v in os.environ.items() if k not in ignored}
    env.update({"CROWDLOOP_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "labeling.settings"}, **env_extra)
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_development_generates_a_secret_key_once_into_a_private_file(tmp_path):
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    first = run_manage(["shell", "--verbosity", "0", "-c", code], {}, tmp_path)
    second = run_manage(["shell", "--verbosity", "0", "-c", code], {}, tmp_path)
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "secret_key"
    assert first.stdout.strip() == second.stdout.strip() == key_file.read_text().strip()
    assert len(key_file.read_text().strip()) >= 50
    assert key_file.stat().st_mode & 0o077 == 0


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    result = run_manage(["check"], {"CROWDLOOP_ENV": "production", "ALLOWED_HOSTS": "labels.example.com"}, tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_settings_pass_check_deploy_without_warnings(tmp_path):
    env = {
        "CROWDLOOP_ENV": "production",
        "SECRET_KEY": "kT3-vQ9_zR7mW2pL8xN4bY6cH1jF5dS0gA" * 2,
        "ALLOWED_HOSTS": "labels.example.com",
    }
    result = run_manage(["check", "--deploy", "--fail-level", "WARNING"], env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_believes_x_forwarded_proto_only_when_told_a_proxy_sets_it(tmp_path):
    env = {
        "CROWDLOOP_ENV": "production",
        "SECRET_KEY": "kT3-vQ9_zR7mW2pL8xN4bY6cH1jF5dS0gA" * 2,
        "ALLOWED_HOSTS": "labels.example.com",
    }
    code = (
        "from django.conf import settings; from django.test import RequestFactory; "
        "request = RequestFactory().get('/', HTTP_X_FORWARDED_PROTO='https'); "
        "print(settings.SECURE_PROXY_SSL_HEADER, request.is_secure())"
    )
    plain = run_manage(["shell", "--verbosity", "0", "-c", code], env, tmp_path)
    trusted = run_manage(
        ["shell", "--verbosity", "0", "-c", code], {**env, "CROWDLOOP_TRUST_PROXY_SSL_HEADER": "1"}, tmp_path
    )
    assert plain.stdout.split() == ["None", "False"], plain.stderr
    assert trusted.stdout.split() == ["('HTTP_X_FORWARDED_PROTO',", "'https')", "True"], trusted.stderr
    deploy = run_manage(
        ["check", "--deploy", "--fail-level", "WARNING"], {**env, "CROWDLOOP_TRUST_PROXY_SSL_HEADER": "1"}, tmp_path
    )
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr


def test_the_embedded_default_uses_sqlite_and_a_filesystem_broker(tmp_path):
    code = (
        "from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.CELERY_BROKER_TRANSPORT_OPTIONS['data_folder_in'])"
    )
    result = run_manage(["shell", "--verbosity", "0", "-c", code], {}, tmp_path)
    engine, broker, folder = result.stdout.split()
    assert engine == "django.db.backends.sqlite3" and broker == "filesystem://"
    assert folder.startswith(str(tmp_path))


def test_database_and_redis_urls_switch_the_stack(tmp_path):
    code = (
        "from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.DATABASES['default']['NAME'], s.CELERY_BROKER_URL, "
        "s.CACHES['default']['BACKEND'], s.DATABASES['default']['CONN_HEALTH_CHECKS'])"
    )
    env = {"DATABASE_URL": "postgres://crowd@db.internal:5432/crowdloop", "REDIS_URL": "redis://cache.internal:6379/1"}
    result = run_manage(["shell", "--verbosity", "0", "-c", code], env, tmp_path)
    assert result.stdout.split() == [
        "django.db.backends.postgresql",
        "crowdloop",
        "redis://cache.internal:6379/1",
        "labeling.cache.ResilientRedisCache",
        "True",
    ]
