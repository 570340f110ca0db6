from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast

if TYPE_CHECKING:
  from ..models.preview_response_rendered import PreviewResponseRendered





T = TypeVar("T", bound="PreviewResponse")



@_attrs_define
class PreviewResponse:
    """ 
        Attributes:
            action (str):
            digest (str): `sha256:` of the rendered request.
            expires_at (str):
            preview_id (str):
            rendered (PreviewResponseRendered): Exactly what will be sent (for `gmail.send`: the headers and `raw`).
     """

    action: str
    digest: str
    expires_at: str
    preview_id: str
    rendered: PreviewResponseRendered
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        from ..models.preview_response_rendered import PreviewResponseRendered # noqa: PLC0415
        action = self.action

        digest = self.digest

        expires_at = self.expires_at

        preview_id = self.preview_id

        rendered = self.rendered.to_dict()


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "action": action,
            "digest": digest,
            "expires_at": expires_at,
            "preview_id": preview_id,
            "rendered": rendered,
        })

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.preview_response_rendered import PreviewResponseRendered # noqa: PLC0415
        d = dict(src_dict)
        action = d.pop("action")

        digest = d.pop("digest")

        expires_at = d.pop("expires_at")

        preview_id = d.pop("preview_id")

        rendered = PreviewResponseRendered.from_dict(d.pop("rendered"))




        preview_response = cls(
            action=action,
            digest=digest,
            expires_at=expires_at,
            preview_id=preview_id,
            rendered=rendered,
        )


        preview_response.additional_properties = d
        return preview_response

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
