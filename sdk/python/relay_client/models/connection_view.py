from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..types import UNSET, Unset
from typing import cast






T = TypeVar("T", bound="ConnectionView")



@_attrs_define
class ConnectionView:
    """ Connection metadata. Never contains a token.

        Attributes:
            actor_id (str):
            actor_type (str):
            created_at (str):
            has_refresh_token (bool):
            id (str):
            provider (str):
            scopes (list[str]):
            status (str): `active`, `needs_reauth` or `revoked`.
            token_type (str):
            updated_at (str):
            account_email (None | str | Unset): That account's email, when granted and not marked unverified.
            account_subject (None | str | Unset): The provider account the connect flow linked (the ID token's `sub`); null
                for imported
                connections and providers that do not say who signed in.
            expires_at (None | str | Unset):
            last_refreshed_at (None | str | Unset):
            status_reason (None | str | Unset):
     """

    actor_id: str
    actor_type: str
    created_at: str
    has_refresh_token: bool
    id: str
    provider: str
    scopes: list[str]
    status: str
    token_type: str
    updated_at: str
    account_email: None | str | Unset = UNSET
    account_subject: None | str | Unset = UNSET
    expires_at: None | str | Unset = UNSET
    last_refreshed_at: None | str | Unset = UNSET
    status_reason: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        actor_id = self.actor_id

        actor_type = self.actor_type

        created_at = self.created_at

        has_refresh_token = self.has_refresh_token

        id = self.id

        provider = self.provider

        scopes = self.scopes



        status = self.status

        token_type = self.token_type

        updated_at = self.updated_at

        account_email: None | str | Unset
        if isinstance(self.account_email, Unset):
            account_email = UNSET
        else:
            account_email = self.account_email

        account_subject: None | str | Unset
        if isinstance(self.account_subject, Unset):
            account_subject = UNSET
        else:
            account_subject = self.account_subject

        expires_at: None | str | Unset
        if isinstance(self.expires_at, Unset):
            expires_at = UNSET
        else:
            expires_at = self.expires_at

        last_refreshed_at: None | str | Unset
        if isinstance(self.last_refreshed_at, Unset):
            last_refreshed_at = UNSET
        else:
            last_refreshed_at = self.last_refreshed_at

        status_reason: None | str | Unset
        if isinstance(self.status_reason, Unset):
            status_reason = UNSET
        else:
            status_reason = self.status_reason


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "actor_id": actor_id,
            "actor_type": actor_type,
            "created_at": created_at,
            "has_refresh_token": has_refresh_token,
            "id": id,
            "provider": provider,
            "scopes": scopes,
            "status": status,
            "token_type": token_type,
            "updated_at": updated_at,
        })
        if account_email is not UNSET:
            field_dict["account_email"] = account_email
        if account_subject is not UNSET:
            field_dict["account_subject"] = account_subject
        if expires_at is not UNSET:
            field_dict["expires_at"] = expires_at
        if last_refreshed_at is not UNSET:
            field_dict["last_refreshed_at"] = last_refreshed_at
        if status_reason is not UNSET:
            field_dict["status_reason"] = status_reason

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        actor_id = d.pop("actor_id")

        actor_type = d.pop("actor_type")

        created_at = d.pop("created_at")

        has_refresh_token = d.pop("has_refresh_token")

        id = d.pop("id")

        provider = d.pop("provider")

        scopes = cast(list[str], d.pop("scopes"))


        status = d.pop("status")

        token_type = d.pop("token_type")

        updated_at = d.pop("updated_at")

        def _parse_account_email(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        account_email = _parse_account_email(d.pop("account_email", UNSET))


        def _parse_account_subject(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        account_subject = _parse_account_subject(d.pop("account_subject", UNSET))


        def _parse_expires_at(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        expires_at = _parse_expires_at(d.pop("expires_at", UNSET))


        def _parse_last_refreshed_at(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        last_refreshed_at = _parse_last_refreshed_at(d.pop("last_refreshed_at", UNSET))


        def _parse_status_reason(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        status_reason = _parse_status_reason(d.pop("status_reason", UNSET))


        connection_view = cls(
            actor_id=actor_id,
            actor_type=actor_type,
            created_at=created_at,
            has_refresh_token=has_refresh_token,
            id=id,
            provider=provider,
            scopes=scopes,
            status=status,
            token_type=token_type,
            updated_at=updated_at,
            account_email=account_email,
            account_subject=account_subject,
            expires_at=expires_at,
            last_refreshed_at=last_refreshed_at,
            status_reason=status_reason,
        )


        connection_view.additional_properties = d
        return connection_view

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
