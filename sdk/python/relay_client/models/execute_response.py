from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast

if TYPE_CHECKING:
  from ..models.execute_response_result import ExecuteResponseResult





T = TypeVar("T", bound="ExecuteResponse")



@_attrs_define
class ExecuteResponse:
    """ 
        Attributes:
            result (ExecuteResponseResult): The action's result (for `gmail.send`: `message_id`; for `drive.extract`: `text`
                and
                `metadata`).
            status (str): `succeeded`.
     """

    result: ExecuteResponseResult
    status: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        from ..models.execute_response_result import ExecuteResponseResult # noqa: PLC0415
        result = self.result.to_dict()

        status = self.status


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "result": result,
            "status": status,
        })

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.execute_response_result import ExecuteResponseResult # noqa: PLC0415
        d = dict(src_dict)
        result = ExecuteResponseResult.from_dict(d.pop("result"))




        status = d.pop("status")

        execute_response = cls(
            result=result,
            status=status,
        )


        execute_response.additional_properties = d
        return execute_response

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
