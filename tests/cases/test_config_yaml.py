"""Queue configs as code: YAML export and import, the `apply_queue_configs` folder command, and
`/api/v1/queues/<slug>/config.yaml` (drafts for editors, publishing for ops)."""

from __future__ import annotations

import json

import pytest
import yaml
from django.core.management import CommandError, call_command

from apps.cases import services
from apps.cases.models import Queue, QueueConfig
from apps.core.errors import ApplicationError
from tests.factories.accounts import UserFactory
from tests.factories.cases import REFUND_SCHEMA, QueueFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/queues/{}/config.yaml"
VALID = """slug: returns
name: Returns
initial_status: new
transitions: {new: [resolved], resolved: [closed], closed: []}
fields_schema: {type: object, properties: {rma: {type: string}}, required: [rma]}
routing: {offer_timeout_seconds: 30}
"""


@pytest.fixture
def refunds():
    return QueueFactory(slug="refunds", config__fields_schema=REFUND_SCHEMA)


def test_export_then_import_round_trips_as_a_new_version(refunds):
    text = services.queue_config_export_yaml(refunds)
    assert text.startswith("# Queue 'refunds', config version 1.")
    data = yaml.safe_load(text)
    assert list(data)[:3] == ["slug", "name", "fields_schema"] and data["fields_schema"] == REFUND_SCHEMA
    config = services.queue_config_import_yaml(text=text, user=None, publish=True)
    assert (config.version, config.is_active) == (2, True)
    assert services.queue_config_document(config) == services.queue_config_document(
        QueueConfig.objects.get(queue=refunds, version=1))


def test_import_refuses_bad_documents_with_paths_and_alias_bombs():
    with pytest.raises(ApplicationError) as bad:
        text = VALID.replace("offer_timeout_seconds: 30", "offer_timeout_seconds: 1")
        services.queue_config_import_yaml(text=text, user=None, publish=False)
    assert list(bad.value.errors) == ["routing.offer_timeout_seconds"]
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(6))
    with pytest.raises(ApplicationError) as refused:
        services.queue_config_import_yaml(text=bomb, user=None, publish=False)
    assert "aliases are expanded" in refused.value.errors["document"][0]
    assert not Queue.objects.filter(slug="returns").exists()


def test_the_folder_command_applies_all_or_nothing(tmp_path, capsys):
    (tmp_path / "returns.yaml").write_text(VALID)
    (tmp_path / "broken.yml").write_text(VALID.replace("returns", "broken").replace("resolved: [closed]",
                                                                                     "resolved: [nowhere]"))
    with pytest.raises(CommandError, match="1 of 2 files are invalid"):
        call_command("apply_queue_configs", str(tmp_path))
    assert "broken.yml: error: transitions" in capsys.readouterr().err
    assert not Queue.objects.filter(slug__in=["returns", "broken"]).exists()

    with pytest.raises(CommandError, match="the valid ones were applied"):
        call_command("apply_queue_configs", str(tmp_path), "--partial")
    config = QueueConfig.objects.get(queue__slug="returns")
    assert (config.version, config.is_active, config.queue.name) == (1, True, "Returns")

    (tmp_path / "broken.yml").unlink()
    call_command("apply_queue_configs", str(tmp_path), "--draft")
    assert QueueConfig.objects.get(queue__slug="returns", version=2).state == "draft"
    assert "returns.yaml: returns version 2 saved as draft." in capsys.readouterr().out


def test_the_api_exports_saves_drafts_and_lets_only_ops_publish(api_client, refunds):
    editor = UserFactory(username="yaml-editor", roles=["queue-config-editor"])
    api_client.force_authenticate(editor)
    exported = api_client.get(URL.format("refunds"))
    assert exported.status_code == 200 and exported["Content-Type"].startswith("application/yaml")
    text = exported.content.decode()
    assert api_client.get(URL.format("nope")).status_code == 404

    def put(body: str, query: str = ""):
        return api_client.put(URL.format("refunds") + query, data=json.dumps({"document": body}),
                              content_type="application/json")

    draft = put(text)
    assert draft.status_code == 201, draft.content
    assert (draft.json()["version"], draft.json()["state"], draft.json()["is_active"]) == (2, "draft", False)
    assert put(text, "?publish=1").status_code == 403
    raw = api_client.put(URL.format("refunds"), data=text.encode(), content_type="application/yaml")
    assert raw.status_code == 201 and raw.json()["version"] == 3
    bad = put(text.replace("initial_status: new", "initial_status: limbo"))
    assert bad.status_code == 400 and "initial_status" in bad.json()["errors"]
    elsewhere = put(text.replace("slug: refunds", "slug: other"))
    assert elsewhere.status_code == 400 and "slug" in elsewhere.json()["errors"]

    api_client.force_authenticate(UserFactory(username="yaml-ops", roles=["ops"]))
    published = put(text.replace("first_response_minutes: 60", "first_response_minutes: 15"), "?publish=1")
    assert published.status_code == 201 and published.json()["is_active"] is True
    assert QueueConfig.objects.get(queue=refunds, is_active=True).sla == {"first_response_minutes": 15}
    assert QueueConfig.objects.filter(queue=refunds).count() == 4
