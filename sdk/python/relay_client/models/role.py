from enum import StrEnum

class Role(StrEnum):
    ADMIN = "admin"
    SERVICE = "service"

    def __str__(self) -> str:
        return str(self.value)
