from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote

import httpx

from ...client import AuthenticatedClient, Client
from ...types import Response, UNSET
from ... import errors

from ...models.connection_list import ConnectionList
from ...models.error_envelope import ErrorEnvelope
from ...types import UNSET, Unset
from typing import cast



def _get_kwargs(
    *,
    provider: str | Unset = UNSET,
    actor_id: str | Unset = UNSET,
    actor_type: str | Unset = UNSET,
    limit: int | Unset = UNSET,

) -> dict[str, Any]:
    

    

    params: dict[str, Any] = {}

    params["provider"] = provider

    params["actor_id"] = actor_id

    params["actor_type"] = actor_type

    params["limit"] = limit


    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}


    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/connections",
        "params": params,
    }


    return _kwargs



def _parse_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> ConnectionList | ErrorEnvelope | None:
    if response.status_code == 200:
        response_200 = ConnectionList.from_dict(response.json())



        return response_200

    if response.status_code == 400:
        response_400 = ErrorEnvelope.from_dict(response.json())



        return response_400

    if response.status_code == 401:
        response_401 = ErrorEnvelope.from_dict(response.json())



        return response_401

    if response.status_code == 404:
        response_404 = ErrorEnvelope.from_dict(response.json())



        return response_404

    if response.status_code == 422:
        response_422 = ErrorEnvelope.from_dict(response.json())



        return response_422

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> Response[ConnectionList | ErrorEnvelope]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    provider: str | Unset = UNSET,
    actor_id: str | Unset = UNSET,
    actor_type: str | Unset = UNSET,
    limit: int | Unset = UNSET,

) -> Response[ConnectionList | ErrorEnvelope]:
    """ List the workspace's connections.

    Args:
        provider (str | Unset):
        actor_id (str | Unset):
        actor_type (str | Unset):
        limit (int | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ConnectionList | ErrorEnvelope]
     """


    kwargs = _get_kwargs(
        provider=provider,
actor_id=actor_id,
actor_type=actor_type,
limit=limit,

    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)

def sync(
    *,
    client: AuthenticatedClient,
    provider: str | Unset = UNSET,
    actor_id: str | Unset = UNSET,
    actor_type: str | Unset = UNSET,
    limit: int | Unset = UNSET,

) -> ConnectionList | ErrorEnvelope | None:
    """ List the workspace's connections.

    Args:
        provider (str | Unset):
        actor_id (str | Unset):
        actor_type (str | Unset):
        limit (int | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ConnectionList | ErrorEnvelope
     """


    return sync_detailed(
        client=client,
provider=provider,
actor_id=actor_id,
actor_type=actor_type,
limit=limit,

    ).parsed

async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    provider: str | Unset = UNSET,
    actor_id: str | Unset = UNSET,
    actor_type: str | Unset = UNSET,
    limit: int | Unset = UNSET,

) -> Response[ConnectionList | ErrorEnvelope]:
    """ List the workspace's connections.

    Args:
        provider (str | Unset):
        actor_id (str | Unset):
        actor_type (str | Unset):
        limit (int | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ConnectionList | ErrorEnvelope]
     """


    kwargs = _get_kwargs(
        provider=provider,
actor_id=actor_id,
actor_type=actor_type,
limit=limit,

    )

    response = await client.get_async_httpx_client().request(
        **kwargs
    )

    return _build_response(client=client, response=response)

async def asyncio(
    *,
    client: AuthenticatedClient,
    provider: str | Unset = UNSET,
    actor_id: str | Unset = UNSET,
    actor_type: str | Unset = UNSET,
    limit: int | Unset = UNSET,

) -> ConnectionList | ErrorEnvelope | None:
    """ List the workspace's connections.

    Args:
        provider (str | Unset):
        actor_id (str | Unset):
        actor_type (str | Unset):
        limit (int | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ConnectionList | ErrorEnvelope
     """


    return (await asyncio_detailed(
        client=client,
provider=provider,
actor_id=actor_id,
actor_type=actor_type,
limit=limit,

    )).parsed
