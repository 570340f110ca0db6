from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..types import UNSET, Unset
from typing import cast






T = TypeVar("T", bound="AuditVerification")



@_attrs_define
class AuditVerification:
    """ The result of checking the caller's workspace's chain.

        Attributes:
            intact (bool): `true` when every record links to the one before and the head matches.
            records (int): Records checked (up to the first broken one).
            broken_seq (int | None | Unset): The first broken record's `seq`, when `intact` is false.
            reason (None | str | Unset): Why that link is broken, in words.
     """

    intact: bool
    records: int
    broken_seq: int | None | Unset = UNSET
    reason: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        intact = self.intact

        records = self.records

        broken_seq: int | None | Unset
        if isinstance(self.broken_seq, Unset):
            broken_seq = UNSET
        else:
            broken_seq = self.broken_seq

        reason: None | str | Unset
        if isinstance(self.reason, Unset):
            reason = UNSET
        else:
            reason = self.reason


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "intact": intact,
            "records": records,
        })
        if broken_seq is not UNSET:
            field_dict["broken_seq"] = broken_seq
        if reason is not UNSET:
            field_dict["reason"] = reason

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        intact = d.pop("intact")

        records = d.pop("records")

        def _parse_broken_seq(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        broken_seq = _parse_broken_seq(d.pop("broken_seq", UNSET))


        def _parse_reason(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        reason = _parse_reason(d.pop("reason", UNSET))


        audit_verification = cls(
            intact=intact,
            records=records,
            broken_seq=broken_seq,
            reason=reason,
        )


        audit_verification.additional_properties = d
        return audit_verification

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
