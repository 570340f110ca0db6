from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..types import UNSET, Unset
from typing import cast

if TYPE_CHECKING:
  from ..models.preview_body_params import PreviewBodyParams





T = TypeVar("T", bound="PreviewBody")



@_attrs_define
class PreviewBody:
    """ What to preview: the action, whose account (a connection id, or provider and actor; not
    needed for `webhook.send`), and the parameters.

        Attributes:
            action (str): The action's name or one of its `aliases` (`GET /actions`); the preview carries the
                canonical name.
            actor_id (None | str | Unset):
            actor_type (None | str | Unset):
            connection_id (None | str | Unset):
            params (PreviewBodyParams | Unset):
            provider (None | str | Unset):
     """

    action: str
    actor_id: None | str | Unset = UNSET
    actor_type: None | str | Unset = UNSET
    connection_id: None | str | Unset = UNSET
    params: PreviewBodyParams | Unset = UNSET
    provider: None | str | Unset = UNSET





    def to_dict(self) -> dict[str, Any]:
        from ..models.preview_body_params import PreviewBodyParams # noqa: PLC0415
        action = self.action

        actor_id: None | str | Unset
        if isinstance(self.actor_id, Unset):
            actor_id = UNSET
        else:
            actor_id = self.actor_id

        actor_type: None | str | Unset
        if isinstance(self.actor_type, Unset):
            actor_type = UNSET
        else:
            actor_type = self.actor_type

        connection_id: None | str | Unset
        if isinstance(self.connection_id, Unset):
            connection_id = UNSET
        else:
            connection_id = self.connection_id

        params: dict[str, Any] | Unset = UNSET
        if not isinstance(self.params, Unset):
            params = self.params.to_dict()

        provider: None | str | Unset
        if isinstance(self.provider, Unset):
            provider = UNSET
        else:
            provider = self.provider


        field_dict: dict[str, Any] = {}

        field_dict.update({
            "action": action,
        })
        if actor_id is not UNSET:
            field_dict["actor_id"] = actor_id
        if actor_type is not UNSET:
            field_dict["actor_type"] = actor_type
        if connection_id is not UNSET:
            field_dict["connection_id"] = connection_id
        if params is not UNSET:
            field_dict["params"] = params
        if provider is not UNSET:
            field_dict["provider"] = provider

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.preview_body_params import PreviewBodyParams # noqa: PLC0415
        d = dict(src_dict)
        action = d.pop("action")

        def _parse_actor_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        actor_id = _parse_actor_id(d.pop("actor_id", UNSET))


        def _parse_actor_type(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        actor_type = _parse_actor_type(d.pop("actor_type", UNSET))


        def _parse_connection_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        connection_id = _parse_connection_id(d.pop("connection_id", UNSET))


        _params = d.pop("params", UNSET)
        params: PreviewBodyParams | Unset
        if isinstance(_params,  Unset):
            params = UNSET
        else:
            params = PreviewBodyParams.from_dict(_params)




        def _parse_provider(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        provider = _parse_provider(d.pop("provider", UNSET))


        preview_body = cls(
            action=action,
            actor_id=actor_id,
            actor_type=actor_type,
            connection_id=connection_id,
            params=params,
            provider=provider,
        )

        return preview_body

