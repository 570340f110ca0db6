from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..types import UNSET, Unset
from typing import cast

if TYPE_CHECKING:
  from ..models.import_connection_service_account_type_0 import ImportConnectionServiceAccountType0





T = TypeVar("T", bound="ImportConnection")



@_attrs_define
class ImportConnection:
    """ Existing tokens to import, or a service account to act through (Google Workspace
    domain-wide delegation: give `service_account`, `subject` and `scopes` instead of tokens).

        Attributes:
            actor_id (str):
            provider (str):
            access_token (None | str | Unset): Required unless `service_account` is given. 1 to 16,384 printable ASCII
                characters (no
                control characters).
            actor_type (None | str | Unset):
            expires_at (None | str | Unset): RFC 3339 time or Unix seconds. Give this or `expires_in`.
            expires_in (int | None | Unset):
            refresh_token (None | str | Unset): 1 to 16,384 printable ASCII characters (no control characters).
            scopes (list[str] | None | Unset): A list, or one space/comma separated string.
            service_account (ImportConnectionServiceAccountType0 | None | Unset): The service account key JSON as Google's
                console downloads it (`"type":
                "service_account"`, `client_email`, `private_key`, ...), or its text as kept in
                `GOOGLE_CREDENTIALS_JSON`. Stored sealed, never returned.
            subject (None | str | Unset): With `service_account`: the email of the Workspace user to act as.
            token_type (None | str | Unset):
     """

    actor_id: str
    provider: str
    access_token: None | str | Unset = UNSET
    actor_type: None | str | Unset = UNSET
    expires_at: None | str | Unset = UNSET
    expires_in: int | None | Unset = UNSET
    refresh_token: None | str | Unset = UNSET
    scopes: list[str] | None | Unset = UNSET
    service_account: ImportConnectionServiceAccountType0 | None | Unset = UNSET
    subject: None | str | Unset = UNSET
    token_type: None | str | Unset = UNSET





    def to_dict(self) -> dict[str, Any]:
        from ..models.import_connection_service_account_type_0 import ImportConnectionServiceAccountType0 # noqa: PLC0415
        actor_id = self.actor_id

        provider = self.provider

        access_token: None | str | Unset
        if isinstance(self.access_token, Unset):
            access_token = UNSET
        else:
            access_token = self.access_token

        actor_type: None | str | Unset
        if isinstance(self.actor_type, Unset):
            actor_type = UNSET
        else:
            actor_type = self.actor_type

        expires_at: None | str | Unset
        if isinstance(self.expires_at, Unset):
            expires_at = UNSET
        else:
            expires_at = self.expires_at

        expires_in: int | None | Unset
        if isinstance(self.expires_in, Unset):
            expires_in = UNSET
        else:
            expires_in = self.expires_in

        refresh_token: None | str | Unset
        if isinstance(self.refresh_token, Unset):
            refresh_token = UNSET
        else:
            refresh_token = self.refresh_token

        scopes: list[str] | None | Unset
        if isinstance(self.scopes, Unset):
            scopes = UNSET
        elif isinstance(self.scopes, list):
            scopes = self.scopes


        else:
            scopes = self.scopes

        service_account: dict[str, Any] | None | Unset
        if isinstance(self.service_account, Unset):
            service_account = UNSET
        elif isinstance(self.service_account, ImportConnectionServiceAccountType0):
            service_account = self.service_account.to_dict()
        else:
            service_account = self.service_account

        subject: None | str | Unset
        if isinstance(self.subject, Unset):
            subject = UNSET
        else:
            subject = self.subject

        token_type: None | str | Unset
        if isinstance(self.token_type, Unset):
            token_type = UNSET
        else:
            token_type = self.token_type


        field_dict: dict[str, Any] = {}

        field_dict.update({
            "actor_id": actor_id,
            "provider": provider,
        })
        if access_token is not UNSET:
            field_dict["access_token"] = access_token
        if actor_type is not UNSET:
            field_dict["actor_type"] = actor_type
        if expires_at is not UNSET:
            field_dict["expires_at"] = expires_at
        if expires_in is not UNSET:
            field_dict["expires_in"] = expires_in
        if refresh_token is not UNSET:
            field_dict["refresh_token"] = refresh_token
        if scopes is not UNSET:
            field_dict["scopes"] = scopes
        if service_account is not UNSET:
            field_dict["service_account"] = service_account
        if subject is not UNSET:
            field_dict["subject"] = subject
        if token_type is not UNSET:
            field_dict["token_type"] = token_type

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.import_connection_service_account_type_0 import ImportConnectionServiceAccountType0 # noqa: PLC0415
        d = dict(src_dict)
        actor_id = d.pop("actor_id")

        provider = d.pop("provider")

        def _parse_access_token(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        access_token = _parse_access_token(d.pop("access_token", UNSET))


        def _parse_actor_type(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        actor_type = _parse_actor_type(d.pop("actor_type", UNSET))


        def _parse_expires_at(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        expires_at = _parse_expires_at(d.pop("expires_at", UNSET))


        def _parse_expires_in(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        expires_in = _parse_expires_in(d.pop("expires_in", UNSET))


        def _parse_refresh_token(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        refresh_token = _parse_refresh_token(d.pop("refresh_token", UNSET))


        def _parse_scopes(data: object) -> list[str] | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, list):
                    raise TypeError()
                scopes_type_0 = cast(list[str], data)

                return scopes_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(list[str] | None | Unset, data)

        scopes = _parse_scopes(d.pop("scopes", UNSET))


        def _parse_service_account(data: object) -> ImportConnectionServiceAccountType0 | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                service_account_type_0 = ImportConnectionServiceAccountType0.from_dict(data)



                return service_account_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(ImportConnectionServiceAccountType0 | None | Unset, data)

        service_account = _parse_service_account(d.pop("service_account", UNSET))


        def _parse_subject(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        subject = _parse_subject(d.pop("subject", UNSET))


        def _parse_token_type(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        token_type = _parse_token_type(d.pop("token_type", UNSET))


        import_connection = cls(
            actor_id=actor_id,
            provider=provider,
            access_token=access_token,
            actor_type=actor_type,
            expires_at=expires_at,
            expires_in=expires_in,
            refresh_token=refresh_token,
            scopes=scopes,
            service_account=service_account,
            subject=subject,
            token_type=token_type,
        )

        return import_connection

