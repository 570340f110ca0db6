from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..types import UNSET, Unset
from typing import cast






T = TypeVar("T", bound="UpdateApiKey")



@_attrs_define
class UpdateApiKey:
    """ 
        Attributes:
            rate_limit_per_minute (int | None | Unset): Requests per minute; `null` returns the key to the configured
                default.
     """

    rate_limit_per_minute: int | None | Unset = UNSET





    def to_dict(self) -> dict[str, Any]:
        rate_limit_per_minute: int | None | Unset
        if isinstance(self.rate_limit_per_minute, Unset):
            rate_limit_per_minute = UNSET
        else:
            rate_limit_per_minute = self.rate_limit_per_minute


        field_dict: dict[str, Any] = {}

        field_dict.update({
        })
        if rate_limit_per_minute is not UNSET:
            field_dict["rate_limit_per_minute"] = rate_limit_per_minute

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        def _parse_rate_limit_per_minute(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        rate_limit_per_minute = _parse_rate_limit_per_minute(d.pop("rate_limit_per_minute", UNSET))


        update_api_key = cls(
            rate_limit_per_minute=rate_limit_per_minute,
        )

        return update_api_key

