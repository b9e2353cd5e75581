"""The base of the API's JSON request bodies: unknown fields are refused."""

from pydantic import BaseModel, ConfigDict


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
