from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset







T = TypeVar("T", bound="StatsBucket")



@_attrs_define
class StatsBucket:
    """ One hour of the workspace's activity.

        Attributes:
            action_errors (int): Executed actions that failed.
            action_executions (int): Executed actions, whatever their result.
            refresh_failures (int): Refreshes that failed (transient failures and those that made a connection
                `needs_reauth`).
            refreshes (int): Successful refreshes.
            start (str): The hour's start, RFC 3339 UTC.
            token_reads (int): Token reads (`GET /connections/{id}/token`), served or refused.
     """

    action_errors: int
    action_executions: int
    refresh_failures: int
    refreshes: int
    start: str
    token_reads: int
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        action_errors = self.action_errors

        action_executions = self.action_executions

        refresh_failures = self.refresh_failures

        refreshes = self.refreshes

        start = self.start

        token_reads = self.token_reads


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "action_errors": action_errors,
            "action_executions": action_executions,
            "refresh_failures": refresh_failures,
            "refreshes": refreshes,
            "start": start,
            "token_reads": token_reads,
        })

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        action_errors = d.pop("action_errors")

        action_executions = d.pop("action_executions")

        refresh_failures = d.pop("refresh_failures")

        refreshes = d.pop("refreshes")

        start = d.pop("start")

        token_reads = d.pop("token_reads")

        stats_bucket = cls(
            action_errors=action_errors,
            action_executions=action_executions,
            refresh_failures=refresh_failures,
            refreshes=refreshes,
            start=start,
            token_reads=token_reads,
        )


        stats_bucket.additional_properties = d
        return stats_bucket

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
