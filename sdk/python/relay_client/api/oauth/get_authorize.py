from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote

import httpx

from ...client import AuthenticatedClient, Client
from ...types import Response, UNSET
from ... import errors

from ...models.authorize_response import AuthorizeResponse
from ...models.error_envelope import ErrorEnvelope
from ...types import UNSET, Unset
from typing import cast



def _get_kwargs(
    provider: str,
    *,
    actor_id: str,
    actor_type: str | Unset = UNSET,
    scopes: str | Unset = UNSET,
    return_to: str | Unset = UNSET,
    login_hint: str | Unset = UNSET,
    expected_subject: str | Unset = UNSET,
    expected_email: str | Unset = UNSET,
    app_state: str | Unset = UNSET,

) -> dict[str, Any]:
    

    

    params: dict[str, Any] = {}

    params["actor_id"] = actor_id

    params["actor_type"] = actor_type

    params["scopes"] = scopes

    params["return_to"] = return_to

    params["login_hint"] = login_hint

    params["expected_subject"] = expected_subject

    params["expected_email"] = expected_email

    params["app_state"] = app_state


    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}


    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/oauth/{provider}/authorize".format(provider=quote(str(provider), safe=""),),
        "params": params,
    }


    return _kwargs



def _parse_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> AuthorizeResponse | ErrorEnvelope | None:
    if response.status_code == 200:
        response_200 = AuthorizeResponse.from_dict(response.json())



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


def _build_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> Response[AuthorizeResponse | ErrorEnvelope]:
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
    scopes: str | Unset = UNSET,
    return_to: str | Unset = UNSET,
    login_hint: str | Unset = UNSET,
    expected_subject: str | Unset = UNSET,
    expected_email: str | Unset = UNSET,
    app_state: str | Unset = UNSET,

) -> Response[AuthorizeResponse | ErrorEnvelope]:
    """ Start a connect flow for an actor.

    Args:
        provider (str):
        actor_id (str):
        actor_type (str | Unset):
        scopes (str | Unset):
        return_to (str | Unset):
        login_hint (str | Unset):
        expected_subject (str | Unset):
        expected_email (str | Unset):
        app_state (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[AuthorizeResponse | ErrorEnvelope]
     """


    kwargs = _get_kwargs(
        provider=provider,
actor_id=actor_id,
actor_type=actor_type,
scopes=scopes,
return_to=return_to,
login_hint=login_hint,
expected_subject=expected_subject,
expected_email=expected_email,
app_state=app_state,

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
    scopes: str | Unset = UNSET,
    return_to: str | Unset = UNSET,
    login_hint: str | Unset = UNSET,
    expected_subject: str | Unset = UNSET,
    expected_email: str | Unset = UNSET,
    app_state: str | Unset = UNSET,

) -> AuthorizeResponse | ErrorEnvelope | None:
    """ Start a connect flow for an actor.

    Args:
        provider (str):
        actor_id (str):
        actor_type (str | Unset):
        scopes (str | Unset):
        return_to (str | Unset):
        login_hint (str | Unset):
        expected_subject (str | Unset):
        expected_email (str | Unset):
        app_state (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        AuthorizeResponse | ErrorEnvelope
     """


    return sync_detailed(
        provider=provider,
client=client,
actor_id=actor_id,
actor_type=actor_type,
scopes=scopes,
return_to=return_to,
login_hint=login_hint,
expected_subject=expected_subject,
expected_email=expected_email,
app_state=app_state,

    ).parsed

async def asyncio_detailed(
    provider: str,
    *,
    client: AuthenticatedClient,
    actor_id: str,
    actor_type: str | Unset = UNSET,
    scopes: str | Unset = UNSET,
    return_to: str | Unset = UNSET,
    login_hint: str | Unset = UNSET,
    expected_subject: str | Unset = UNSET,
    expected_email: str | Unset = UNSET,
    app_state: str | Unset = UNSET,

) -> Response[AuthorizeResponse | ErrorEnvelope]:
    """ Start a connect flow for an actor.

    Args:
        provider (str):
        actor_id (str):
        actor_type (str | Unset):
        scopes (str | Unset):
        return_to (str | Unset):
        login_hint (str | Unset):
        expected_subject (str | Unset):
        expected_email (str | Unset):
        app_state (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[AuthorizeResponse | ErrorEnvelope]
     """


    kwargs = _get_kwargs(
        provider=provider,
actor_id=actor_id,
actor_type=actor_type,
scopes=scopes,
return_to=return_to,
login_hint=login_hint,
expected_subject=expected_subject,
expected_email=expected_email,
app_state=app_state,

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
    scopes: str | Unset = UNSET,
    return_to: str | Unset = UNSET,
    login_hint: str | Unset = UNSET,
    expected_subject: str | Unset = UNSET,
    expected_email: str | Unset = UNSET,
    app_state: str | Unset = UNSET,

) -> AuthorizeResponse | ErrorEnvelope | None:
    """ Start a connect flow for an actor.

    Args:
        provider (str):
        actor_id (str):
        actor_type (str | Unset):
        scopes (str | Unset):
        return_to (str | Unset):
        login_hint (str | Unset):
        expected_subject (str | Unset):
        expected_email (str | Unset):
        app_state (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        AuthorizeResponse | ErrorEnvelope
     """


    return (await asyncio_detailed(
        provider=provider,
client=client,
actor_id=actor_id,
actor_type=actor_type,
scopes=scopes,
return_to=return_to,
login_hint=login_hint,
expected_subject=expected_subject,
expected_email=expected_email,
app_state=app_state,

    )).parsed
