"""The settings reference (docs/running.md's table, deploy/env.example) is generated and kept current."""

from __future__ import annotations

from service import settings_docs
from service.settings import Settings

HOW = "regenerate with `make settings-docs` (or `python -m service.settings_docs`) and commit the result"


def test_running_md_table_is_current() -> None:
    committed = settings_docs.RUNNING_MD.read_text()
    assert committed.count(settings_docs.START) == 1 and committed.count(settings_docs.END) == 1
    wanted = settings_docs.splice(committed, settings_docs.render_table())
    assert committed == wanted, f"docs/running.md's settings table is out of date: {HOW}"


def test_env_example_is_current() -> None:
    committed = settings_docs.ENV_EXAMPLE.read_text()
    assert committed == settings_docs.render_env_example(), f"deploy/env.example is out of date: {HOW}"


def test_every_setting_has_a_description() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not (field.description or "").strip()]
    assert missing == [], f"give these settings a Field(description=...) in service/settings.py: {missing}"


def test_every_setting_is_documented_once_in_both_files() -> None:
    table = settings_docs.render_table()
    example = settings_docs.render_env_example()
    for name in Settings.model_fields:
        variable = name.upper()
        assert table.count(f"| `{variable}`") == 1, variable
        assert sum(line.lstrip("# ").startswith(f"{variable}=") for line in example.splitlines()) == 1, variable


def test_secrets_show_no_default_and_required_settings_say_so() -> None:
    rows = {var.name: var for var in settings_docs.variables()}
    assert rows["SECRET_KEY"].default == "required, secret"
    assert rows["OIDC_CLIENT_SECRET"].default == "secret"
    assert rows["AI_API_KEY"].default == "secret"
    assert rows["S3_SECRET_ACCESS_KEY"].default == "secret"
    assert rows["DATABASE_URL"].default == "required"
    assert rows["WIDGET_MAX_BODY_BYTES"].default == "`65536`"
    assert rows["WIDGET_MAX_BODY_BYTES"].kind == "integer, >= 1024"
    assert rows["OUTBOX_RETRY_BASE_SECONDS"].aliases == ("WEBHOOK_RETRY_BASE_SECONDS",)
    assert "# AI_API_KEY=\n" in settings_docs.render_env_example()


def test_check_mode_reports_the_committed_files_current() -> None:
    assert settings_docs.main(["--check"]) == 0


def test_check_mode_fails_on_drift(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(settings_docs, "render_table", lambda: "| drifted |\n")
    assert settings_docs.main(["--check"]) == 1
    assert capsys.readouterr().err == ("docs/running.md is out of date; run `python -m service.settings_docs`\n")
