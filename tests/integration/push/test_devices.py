"""Push devices: register (an upsert on the token), list and remove one's own, with field-naming validation."""

from __future__ import annotations

import uuid

import httpx

from tests.factories import bearer, make_operator, personal_token

APNS_TOKEN = "a1" * 32
SUBSCRIPTION = {
    "endpoint": "https://push.example.test/send/abc123",
    "keys": {
        "p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
        "auth": "tBHItJI5svbpez7KI4CCXg",
    },
}


async def test_devices_are_registered_once_per_token_listed_and_removed(http: httpx.AsyncClient, clean_db) -> None:
    ada = bearer(await personal_token(clean_db, await make_operator(clean_db, "Ada")))
    bob = bearer(await personal_token(clean_db, await make_operator(clean_db, "Bob")))
    phone = {"platform": "apns", "token": APNS_TOKEN, "appId": "com.example.switchboard", "name": "Ada's iPhone"}
    first = await http.post("/api/v1/me/devices", json=phone, headers=ada)
    assert first.status_code == 201, first.text
    body = first.json()
    assert {k: body[k] for k in ("platform", "tokenEnd", "appId", "name")} == {
        "platform": "apns",
        "tokenEnd": "a1a1a1a1",
        "appId": "com.example.switchboard",
        "name": "Ada's iPhone",
    }
    again = await http.post("/api/v1/me/devices", json={**phone, "name": "iPhone 17"}, headers=ada)
    assert (again.status_code, again.json()["id"], again.json()["name"]) == (201, body["id"], "iPhone 17")
    browser = await http.post(
        "/api/v1/me/devices", json={"platform": "webpush", "subscription": SUBSCRIPTION}, headers=ada
    )
    android = await http.post("/api/v1/me/devices", json={"platform": "fcm", "token": "fcm:tok-1"}, headers=ada)
    assert (browser.status_code, browser.json()["tokenEnd"], android.status_code) == (201, "d/abc123", 201)

    listed = await http.get("/api/v1/me/devices", headers=ada)
    assert [d["id"] for d in listed.json()["items"]] == [body["id"], browser.json()["id"], android.json()["id"]]
    assert (await http.get("/api/v1/me/devices", headers=bob)).json() == {"items": []}

    # Someone else's device is unknown to Bob; his own delete works.
    assert (await http.delete(f"/api/v1/me/devices/{body['id']}", headers=bob)).status_code == 404
    assert (await http.delete(f"/api/v1/me/devices/{body['id']}", headers=ada)).status_code == 204
    assert (await http.delete(f"/api/v1/me/devices/{body['id']}", headers=ada)).status_code == 404
    assert (await http.delete(f"/api/v1/me/devices/{uuid.uuid4()}", headers=ada)).status_code == 404
    listed = await http.get("/api/v1/me/devices", headers=ada)
    assert [d["platform"] for d in listed.json()["items"]] == ["webpush", "fcm"]

    # The same token registered by another operator is now theirs (one token, one install), under the same id.
    moved = await http.post("/api/v1/me/devices", json={"platform": "fcm", "token": "fcm:tok-1"}, headers=bob)
    assert (moved.status_code, moved.json()["id"]) == (201, android.json()["id"])
    assert [d["platform"] for d in (await http.get("/api/v1/me/devices", headers=ada)).json()["items"]] == ["webpush"]


async def test_bad_registrations_are_problems_naming_the_field(http: httpx.AsyncClient, clean_db) -> None:
    ada = bearer(await personal_token(clean_db, await make_operator(clean_db, "Ada")))
    cases = [
        ({"platform": "sms", "token": "x"}, "platform"),
        ({"platform": "apns"}, "token"),
        ({"platform": "apns", "token": "not-hex"}, "token"),
        ({"platform": "fcm", "token": "has spaces in it"}, "token"),
        ({"platform": "fcm", "subscription": SUBSCRIPTION}, "subscription"),
        ({"platform": "webpush", "token": "abc"}, "subscription"),
        ({"platform": "webpush", "subscription": SUBSCRIPTION, "token": "abc"}, "token"),
        ({"platform": "webpush", "subscription": {**SUBSCRIPTION, "endpoint": "ftp://x"}}, "subscription.endpoint"),
        (
            {"platform": "webpush", "subscription": {"endpoint": "https://x.test/1", "keys": {"auth": "a"}}},
            "subscription.keys.p256dh",
        ),
    ]
    for body, field in cases:
        response = await http.post("/api/v1/me/devices", json=body, headers=ada)
        assert response.status_code == 400, (body, response.text)
        problem = response.json()
        assert response.headers["content-type"] == "application/problem+json", body
        assert [error["field"] for error in problem["errors"]] == [field], (body, problem)
    assert (await http.get("/api/v1/me/devices", headers=ada)).json() == {"items": []}
