from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..types import UNSET, Unset
from typing import cast






T = TypeVar("T", bound="LinkStatus")



@_attrs_define
class LinkStatus:
    """ 
        Attributes:
            linked (bool):
            scopes (list[str]):
            account_email (None | str | Unset):
            account_subject (None | str | Unset): The provider account linked (ID token `sub`), when known.
            connection_id (None | str | Unset):
            expires_at (None | str | Unset):
            status (None | str | Unset): `active`, `needs_reauth` or `revoked`; absent when not linked.
            status_reason (None | str | Unset):
     """

    linked: bool
    scopes: list[str]
    account_email: None | str | Unset = UNSET
    account_subject: None | str | Unset = UNSET
    connection_id: None | str | Unset = UNSET
    expires_at: None | str | Unset = UNSET
    status: None | str | Unset = UNSET
    status_reason: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        linked = self.linked

        scopes = self.scopes



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

        connection_id: None | str | Unset
        if isinstance(self.connection_id, Unset):
            connection_id = UNSET
        else:
            connection_id = self.connection_id

        expires_at: None | str | Unset
        if isinstance(self.expires_at, Unset):
            expires_at = UNSET
        else:
            expires_at = self.expires_at

        status: None | str | Unset
        if isinstance(self.status, Unset):
            status = UNSET
        else:
            status = self.status

        status_reason: None | str | Unset
        if isinstance(self.status_reason, Unset):
            status_reason = UNSET
        else:
            status_reason = self.status_reason


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "linked": linked,
            "scopes": scopes,
        })
        if account_email is not UNSET:
            field_dict["account_email"] = account_email
        if account_subject is not UNSET:
            field_dict["account_subject"] = account_subject
        if connection_id is not UNSET:
            field_dict["connection_id"] = connection_id
        if expires_at is not UNSET:
            field_dict["expires_at"] = expires_at
        if status is not UNSET:
            field_dict["status"] = status
        if status_reason is not UNSET:
            field_dict["status_reason"] = status_reason

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        linked = d.pop("linked")

        scopes = cast(list[str], d.pop("scopes"))


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


        def _parse_connection_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        connection_id = _parse_connection_id(d.pop("connection_id", UNSET))


        def _parse_expires_at(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        expires_at = _parse_expires_at(d.pop("expires_at", UNSET))


        def _parse_status(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        status = _parse_status(d.pop("status", UNSET))


        def _parse_status_reason(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        status_reason = _parse_status_reason(d.pop("status_reason", UNSET))


        link_status = cls(
            linked=linked,
            scopes=scopes,
            account_email=account_email,
            account_subject=account_subject,
            connection_id=connection_id,
            expires_at=expires_at,
            status=status,
            status_reason=status_reason,
        )


        link_status.additional_properties = d
        return link_status

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
