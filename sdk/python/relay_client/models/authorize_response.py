from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset







T = TypeVar("T", bound="AuthorizeResponse")



@_attrs_define
class AuthorizeResponse:
    """ 
        Attributes:
            authorize_url (str): Send the user's browser here.
            expires_at (str): RFC 3339; the flow must complete before this.
            state (str): The flow's state (also inside `authorize_url`); single use.
     """

    authorize_url: str
    expires_at: str
    state: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        authorize_url = self.authorize_url

        expires_at = self.expires_at

        state = self.state


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "authorize_url": authorize_url,
            "expires_at": expires_at,
            "state": state,
        })

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        authorize_url = d.pop("authorize_url")

        expires_at = d.pop("expires_at")

        state = d.pop("state")

        authorize_response = cls(
            authorize_url=authorize_url,
            expires_at=expires_at,
            state=state,
        )


        authorize_response.additional_properties = d
        return authorize_response

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
