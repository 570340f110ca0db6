from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..types import UNSET, Unset
from typing import cast






T = TypeVar("T", bound="DeletionView")



@_attrs_define
class DeletionView:
    """ 
        Attributes:
            deleted (bool):
            revoked (bool): Whether the provider confirmed revoking the grant (RFC 7009).
            revocation_note (None | str | Unset):
     """

    deleted: bool
    revoked: bool
    revocation_note: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        deleted = self.deleted

        revoked = self.revoked

        revocation_note: None | str | Unset
        if isinstance(self.revocation_note, Unset):
            revocation_note = UNSET
        else:
            revocation_note = self.revocation_note


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "deleted": deleted,
            "revoked": revoked,
        })
        if revocation_note is not UNSET:
            field_dict["revocation_note"] = revocation_note

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        deleted = d.pop("deleted")

        revoked = d.pop("revoked")

        def _parse_revocation_note(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        revocation_note = _parse_revocation_note(d.pop("revocation_note", UNSET))


        deletion_view = cls(
            deleted=deleted,
            revoked=revoked,
            revocation_note=revocation_note,
        )


        deletion_view.additional_properties = d
        return deletion_view

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
