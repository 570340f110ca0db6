from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote

import httpx

from ...client import AuthenticatedClient, Client
from ...types import Response, UNSET
from ... import errors

from ...models.error_envelope import ErrorEnvelope
from ...models.token_view import TokenView
from ...types import UNSET, Unset
from typing import cast



def _get_kwargs(
    id: str,
    *,
    min_ttl: int | Unset = UNSET,
    force_refresh: bool | Unset = UNSET,

) -> dict[str, Any]:
    

    

    params: dict[str, Any] = {}

    params["min_ttl"] = min_ttl

    params["force_refresh"] = force_refresh


    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}


    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/connections/{id}/token".format(id=quote(str(id), safe=""),),
        "params": params,
    }


    return _kwargs



def _parse_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> ErrorEnvelope | TokenView | None:
    if response.status_code == 200:
        response_200 = TokenView.from_dict(response.json())



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

    if response.status_code == 409:
        response_409 = ErrorEnvelope.from_dict(response.json())



        return response_409

    if response.status_code == 422:
        response_422 = ErrorEnvelope.from_dict(response.json())



        return response_422

    if response.status_code == 503:
        response_503 = ErrorEnvelope.from_dict(response.json())



        return response_503

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> Response[ErrorEnvelope | TokenView]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    id: str,
    *,
    client: AuthenticatedClient,
    min_ttl: int | Unset = UNSET,
    force_refresh: bool | Unset = UNSET,

) -> Response[ErrorEnvelope | TokenView]:
    """ A fresh access token for the connection.

    Args:
        id (str):
        min_ttl (int | Unset):
        force_refresh (bool | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorEnvelope | TokenView]
     """


    kwargs = _get_kwargs(
        id=id,
min_ttl=min_ttl,
force_refresh=force_refresh,

    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)

def sync(
    id: str,
    *,
    client: AuthenticatedClient,
    min_ttl: int | Unset = UNSET,
    force_refresh: bool | Unset = UNSET,

) -> ErrorEnvelope | TokenView | None:
    """ A fresh access token for the connection.

    Args:
        id (str):
        min_ttl (int | Unset):
        force_refresh (bool | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorEnvelope | TokenView
     """


    return sync_detailed(
        id=id,
client=client,
min_ttl=min_ttl,
force_refresh=force_refresh,

    ).parsed

async def asyncio_detailed(
    id: str,
    *,
    client: AuthenticatedClient,
    min_ttl: int | Unset = UNSET,
    force_refresh: bool | Unset = UNSET,

) -> Response[ErrorEnvelope | TokenView]:
    """ A fresh access token for the connection.

    Args:
        id (str):
        min_ttl (int | Unset):
        force_refresh (bool | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorEnvelope | TokenView]
     """


    kwargs = _get_kwargs(
        id=id,
min_ttl=min_ttl,
force_refresh=force_refresh,

    )

    response = await client.get_async_httpx_client().request(
        **kwargs
    )

    return _build_response(client=client, response=response)

async def asyncio(
    id: str,
    *,
    client: AuthenticatedClient,
    min_ttl: int | Unset = UNSET,
    force_refresh: bool | Unset = UNSET,

) -> ErrorEnvelope | TokenView | None:
    """ A fresh access token for the connection.

    Args:
        id (str):
        min_ttl (int | Unset):
        force_refresh (bool | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorEnvelope | TokenView
     """


    return (await asyncio_detailed(
        id=id,
client=client,
min_ttl=min_ttl,
force_refresh=force_refresh,

    )).parsed
