from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote

import httpx

from ...client import AuthenticatedClient, Client
from ...types import Response, UNSET
from ... import errors

from ...models.error_envelope import ErrorEnvelope
from ...models.execute_body import ExecuteBody
from ...models.execute_response import ExecuteResponse
from ...types import UNSET, Unset
from typing import cast



def _get_kwargs(
    *,
    body: ExecuteBody,
    idempotency_key: None | str | Unset = UNSET,

) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if not isinstance(idempotency_key, Unset):
        headers["Idempotency-Key"] = idempotency_key



    

    

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/actions/execute",
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs



def _parse_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> ErrorEnvelope | ExecuteResponse | None:
    if response.status_code == 200:
        response_200 = ExecuteResponse.from_dict(response.json())



        return response_200

    if response.status_code == 401:
        response_401 = ErrorEnvelope.from_dict(response.json())



        return response_401

    if response.status_code == 404:
        response_404 = ErrorEnvelope.from_dict(response.json())



        return response_404

    if response.status_code == 409:
        response_409 = ErrorEnvelope.from_dict(response.json())



        return response_409

    if response.status_code == 410:
        response_410 = ErrorEnvelope.from_dict(response.json())



        return response_410

    if response.status_code == 413:
        response_413 = ErrorEnvelope.from_dict(response.json())



        return response_413

    if response.status_code == 422:
        response_422 = ErrorEnvelope.from_dict(response.json())



        return response_422

    if response.status_code == 424:
        response_424 = ErrorEnvelope.from_dict(response.json())



        return response_424

    if response.status_code == 501:
        response_501 = ErrorEnvelope.from_dict(response.json())



        return response_501

    if response.status_code == 502:
        response_502 = ErrorEnvelope.from_dict(response.json())



        return response_502

    if response.status_code == 503:
        response_503 = ErrorEnvelope.from_dict(response.json())



        return response_503

    if response.status_code == 504:
        response_504 = ErrorEnvelope.from_dict(response.json())



        return response_504

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> Response[ErrorEnvelope | ExecuteResponse]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    body: ExecuteBody,
    idempotency_key: None | str | Unset = UNSET,

) -> Response[ErrorEnvelope | ExecuteResponse]:
    """ Execute a preview, once. Executing the same preview (or reusing the same
    `Idempotency-Key`) returns the first result without sending again.

    Args:
        idempotency_key (None | str | Unset):
        body (ExecuteBody):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorEnvelope | ExecuteResponse]
     """


    kwargs = _get_kwargs(
        body=body,
idempotency_key=idempotency_key,

    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)

def sync(
    *,
    client: AuthenticatedClient,
    body: ExecuteBody,
    idempotency_key: None | str | Unset = UNSET,

) -> ErrorEnvelope | ExecuteResponse | None:
    """ Execute a preview, once. Executing the same preview (or reusing the same
    `Idempotency-Key`) returns the first result without sending again.

    Args:
        idempotency_key (None | str | Unset):
        body (ExecuteBody):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorEnvelope | ExecuteResponse
     """


    return sync_detailed(
        client=client,
body=body,
idempotency_key=idempotency_key,

    ).parsed

async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    body: ExecuteBody,
    idempotency_key: None | str | Unset = UNSET,

) -> Response[ErrorEnvelope | ExecuteResponse]:
    """ Execute a preview, once. Executing the same preview (or reusing the same
    `Idempotency-Key`) returns the first result without sending again.

    Args:
        idempotency_key (None | str | Unset):
        body (ExecuteBody):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorEnvelope | ExecuteResponse]
     """


    kwargs = _get_kwargs(
        body=body,
idempotency_key=idempotency_key,

    )

    response = await client.get_async_httpx_client().request(
        **kwargs
    )

    return _build_response(client=client, response=response)

async def asyncio(
    *,
    client: AuthenticatedClient,
    body: ExecuteBody,
    idempotency_key: None | str | Unset = UNSET,

) -> ErrorEnvelope | ExecuteResponse | None:
    """ Execute a preview, once. Executing the same preview (or reusing the same
    `Idempotency-Key`) returns the first result without sending again.

    Args:
        idempotency_key (None | str | Unset):
        body (ExecuteBody):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorEnvelope | ExecuteResponse
     """


    return (await asyncio_detailed(
        client=client,
body=body,
idempotency_key=idempotency_key,

    )).parsed
