from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast






T = TypeVar("T", bound="ProviderView")



@_attrs_define
class ProviderView:
    """ 
        Attributes:
            enabled (bool): Whether actions may execute against it (`PROVIDER_{NAME}_ENABLED`).
            kind (str): `google`, `microsoft`, `oidc` or `oauth2`.
            name (str): The `{provider}` in URLs.
            scopes (list[str]): Scopes requested on every connect flow.
     """

    enabled: bool
    kind: str
    name: str
    scopes: list[str]
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        enabled = self.enabled

        kind = self.kind

        name = self.name

        scopes = self.scopes




        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "enabled": enabled,
            "kind": kind,
            "name": name,
            "scopes": scopes,
        })

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        enabled = d.pop("enabled")

        kind = d.pop("kind")

        name = d.pop("name")

        scopes = cast(list[str], d.pop("scopes"))


        provider_view = cls(
            enabled=enabled,
            kind=kind,
            name=name,
            scopes=scopes,
        )


        provider_view.additional_properties = d
        return provider_view

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
