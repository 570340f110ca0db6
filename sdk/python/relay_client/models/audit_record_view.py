from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..types import UNSET, Unset
from typing import cast






T = TypeVar("T", bound="AuditRecordView")



@_attrs_define
class AuditRecordView:
    """ One audit record, as `GET /audit` and `relay audit export` show it.

        Attributes:
            action (str): `connection.created`, `token.read`, `token.refreshed`, `token.refresh_failed`,
                `connection.needs_reauth`, `connection.deleted`, `action.previewed`, `action.executed`,
                `api_key.created`, `api_key.updated`, `api_key.revoked`, `webhook_secret.read`,
                `webhook_secret.rotated`, `vault.resealed`, `audit.sealed`.
            at (str): RFC 3339, millisecond precision.
            hash_ (str): `hmac:` and the HMAC-SHA256 (keyed with Relay's audit key) over `prev_hash` and this
                record's canonical encoding; records of a Relay before keyed audit carry a plain
                SHA-256 (64 hex digits, no prefix).
            outcome (str): `ok` or `failed`.
            prev_hash (str): The previous record's hash (64 zeros for the first).
            seq (int): Position in the workspace's chain, from 1.
            workspace_id (str):
            actor_id (None | str | Unset):
            api_key_id (None | str | Unset):
            client_addr (None | str | Unset):
            connection_id (None | str | Unset):
            detail (None | str | Unset):
            provider (None | str | Unset):
            request_id (None | str | Unset):
     """

    action: str
    at: str
    hash_: str
    outcome: str
    prev_hash: str
    seq: int
    workspace_id: str
    actor_id: None | str | Unset = UNSET
    api_key_id: None | str | Unset = UNSET
    client_addr: None | str | Unset = UNSET
    connection_id: None | str | Unset = UNSET
    detail: None | str | Unset = UNSET
    provider: None | str | Unset = UNSET
    request_id: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        action = self.action

        at = self.at

        hash_ = self.hash_

        outcome = self.outcome

        prev_hash = self.prev_hash

        seq = self.seq

        workspace_id = self.workspace_id

        actor_id: None | str | Unset
        if isinstance(self.actor_id, Unset):
            actor_id = UNSET
        else:
            actor_id = self.actor_id

        api_key_id: None | str | Unset
        if isinstance(self.api_key_id, Unset):
            api_key_id = UNSET
        else:
            api_key_id = self.api_key_id

        client_addr: None | str | Unset
        if isinstance(self.client_addr, Unset):
            client_addr = UNSET
        else:
            client_addr = self.client_addr

        connection_id: None | str | Unset
        if isinstance(self.connection_id, Unset):
            connection_id = UNSET
        else:
            connection_id = self.connection_id

        detail: None | str | Unset
        if isinstance(self.detail, Unset):
            detail = UNSET
        else:
            detail = self.detail

        provider: None | str | Unset
        if isinstance(self.provider, Unset):
            provider = UNSET
        else:
            provider = self.provider

        request_id: None | str | Unset
        if isinstance(self.request_id, Unset):
            request_id = UNSET
        else:
            request_id = self.request_id


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "action": action,
            "at": at,
            "hash": hash_,
            "outcome": outcome,
            "prev_hash": prev_hash,
            "seq": seq,
            "workspace_id": workspace_id,
        })
        if actor_id is not UNSET:
            field_dict["actor_id"] = actor_id
        if api_key_id is not UNSET:
            field_dict["api_key_id"] = api_key_id
        if client_addr is not UNSET:
            field_dict["client_addr"] = client_addr
        if connection_id is not UNSET:
            field_dict["connection_id"] = connection_id
        if detail is not UNSET:
            field_dict["detail"] = detail
        if provider is not UNSET:
            field_dict["provider"] = provider
        if request_id is not UNSET:
            field_dict["request_id"] = request_id

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        action = d.pop("action")

        at = d.pop("at")

        hash_ = d.pop("hash")

        outcome = d.pop("outcome")

        prev_hash = d.pop("prev_hash")

        seq = d.pop("seq")

        workspace_id = d.pop("workspace_id")

        def _parse_actor_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        actor_id = _parse_actor_id(d.pop("actor_id", UNSET))


        def _parse_api_key_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        api_key_id = _parse_api_key_id(d.pop("api_key_id", UNSET))


        def _parse_client_addr(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        client_addr = _parse_client_addr(d.pop("client_addr", UNSET))


        def _parse_connection_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        connection_id = _parse_connection_id(d.pop("connection_id", UNSET))


        def _parse_detail(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        detail = _parse_detail(d.pop("detail", UNSET))


        def _parse_provider(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        provider = _parse_provider(d.pop("provider", UNSET))


        def _parse_request_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        request_id = _parse_request_id(d.pop("request_id", UNSET))


        audit_record_view = cls(
            action=action,
            at=at,
            hash_=hash_,
            outcome=outcome,
            prev_hash=prev_hash,
            seq=seq,
            workspace_id=workspace_id,
            actor_id=actor_id,
            api_key_id=api_key_id,
            client_addr=client_addr,
            connection_id=connection_id,
            detail=detail,
            provider=provider,
            request_id=request_id,
        )


        audit_record_view.additional_properties = d
        return audit_record_view

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> Any:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties
