from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote

import httpx

from ...client import AuthenticatedClient, Client
from ...types import Response, UNSET
from ... import errors

from ...models.connection_view import ConnectionView
from ...models.error_envelope import ErrorEnvelope
from ...models.import_connection import ImportConnection
from typing import cast



def _get_kwargs(
    *,
    body: ImportConnection,

) -> dict[str, Any]:
    headers: dict[str, Any] = {}


    

    

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/connections",
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs



def _parse_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> ConnectionView | ErrorEnvelope | None:
    if response.status_code == 201:
        response_201 = ConnectionView.from_dict(response.json())



        return response_201

    if response.status_code == 400:
        response_400 = ErrorEnvelope.from_dict(response.json())



        return response_400

    if response.status_code == 401:
        response_401 = ErrorEnvelope.from_dict(response.json())



        return response_401

    if response.status_code == 404:
        response_404 = ErrorEnvelope.from_dict(response.json())



        return response_404

    if response.status_code == 413:
        response_413 = ErrorEnvelope.from_dict(response.json())



        return response_413

    if response.status_code == 422:
        response_422 = ErrorEnvelope.from_dict(response.json())



        return response_422

    if response.status_code == 502:
        response_502 = ErrorEnvelope.from_dict(response.json())



        return response_502

    if response.status_code == 503:
        response_503 = ErrorEnvelope.from_dict(response.json())



        return response_503

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> Response[ConnectionView | ErrorEnvelope]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    body: ImportConnection,

) -> Response[ConnectionView | ErrorEnvelope]:
    """ Import a connection from existing tokens, or connect an actor through a Google service
    account with domain-wide delegation (a first token is minted before anything is stored).

    Args:
        body (ImportConnection): Existing tokens to import, or a service account to act through
            (Google Workspace
            domain-wide delegation: give `service_account`, `subject` and `scopes` instead of tokens).

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ConnectionView | ErrorEnvelope]
     """


    kwargs = _get_kwargs(
        body=body,

    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)

def sync(
    *,
    client: AuthenticatedClient,
    body: ImportConnection,

) -> ConnectionView | ErrorEnvelope | None:
    """ Import a connection from existing tokens, or connect an actor through a Google service
    account with domain-wide delegation (a first token is minted before anything is stored).

    Args:
        body (ImportConnection): Existing tokens to import, or a service account to act through
            (Google Workspace
            domain-wide delegation: give `service_account`, `subject` and `scopes` instead of tokens).

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ConnectionView | ErrorEnvelope
     """


    return sync_detailed(
        client=client,
body=body,

    ).parsed

async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    body: ImportConnection,

) -> Response[ConnectionView | ErrorEnvelope]:
    """ Import a connection from existing tokens, or connect an actor through a Google service
    account with domain-wide delegation (a first token is minted before anything is stored).

    Args:
        body (ImportConnection): Existing tokens to import, or a service account to act through
            (Google Workspace
            domain-wide delegation: give `service_account`, `subject` and `scopes` instead of tokens).

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ConnectionView | ErrorEnvelope]
     """


    kwargs = _get_kwargs(
        body=body,

    )

    response = await client.get_async_httpx_client().request(
        **kwargs
    )

    return _build_response(client=client, response=response)

async def asyncio(
    *,
    client: AuthenticatedClient,
    body: ImportConnection,

) -> ConnectionView | ErrorEnvelope | None:
    """ Import a connection from existing tokens, or connect an actor through a Google service
    account with domain-wide delegation (a first token is minted before anything is stored).

    Args:
        body (ImportConnection): Existing tokens to import, or a service account to act through
            (Google Workspace
            domain-wide delegation: give `service_account`, `subject` and `scopes` instead of tokens).

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ConnectionView | ErrorEnvelope
     """


    return (await asyncio_detailed(
        client=client,
body=body,

    )).parsed
