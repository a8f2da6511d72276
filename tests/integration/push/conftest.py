"""The push stand-ins (APNs, FCM, Web Push) and settings pointing Switchboard's real clients at them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.settings import Settings
from tests.conftest import RunningApi, run_api
from tests.standins.push import ApnsStandIn, FcmStandIn, WebPushStandIn
from tests.support.push import KeyPair, es256_key, tls_certificate

APNS_KEY_ID, APNS_TEAM_ID, APNS_TOPIC = "KEY1234567", "TEAM123456", "com.example.switchboard"


@dataclass
class PushServices:
    apns: ApnsStandIn
    fcm: FcmStandIn
    web: WebPushStandIn
    vapid: KeyPair
    apns_certificate: Path  # what the APNs client is told to trust


@pytest.fixture
def push_services(tmp_path: Path) -> Iterator[PushServices]:
    apns_key = es256_key()
    tls = tls_certificate(tmp_path)
    apns = ApnsStandIn(
        public_key_pem=apns_key.public_pem, key_id=APNS_KEY_ID, team_id=APNS_TEAM_ID, topic=APNS_TOPIC, tls=tls
    )
    (tmp_path / "AuthKey.p8").write_text(apns_key.private_pem)
    with apns, FcmStandIn() as fcm, WebPushStandIn() as web:
        yield PushServices(apns, fcm, web, es256_key(), tls[0])


@pytest.fixture
def pushing(settings: Settings, push_services: PushServices, tmp_path: Path) -> Settings:
    """The test's settings with every push platform configured and pointed at its stand-in."""
    return settings.model_copy(
        update={
            "apns_key": str(tmp_path / "AuthKey.p8"),  # a path, as a mounted secret file is given
            "apns_key_id": APNS_KEY_ID,
            "apns_team_id": APNS_TEAM_ID,
            "apns_base_url": push_services.apns.base_url,
            "apns_ca_file": str(push_services.apns_certificate),  # the stand-in's self-signed certificate
            "fcm_service_account": json.dumps(push_services.fcm.service_account()),
            "fcm_base_url": push_services.fcm.base_url,
            "vapid_private_key": push_services.vapid.private_pem,
            "vapid_subject": "mailto:ops@example.test",
        }
    )


@pytest.fixture
async def push_api(pushing: Settings) -> AsyncIterator[RunningApi]:
    async with run_api(pushing) as running:
        yield running
