from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..types import UNSET, Unset
from typing import cast

if TYPE_CHECKING:
  from ..models.readiness_checks_type_0 import ReadinessChecksType0





T = TypeVar("T", bound="Readiness")



@_attrs_define
class Readiness:
    """ 
        Attributes:
            status (str): `ready` (200), `degraded` (200: an optional check such as Redis fails, requests are
                served from the database) or `not_ready` (503: a required check fails).
            checks (None | ReadinessChecksType0 | Unset): Absent on the public listener when `[server] metrics_listen` or
                `metrics_token` is
                set (unless the metrics token is presented).
     """

    status: str
    checks: None | ReadinessChecksType0 | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        from ..models.readiness_checks_type_0 import ReadinessChecksType0 # noqa: PLC0415
        status = self.status

        checks: dict[str, Any] | None | Unset
        if isinstance(self.checks, Unset):
            checks = UNSET
        elif isinstance(self.checks, ReadinessChecksType0):
            checks = self.checks.to_dict()
        else:
            checks = self.checks


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "status": status,
        })
        if checks is not UNSET:
            field_dict["checks"] = checks

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.readiness_checks_type_0 import ReadinessChecksType0 # noqa: PLC0415
        d = dict(src_dict)
        status = d.pop("status")

        def _parse_checks(data: object) -> None | ReadinessChecksType0 | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                checks_type_0 = ReadinessChecksType0.from_dict(data)



                return checks_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | ReadinessChecksType0 | Unset, data)

        checks = _parse_checks(d.pop("checks", UNSET))


        readiness = cls(
            status=status,
            checks=checks,
        )


        readiness.additional_properties = d
        return readiness

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
