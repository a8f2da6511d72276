"""What ``/scim/v2`` publishes about itself (RFC 7643 sections 5-7), built from the scim2-models resources."""

from __future__ import annotations

from typing import Any

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    ETag,
    Filter,
    Group,
    Meta,
    Patch,
    ResourceType,
    Schema,
    ServiceProviderConfig,
    Sort,
    User,
)

CONTENT_TYPE = "application/scim+json"
# The most resources one list answer holds (``count`` above it is lowered to it, RFC 7644 section 3.4.2.4).
MAX_RESULTS = 200
RESOURCES: dict[str, type[User] | type[Group]] = {"User": User, "Group": Group}


def service_provider_config(base: str) -> ServiceProviderConfig:
    return ServiceProviderConfig(
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=False),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="Personal access token",
                description="A Switchboard personal access token with the 'scim' scope, made by an administrator",
                primary=True,
            )
        ],
        meta=Meta(resource_type="ServiceProviderConfig", location=f"{base}/ServiceProviderConfig"),
    )


def resource_types(base: str) -> list[ResourceType]:
    types = []
    for name, model in RESOURCES.items():
        resource_type = ResourceType.from_resource(model)
        resource_type.meta = Meta(resource_type="ResourceType", location=f"{base}/ResourceTypes/{name}")
        types.append(resource_type)
    return types


def schemas(base: str) -> list[Schema]:
    published = []
    for model in RESOURCES.values():
        schema = model.to_schema()
        schema.meta = Meta(resource_type="Schema", location=f"{base}/Schemas/{schema.id}")
        published.append(schema)
    return published


def dump(value: Any, context: Context = Context.RESOURCE_QUERY_RESPONSE, **options: Any) -> dict[str, Any]:
    """A SCIM object as it goes on the wire."""
    return value.model_dump(scim_ctx=context, **options)  # type: ignore[no-any-return]
