from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast

if TYPE_CHECKING:
  from ..models.action_view_params_schema import ActionViewParamsSchema





T = TypeVar("T", bound="ActionView")



@_attrs_define
class ActionView:
    """ 
        Attributes:
            accepted_scopes (list[str]): Any one of these granted scopes is enough.
            aliases (list[str]): Other names accepted for this action (e.g. `gmail.send_email`); previews, audit
                records and metrics carry `name`.
            description (str):
            name (str): e.g. `gmail.send`.
            params_schema (ActionViewParamsSchema): JSON Schema of `params`.
            provider (str): `google`, `microsoft` or `webhook` (no connection needed).
            scopes (list[str]): Scopes to request for this action.
            side_effect (str): `read`, `write` or `send`.
     """

    accepted_scopes: list[str]
    aliases: list[str]
    description: str
    name: str
    params_schema: ActionViewParamsSchema
    provider: str
    scopes: list[str]
    side_effect: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        from ..models.action_view_params_schema import ActionViewParamsSchema # noqa: PLC0415
        accepted_scopes = self.accepted_scopes



        aliases = self.aliases



        description = self.description

        name = self.name

        params_schema = self.params_schema.to_dict()

        provider = self.provider

        scopes = self.scopes



        side_effect = self.side_effect


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "accepted_scopes": accepted_scopes,
            "aliases": aliases,
            "description": description,
            "name": name,
            "params_schema": params_schema,
            "provider": provider,
            "scopes": scopes,
            "side_effect": side_effect,
        })

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.action_view_params_schema import ActionViewParamsSchema # noqa: PLC0415
        d = dict(src_dict)
        accepted_scopes = cast(list[str], d.pop("accepted_scopes"))


        aliases = cast(list[str], d.pop("aliases"))


        description = d.pop("description")

        name = d.pop("name")

        params_schema = ActionViewParamsSchema.from_dict(d.pop("params_schema"))




        provider = d.pop("provider")

        scopes = cast(list[str], d.pop("scopes"))


        side_effect = d.pop("side_effect")

        action_view = cls(
            accepted_scopes=accepted_scopes,
            aliases=aliases,
            description=description,
            name=name,
            params_schema=params_schema,
            provider=provider,
            scopes=scopes,
            side_effect=side_effect,
        )


        action_view.additional_properties = d
        return action_view

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
