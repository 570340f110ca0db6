from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset







T = TypeVar("T", bound="ExecuteBody")



@_attrs_define
class ExecuteBody:
    """ 
        Attributes:
            preview_id (str):
     """

    preview_id: str





    def to_dict(self) -> dict[str, Any]:
        preview_id = self.preview_id


        field_dict: dict[str, Any] = {}

        field_dict.update({
            "preview_id": preview_id,
        })

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        preview_id = d.pop("preview_id")

        execute_body = cls(
            preview_id=preview_id,
        )

        return execute_body

