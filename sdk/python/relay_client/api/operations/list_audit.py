from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote

import httpx

from ...client import AuthenticatedClient, Client
from ...types import Response, UNSET
from ... import errors

from ...models.audit_page import AuditPage
from ...models.error_envelope import ErrorEnvelope
from ...types import UNSET, Unset
from typing import cast



def _get_kwargs(
    *,
    connection_id: str | Unset = UNSET,
    actor_id: str | Unset = UNSET,
    action: str | Unset = UNSET,
    from_: str | Unset = UNSET,
    to: str | Unset = UNSET,
    cursor: str | Unset = UNSET,
    limit: int | Unset = UNSET,

) -> dict[str, Any]:
    

    

    params: dict[str, Any] = {}

    params["connection_id"] = connection_id

    params["actor_id"] = actor_id

    params["action"] = action

    params["from"] = from_

    params["to"] = to

    params["cursor"] = cursor

    params["limit"] = limit


    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}


    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/audit",
        "params": params,
    }


    return _kwargs



def _parse_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> AuditPage | ErrorEnvelope | None:
    if response.status_code == 200:
        response_200 = AuditPage.from_dict(response.json())



        return response_200

    if response.status_code == 400:
        response_400 = ErrorEnvelope.from_dict(response.json())



        return response_400

    if response.status_code == 401:
        response_401 = ErrorEnvelope.from_dict(response.json())



        return response_401

    if response.status_code == 403:
        response_403 = ErrorEnvelope.from_dict(response.json())



        return response_403

    if response.status_code == 422:
        response_422 = ErrorEnvelope.from_dict(response.json())



        return response_422

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> Response[AuditPage | ErrorEnvelope]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    connection_id: str | Unset = UNSET,
    actor_id: str | Unset = UNSET,
    action: str | Unset = UNSET,
    from_: str | Unset = UNSET,
    to: str | Unset = UNSET,
    cursor: str | Unset = UNSET,
    limit: int | Unset = UNSET,

) -> Response[AuditPage | ErrorEnvelope]:
    """ The workspace's audit records, newest first (admin keys only).

    Args:
        connection_id (str | Unset):
        actor_id (str | Unset):
        action (str | Unset):
        from_ (str | Unset):
        to (str | Unset):
        cursor (str | Unset):
        limit (int | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[AuditPage | ErrorEnvelope]
     """


    kwargs = _get_kwargs(
        connection_id=connection_id,
actor_id=actor_id,
action=action,
from_=from_,
to=to,
cursor=cursor,
limit=limit,

    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)

def sync(
    *,
    client: AuthenticatedClient,
    connection_id: str | Unset = UNSET,
    actor_id: str | Unset = UNSET,
    action: str | Unset = UNSET,
    from_: str | Unset = UNSET,
    to: str | Unset = UNSET,
    cursor: str | Unset = UNSET,
    limit: int | Unset = UNSET,

) -> AuditPage | ErrorEnvelope | None:
    """ The workspace's audit records, newest first (admin keys only).

    Args:
        connection_id (str | Unset):
        actor_id (str | Unset):
        action (str | Unset):
        from_ (str | Unset):
        to (str | Unset):
        cursor (str | Unset):
        limit (int | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        AuditPage | ErrorEnvelope
     """


    return sync_detailed(
        client=client,
connection_id=connection_id,
actor_id=actor_id,
action=action,
from_=from_,
to=to,
cursor=cursor,
limit=limit,

    ).parsed

async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    connection_id: str | Unset = UNSET,
    actor_id: str | Unset = UNSET,
    action: str | Unset = UNSET,
    from_: str | Unset = UNSET,
    to: str | Unset = UNSET,
    cursor: str | Unset = UNSET,
    limit: int | Unset = UNSET,

) -> Response[AuditPage | ErrorEnvelope]:
    """ The workspace's audit records, newest first (admin keys only).

    Args:
        connection_id (str | Unset):
        actor_id (str | Unset):
        action (str | Unset):
        from_ (str | Unset):
        to (str | Unset):
        cursor (str | Unset):
        limit (int | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[AuditPage | ErrorEnvelope]
     """


    kwargs = _get_kwargs(
        connection_id=connection_id,
actor_id=actor_id,
action=action,
from_=from_,
to=to,
cursor=cursor,
limit=limit,

    )

    response = await client.get_async_httpx_client().request(
        **kwargs
    )

    return _build_response(client=client, response=response)

async def asyncio(
    *,
    client: AuthenticatedClient,
    connection_id: str | Unset = UNSET,
    actor_id: str | Unset = UNSET,
    action: str | Unset = UNSET,
    from_: str | Unset = UNSET,
    to: str | Unset = UNSET,
    cursor: str | Unset = UNSET,
    limit: int | Unset = UNSET,

) -> AuditPage | ErrorEnvelope | None:
    """ The workspace's audit records, newest first (admin keys only).

    Args:
        connection_id (str | Unset):
        actor_id (str | Unset):
        action (str | Unset):
        from_ (str | Unset):
        to (str | Unset):
        cursor (str | Unset):
        limit (int | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        AuditPage | ErrorEnvelope
     """


    return (await asyncio_detailed(
        client=client,
connection_id=connection_id,
actor_id=actor_id,
action=action,
from_=from_,
to=to,
cursor=cursor,
limit=limit,

    )).parsed
