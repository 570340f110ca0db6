from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote

import httpx

from ...client import AuthenticatedClient, Client
from ...types import Response, UNSET
from ... import errors

from ...models.error_envelope import ErrorEnvelope
from ...models.link_status import LinkStatus
from ...types import UNSET, Unset
from typing import cast



def _get_kwargs(
    provider: str,
    *,
    actor_id: str,
    actor_type: str | Unset = UNSET,

) -> dict[str, Any]:
    

    

    params: dict[str, Any] = {}

    params["actor_id"] = actor_id

    params["actor_type"] = actor_type


    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}


    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/oauth/{provider}/status".format(provider=quote(str(provider), safe=""),),
        "params": params,
    }


    return _kwargs



def _parse_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> ErrorEnvelope | LinkStatus | None:
    if response.status_code == 200:
        response_200 = LinkStatus.from_dict(response.json())



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


def _build_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> Response[ErrorEnvelope | LinkStatus]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    provider: str,
    *,
    client: AuthenticatedClient,
    actor_id: str,
    actor_type: str | Unset = UNSET,

) -> Response[ErrorEnvelope | LinkStatus]:
    """ Whether an actor is linked at a provider.

    Args:
        provider (str):
        actor_id (str):
        actor_type (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorEnvelope | LinkStatus]
     """


    kwargs = _get_kwargs(
        provider=provider,
actor_id=actor_id,
actor_type=actor_type,

    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)

def sync(
    provider: str,
    *,
    client: AuthenticatedClient,
    actor_id: str,
    actor_type: str | Unset = UNSET,

) -> ErrorEnvelope | LinkStatus | None:
    """ Whether an actor is linked at a provider.

    Args:
        provider (str):
        actor_id (str):
        actor_type (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorEnvelope | LinkStatus
     """


    return sync_detailed(
        provider=provider,
client=client,
actor_id=actor_id,
actor_type=actor_type,

    ).parsed

async def asyncio_detailed(
    provider: str,
    *,
    client: AuthenticatedClient,
    actor_id: str,
    actor_type: str | Unset = UNSET,

) -> Response[ErrorEnvelope | LinkStatus]:
    """ Whether an actor is linked at a provider.

    Args:
        provider (str):
        actor_id (str):
        actor_type (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorEnvelope | LinkStatus]
     """


    kwargs = _get_kwargs(
        provider=provider,
actor_id=actor_id,
actor_type=actor_type,

    )

    response = await client.get_async_httpx_client().request(
        **kwargs
    )

    return _build_response(client=client, response=response)

async def asyncio(
    provider: str,
    *,
    client: AuthenticatedClient,
    actor_id: str,
    actor_type: str | Unset = UNSET,

) -> ErrorEnvelope | LinkStatus | None:
    """ Whether an actor is linked at a provider.

    Args:
        provider (str):
        actor_id (str):
        actor_type (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorEnvelope | LinkStatus
     """


    return (await asyncio_detailed(
        provider=provider,
client=client,
actor_id=actor_id,
actor_type=actor_type,

    )).parsed
